"""The loaded models, and the one adapter between protocol settings and the pipeline call.

``Engine.load(models_dir, device)`` loads ``TextToMotionPipeline.from_checkpoints``
once; ``Engine.generate(motions, sampling, callback)`` runs one batched
sampling run and returns per-motion joints.  Everything that knows how the
pipeline is called (``SamplingConfig``, ``GuidanceSettings``, which defaults the
model has) lives in the functions right below, so that a change of the
pipeline's signature is a change here only.

Note the two etas: ``SamplingConfig.eta`` is DDIM's eta (the server keeps it at
0, deterministic DDIM); the protocol's ``guidance.eta`` is ReAlign's
motion-to-motion reward weight, ``GuidanceSettings.eta``.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .protocol import SAMPLERS, Defaults, MotionSpec, ProtocolError, Sampling

ProgressCallback = Callable[[int, int], Any]


# --------------------------------------------------------------------------- the pipeline adapter

def sampling_config(sampling: Sampling) -> Any:
    """Protocol sampling settings -> the pipeline's ``SamplingConfig`` (DDIM eta stays 0)."""
    from realign_core.pipeline import SamplingConfig

    return SamplingConfig(sampler=sampling.sampler, steps=sampling.steps, cfg_scale=sampling.cfg,
                          foot_lock=sampling.foot_lock)


def guidance_settings(sampling: Sampling, pipeline: Any = None) -> Any | None:
    """Protocol guidance -> ``GuidanceSettings``, or None when strength is 0 (the plain sampler).
    The fields the protocol does not carry (which steps are guided) are the pipeline's validated ones."""
    if sampling.strength <= 0:
        return None
    from realign_core.guidance.reward_guidance import GuidanceSettings

    base = pipeline.default_guidance if has_reward(pipeline) else GuidanceSettings()
    return replace(base, strength=sampling.strength, mu=sampling.mu, eta=sampling.eta)


def run_pipeline(pipeline: Any, captions: list[str], frames: list[int], seeds: list[int],
                 sampling: Sampling, callback: ProgressCallback) -> list[np.ndarray]:
    """One sampling run -> per-sample (F_i, 22, 3) float32 joints.  Guidance is passed only when on."""
    kwargs: dict[str, Any] = {"cfg": sampling_config(sampling), "callback": callback}
    guidance = guidance_settings(sampling, pipeline)
    if guidance is not None:
        kwargs["guidance"] = guidance
    out = pipeline(captions, frames, seeds, return_joints=True, **kwargs)
    return [np.ascontiguousarray(j, dtype=np.float32) for j in out.joints]


def control_spec(control: Any) -> Any:
    """Protocol control fields (``control_fields.Control``) -> the library's ``ControlSpec``."""
    from realign_core.guidance.control_spec import ControlSpec, Keyframes, Path

    path = None
    if control.path is not None:
        path = Path.per_frame(control.path[1]) if control.path[0] == "frames" else \
            Path.from_points(control.path[1], control.path[2])
    keys = None
    if control.keyframes:
        keys = Keyframes.make([f for f, _ in control.keyframes], np.array([j for _, j in control.keyframes]))
    return ControlSpec(path=path, keyframes=keys, loop=control.loop, strength=control.strength)


def root_track_result(track: np.ndarray) -> dict[str, Any]:
    """(F, 3) root track -> the result's ``root_track`` object."""
    return {"translation_xz": np.round(track[:, :2].astype(np.float64), 5).tolist(),
            "heading": np.round(track[:, 2].astype(np.float64), 5).tolist()}


