"""``realign generate``: one prompt -> K motions on disk (joints, features, BVH, SMPL, GIF).

Per sample k (seed + k), with OUT the ``-o`` prefix (``_s{k}`` appended when K > 1):

* ``OUT.npy``          joints (F, 22, 3) float32, metres, Y up, 20 fps;
* ``OUT_features.npy`` HumanML3D features (F, 263), un-normalised (one row per joint frame);
* ``OUT.bvh``          the 22-joint skeleton (rotations by inverse kinematics);
* ``OUT_smpl.npz``     AMASS-style SMPL parameters (``--smpl``);
* ``OUT.gif``          a stick-figure animation (``--gif``);
* ``OUT_root.npy``     the root track (F, 3): pelvis x, z (m) and heading (rad), with ``--in-place``;
* ``OUT_cycle.json``   the per-cycle root offset of a ``--loop``;
* ``OUT_sequence.json`` each prompt's frame range of a ``--sequence``;
* ``OUT_layer.npy``    the layered part's own motion, joints (F, 22, 3), with ``--layer``.

Control options (paths, keyed poses, loops, sequences) are parsed in ``control_args.py``; the motions
come from ``realign_core.control`` (docs/control.md).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from realign_core.device import pick_device
from realign_core.export.formats import export_motion
from realign_core.guidance.reward_guidance import GuidanceSettings
from realign_core.motion.skeleton import FPS
from realign_core.pipeline import SamplingConfig, TextToMotionPipeline

MIN_SECONDS = 1.0


@dataclass(frozen=True)
class GenerateRequest:
    prompt: str
    seconds: float = 6.0
    seed: int = 0
    samples: int = 1
    strength: float | None = None     # None = the models' validated default (0 without a reward model)
    mu: float | None = None
    eta: float | None = None
    sampling: SamplingConfig = SamplingConfig()
    guided_steps: int | str | None = None   # None = the validated default; "all" or a count of steps
    control: Any = None                     # realign_core.guidance.control_spec.ControlSpec (path, keys, loop)
    in_place: bool = False                  # root track apart (OUT_root.npy)
    sequence: list | None = None            # realign_core.control.sequence.Segment list: one long motion
    layer: tuple[str, str] | None = None    # (body part, its prompt): the part layered on the take (control.parts)
    layer_candidates: int | None = None     # motions of the layer's prompt ranked by the reward (None = default)
    extras: list = field(default_factory=list, compare=False)   # filled by generate: per sample, extra files
    sampling_given: set = field(default_factory=lambda: {"sampler", "steps"})  # the others: the models' defaults


def frames_for(seconds: float, max_frames: int) -> int:
    """Frames (feature rows = joint frames) for a duration.  Errors name the allowed range."""
    frames = int(round(seconds * FPS))
    if not MIN_SECONDS <= seconds or frames > max_frames:
        raise ValueError(f"--seconds must be in [{MIN_SECONDS}, {max_frames / FPS}], got {seconds}")
    return frames


def parse_guided_steps(value: int | str) -> int | None:
    """``--guided-steps``: 'all' -> None (every step), else a count >= 0."""
    if str(value).strip().lower() == "all":
        return None
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise ValueError(f"--guided-steps must be 'all' or a whole number >= 0, got {value!r}")
    return count


def resolve_guidance(pipe: TextToMotionPipeline, req: GenerateRequest) -> GuidanceSettings:
    """The request's guidance: the validated defaults with the user's overrides."""
    base = pipe.default_guidance if pipe.has_reward else GuidanceSettings()
    changes = {k: v for k, v in (("strength", req.strength), ("mu", req.mu), ("eta", req.eta)) if v is not None}
    if req.guided_steps is not None:
        changes["guided_steps"] = parse_guided_steps(req.guided_steps)
    settings = replace(base, **changes)
    if settings.active and not pipe.has_reward:
        raise ValueError("--strength > 0 needs a reward model in the model folder (reward/best.pt)")
    if settings.active and settings.eta > 0 and pipe.reward.bank is None:
        settings = replace(settings, eta=0.0)   # no bank: text-to-motion reward only (said on stdout)
        print("note: no embedding bank (reward/bank.pt): using the text-to-motion reward only")
    return settings


def resolve_sampling(pipe: TextToMotionPipeline, req: GenerateRequest) -> GenerateRequest:
    """The request with the sampler/steps it did not set taken from the models' validated sampling
    (controlled takes and sequences: their ``control_sampling``)."""
    controlled = (req.control is not None and req.control.active) or bool(req.sequence)
    default = pipe.control_sampling if controlled else pipe.default_sampling
    changes = {k: getattr(default, k) for k in ("sampler", "steps") if k not in req.sampling_given}
    if req.sampling.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {req.sampling.steps}")
    return replace(req, sampling=replace(req.sampling, **changes)) if changes else req


def generate(pipe: TextToMotionPipeline, req: GenerateRequest) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """-> (joints per sample (F, 22, 3), features per sample (F, 263)), F = seconds * 20."""
    if req.samples < 1:
        raise ValueError(f"--samples must be >= 1, got {req.samples}")
    req = resolve_sampling(pipe, req)
    settings = resolve_guidance(pipe, req)
    seeds = [req.seed + k for k in range(req.samples)]
    if req.sequence is not None:
        return generate_sequence_takes(pipe, req, settings, seeds)
    if not req.prompt.strip():
        raise ValueError("the prompt is empty")
    frames = frames_for(req.seconds, pipe.max_frames)
    if req.control is not None or req.in_place or req.layer is not None:
        from realign_core.control.motion import generate_controlled

        controls, layers = layered_controls(pipe, req, settings, seeds, frames)
        done = generate_controlled(pipe, [req.prompt] * req.samples, [frames] * req.samples, seeds,
                                   controls, req.sampling, settings, in_place=req.in_place)
        req.extras[:] = [{"root": m.root_track, "cycle": m.cycle.as_dict() if m.cycle else None, "layer": lay}
                         for m, lay in zip(done, layers)]
        return [m.joints for m in done], [m.features for m in done]
    out = pipe([req.prompt] * req.samples, [frames] * req.samples, seeds, req.sampling, settings)
    feats, mask = out.features, out.mask
    features = [feats[i, :frames].cpu().numpy() for i in range(req.samples)]
    return pipe.to_joints(feats, mask), features


def layered_controls(pipe: TextToMotionPipeline, req: GenerateRequest, settings, seeds: list[int],
                     frames: int) -> tuple[list, list]:
    """Per sample the ControlSpec (the request's, with the ``--layer`` part added) and the layer motion's
    joints (F, 22, 3) canonical, or None without a layer."""
    if req.layer is None:
        return [req.control] * len(seeds), [None] * len(seeds)
    from realign_core.control.parts import part_layer
    from realign_core.guidance.control_spec import ControlSpec
    from realign_core.motion.features import features_to_joints

    part, prompt = req.layer
    base = req.control if req.control is not None else ControlSpec()
    controls, layers = [], []
    for seed in seeds:
        layer, features = part_layer(pipe, prompt, part, frames, seed, req.sampling, settings, with_features=True,
                                     candidates=req.layer_candidates)
        controls.append(replace(base, part=layer))
        layers.append(features_to_joints(features).astype(np.float32))
    return controls, layers


def generate_sequence_takes(pipe: TextToMotionPipeline, req: GenerateRequest, settings,
                            seeds: list[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``--sequence``: one continuous motion per sample (seed + k)."""
    from realign_core.control.sequence import generate_sequence

    joints, features = [], []
    for seed in seeds:
        seq = generate_sequence(pipe, req.sequence, seed, req.sampling, settings)
        joints.append(seq.joints)
        features.append(seq.features())
        req.extras.append({"sequence": [{"prompt": s.prompt, "seconds": s.seconds, "start": a, "end": b}
                                        for s, (a, b) in zip(req.sequence, seq.segments)]})
    return joints, features


def write_extras(prefix: Path, extra: dict) -> list[Path]:
    """The control outputs of one sample: OUT_root.npy, OUT_layer.npy, OUT_cycle.json, OUT_sequence.json."""
    paths = []
    for key in ("root", "layer"):
        if extra.get(key) is not None:
            paths.append(prefix.with_name(f"{prefix.name}_{key}.npy"))
            np.save(paths[-1], extra[key].astype(np.float32))
    for key in ("cycle", "sequence"):
        if extra.get(key) is not None:
            paths.append(prefix.with_name(f"{prefix.name}_{key}.json"))
            paths[-1].write_text(json.dumps(extra[key], indent=1) + "\n")
    return paths


def write_outputs(joints: list[np.ndarray], features: list[np.ndarray], out: str | Path, prompt: str,
                  smpl: bool = False, gif: bool = False, extras: list[dict] | None = None) -> list[Path]:
    """Write every sample's files next to the prefix ``out``; returns the paths."""
    out = Path(out)
    paths: list[Path] = []
    for k, (j, f) in enumerate(zip(joints, features)):
        prefix = out if len(joints) == 1 else out.with_name(f"{out.name}_s{k}")
        written = export_motion(j, prefix, ("npy", "bvh", "npz") if smpl else ("npy", "bvh"))
        feat_path = prefix.with_name(prefix.name + "_features.npy")
        np.save(feat_path, f.astype(np.float32))
        paths += [*written.values(), feat_path]
        if extras:
            paths += write_extras(prefix, extras[k])
        if gif:
            from realign_core.export.render import render_motion

            paths.append(render_motion(j, prefix.with_name(prefix.name + ".gif"), title=prompt))
    return paths


def run_generate(models: str | Path, req: GenerateRequest, out: str | Path, generator: str = "mld",
                 device: str = "auto", smpl: bool = False, gif: bool = False) -> list[Path]:
    """Load the pipeline, generate, write; returns the written paths."""
    dev = pick_device(device)
    pipe = TextToMotionPipeline.from_checkpoints(models, dev, generator=generator)
    joints, features = generate(pipe, req)
    return write_outputs(joints, features, out, req.prompt, smpl, gif, req.extras)