def run_controlled(pipeline: Any, request: Any, callback: ProgressCallback) -> list[tuple[np.ndarray, dict[str, Any]]]:
    """One request with control fields or a sequence -> per motion (joints, extra result fields)."""
    sampling = request.sampling
    cfg, guidance = sampling_config(sampling), guidance_settings(sampling, pipeline)
    if request.sequence is not None:
        from realign_core.control.sequence import Segment, generate_sequence

        seq = generate_sequence(pipeline, [Segment(p, s) for p, s in request.sequence], request.seed, cfg, guidance,
                                callback)
        entries = [{"prompt": p, "seconds": s, "start": a, "end": b}
                   for (p, s), (a, b) in zip(request.sequence, seq.segments)]
        return [(np.ascontiguousarray(seq.joints, dtype=np.float32), {"sequence": entries})]
    from realign_core.control.motion import generate_controlled

    motions = request.motions
    spec = control_spec(request.control)
    specs = [spec] * len(motions)
    if request.control.layer is not None:   # each take's part layer from its own seed, then the take on it
        from realign_core.control.parts import part_layer

        part, prompt = request.control.layer
        specs = [replace(spec, part=part_layer(pipeline, prompt, part, m.frames, m.seed, cfg, guidance,
                                               candidates=request.control.layer_candidates))
                 for m in motions]
    done = generate_controlled(pipeline, [m.prompt for m in motions], [m.frames for m in motions],
                               [m.seed for m in motions], specs, cfg, guidance, callback,
                               in_place=request.control.in_place)
    out = []
    for m in done:
        extra: dict[str, Any] = {"control": request.control.as_dict()}
        if m.root_track is not None:
            extra["root_track"] = root_track_result(m.root_track)
        if m.cycle is not None:
            extra["cycle"] = m.cycle.as_dict()
        out.append((np.ascontiguousarray(m.joints, dtype=np.float32), extra))
    return out


def has_reward(pipeline: Any) -> bool:
    """Whether the pipeline can guide (a reward model was loaded)."""
    return bool(getattr(pipeline, "has_reward", False))


def has_reference_bank(pipeline: Any) -> bool:
    """Whether the motion-to-motion reward (``guidance.eta`` > 0) has its embedding bank (reward/bank.pt)."""
    return bool(getattr(pipeline, "has_reference_bank", False))


def model_defaults(pipeline: Any) -> Defaults:
    """The model's defaults: its CFG scale (and the one distilled into its consistency denoiser, the 'lcm'
    sampler's) and, with a reward model, its calibrated guidance (eta 0 when there is no embedding bank, so that
    the defaults always run)."""
    cfg = float(getattr(pipeline, "default_cfg", getattr(getattr(pipeline, "generator", None), "default_cfg",
                                                         Defaults.cfg)))
    strength, mu, eta = 0.0, Defaults.mu, Defaults.eta
    if has_reward(pipeline):
        g = getattr(pipeline, "default_guidance", None)
        strength = float(getattr(g, "strength", 1.0))
        mu, eta = float(getattr(g, "mu", mu)), float(getattr(g, "eta", eta))
        if not has_reference_bank(pipeline):
            eta = 0.0
    sampling = getattr(pipeline, "default_sampling", None)
    steps, sampler = (sampling.steps, sampling.sampler) if sampling is not None else (Defaults.steps, Defaults.sampler)
    control = getattr(pipeline, "control_sampling", None)
    control_steps = control.steps if control is not None else steps
    lcm_cfg = getattr(pipeline, "consistency_cfg", None)
    foot_lock = bool(getattr(pipeline, "default_foot_lock", False))
    return Defaults(cfg=cfg, lcm_cfg=lcm_cfg, strength=strength, mu=mu, eta=eta, steps=steps,
                    control_steps=control_steps, sampler=sampler, foot_lock=foot_lock)


def model_max_steps(pipeline: Any) -> int:
    """The number of training timesteps of the generator's schedule (the most sampler steps)."""
    schedule = getattr(getattr(pipeline, "generator", None), "schedule", None) or getattr(pipeline, "schedule", None)
    return int(getattr(schedule, "num_train_steps", 1000))


# --------------------------------------------------------------------------- the engine

class Engine:
    """A loaded pipeline with its name and device; ``generate`` is called by the worker thread only."""

    def __init__(self, pipeline: Any, name: str, device: str) -> None:
        self.pipeline, self.name, self.device = pipeline, name, device
        self.max_frames = int(getattr(pipeline, "max_frames", 196))
        self.max_steps = model_max_steps(pipeline)
        self.defaults = model_defaults(pipeline)

    @classmethod
    def load(cls, models: str | Path, device: str = "auto", generator: str | None = None) -> "Engine":
        """Load the models once from a model root (``vae/``, ``denoiser/`` ..., as ``realign train`` writes)."""
        from realign_core.pipeline import TextToMotionPipeline

        root = Path(models)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: model folder not found")
        from realign_core.device import pick_device

        device = pick_device(device)
        extra = {"generator": generator} if generator else {}
        pipeline = TextToMotionPipeline.from_checkpoints(root, device, **extra)
        return cls(pipeline, root.resolve().name, device)

    @property
    def has_reward(self) -> bool:
        return has_reward(self.pipeline)

    def text_encoders(self) -> list[Any]:
        """The distinct text encoders the pipeline uses (the generator's, the reward model's)."""
        found = [getattr(self.pipeline, "text", None)]
        reward = getattr(self.pipeline, "reward", None)
        if reward is not None and hasattr(reward.model, "text_model"):
            found.append(reward.model.text_model())
        unique: dict[int, Any] = {id(e): e for e in found if e is not None and hasattr(e, "limit_cache")}
        return list(unique.values())

    def limit_text_cache(self, entries: int, max_bytes: int | None) -> None:
        """Bound the per-prompt text caches: each LRU (sentences, token states) of each encoder."""
        for encoder in self.text_encoders():
            encoder.limit_cache(entries, max_bytes)

    def cache_stats(self) -> dict[str, Any]:
        """The ``text_cache`` object of ``status``: entries and bytes summed over the encoders' LRUs."""
        totals = {"entries": 0, "bytes": 0}
        for encoder in self.text_encoders():
            for cache in encoder.cache_stats().values():
                totals["entries"] += cache["entries"]
                totals["bytes"] += cache["bytes"]
        return totals

    def check(self, sampling: Sampling) -> None:
        """Refuse settings this model cannot run (the pipeline says why: no reward model, no bank, or no
        consistency denoiser for the 'lcm' sampler / another CFG scale than the one distilled into it)."""
        problem = self.pipeline.guidance_problem(guidance_settings(sampling, self.pipeline))
        if problem is not None:
            field, reason = problem
            raise ProtocolError("bad_request", f"field 'guidance.{field}': {reason}", f"guidance.{field}")
        sampler_problem = getattr(self.pipeline, "sampler_problem", None)
        problem = sampler_problem(sampling.sampler, sampling.cfg) if sampler_problem is not None else None
        if problem is not None:
            field = "sampler" if problem[0] == "sampler" else "guidance.cfg"
            raise ProtocolError("bad_request", f"field '{field}': {problem[1]}", field)

    def model_info(self) -> dict[str, Any]:
        """The ``model`` object of the ``hello`` event."""
        from realign_core.motion.skeleton import FPS, JOINT_NAMES, NUM_JOINTS, PARENTS

        generator = getattr(self.pipeline, "generator", None)
        return {"name": self.name, "generator": getattr(generator, "name", "mld"), "fps": FPS,
                "joints": NUM_JOINTS, "joint_names": list(JOINT_NAMES), "parents": list(PARENTS),
                "max_frames": self.max_frames, "max_steps": self.max_steps, "samplers": list(SAMPLERS),
                "guidance": self.has_reward, "reference_bank": has_reference_bank(self.pipeline),
                "defaults": self.defaults.as_dict()}

    def generate_request(self, request: Any, callback: ProgressCallback) -> list[tuple[np.ndarray, dict[str, Any]]]:
        """A request with control fields or a sequence -> per motion (joints (F, 22, 3) float32, extra result
        fields: ``root_track``, ``cycle``, ``sequence``)."""
        return run_controlled(self.pipeline, request, callback)

    def generate(self, motions: Sequence[MotionSpec], sampling: Sampling,
                 callback: ProgressCallback) -> list[np.ndarray]:
        """One batched sampling run -> (F_i, 22, 3) float32 joints per motion, in order.

        Raises ``realign_core.diffusion.sampling.Cancelled`` when the callback returns False.
        """
        return run_pipeline(self.pipeline, [m.prompt for m in motions], [m.frames for m in motions],
                            [m.seed for m in motions], sampling, callback)
