"""The control options of ``realign generate`` and the ``realign control-bench`` command's arguments.

``realign generate`` options (all optional; files in world metres, Y up, 20 fps):

* ``--path FILE``: the pelvis's ground track -- ``.npy`` (N, 2) [x, z] per frame, or ``.json``: a list of
  [x, z] per frame or ``{"points": [[x, z], ...], "times": [s, ...]}``;
* ``--keyframes FILE``: ``.json`` ``[{"frame": f, "joints": [[x, y, z] x 22]}, ...]`` or ``.npz`` with
  ``frames`` (K,) and ``joints`` (K, 22, 3);
* ``--continue-from FILE.npy``: joints (F, 22, 3) of a previous take; the new one starts in its last pose;
* ``--end-pose FILE.npy``: a pose (22, 3) or joints (F, 22, 3) whose last frame the take ends in;
* ``--loop`` (a seamless cycle; writes OUT_cycle.json), ``--in-place`` (writes OUT_root.npy, the root
  track x, z, heading per frame), ``--control-strength X`` (default 1);
* ``--layer PART PROMPT``: a body part (right_arm, left_arm, arms) moving as in PROMPT's own motion, layered
  on the take (e.g. ``--layer right_arm "a person waves with the right hand."`` on a walk;
  ``realign_core.control.parts``); ``--layer-candidates K``: the layer is the best of K motions of PROMPT
  by the reward model (default 1);
* ``--sequence FILE.json``: ``[{"prompt": ..., "seconds": ...}, ...]`` -- one continuous motion through
  the prompts (the positional prompt is then ignored; write ``-`` for it).

Kept apart from ``generate.py`` so that building the parser imports no model code.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np


def add_control_arguments(g: argparse.ArgumentParser) -> None:
    """The control options of ``realign generate`` (see the module docstring)."""
    c = g.add_argument_group("control (paths, poses, loops, sequences; docs/control.md)")
    c.add_argument("--path", default=None, help="root path file (.npy (N, 2) x,z per frame, or .json)")
    c.add_argument("--keyframes", default=None, help="keyed poses (.json [{frame, joints}] or .npz frames/joints)")
    c.add_argument("--continue-from", default=None, help="joints .npy of a previous take: start in its last pose")
    c.add_argument("--end-pose", default=None, help="pose .npy (22, 3) or joints (F, 22, 3): end in (its last) pose")
    c.add_argument("--loop", action="store_true", help="a seamless cycle (writes OUT_cycle.json)")
    c.add_argument("--in-place", action="store_true", help="root track on its own (writes OUT_root.npy)")
    c.add_argument("--control-strength", type=float, default=1.0, help="how hard the constraints pull (0 = off)")
    c.add_argument("--layer", nargs=2, metavar=("PART", "PROMPT"), default=None,
                   help="layer a body part (right_arm, left_arm, arms) moving as in PROMPT's motion on the take")
    c.add_argument("--layer-candidates", type=int, default=None,
                   help="--layer: motions of PROMPT to choose the layer from by the reward model (default 1: "
                        "the take's seed)")
    c.add_argument("--sequence", default=None, help="JSON list of {prompt, seconds}: one continuous motion")


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read JSON ({err})") from None


def _load_path(file: str):
    from realign_core.guidance.control_spec import Path as RootPath

    path = Path(file)
    if path.suffix == ".npy":
        return RootPath.per_frame(np.load(path), name=f"{path} (--path)")
    data = _load_json(path)
    if isinstance(data, dict):
        return RootPath.from_points(data.get("points"), data.get("times"), name=f"{path} (--path)")
    return RootPath.per_frame(data, name=f"{path} (--path)")


def _load_keys(file: str | None, frames: int, continue_from: str | None, end_pose: str | None):
    """The keyed poses of --keyframes, --continue-from (frame 0) and --end-pose (last frame), or None."""
    from realign_core.guidance.control_spec import Keyframes

    keyed: dict[int, np.ndarray] = {}
    if file:
        path = Path(file)
        if path.suffix == ".npz":
            data = np.load(path)
            items = list(zip(data["frames"].tolist(), data["joints"]))
        else:
            raw = _load_json(path)
            if not isinstance(raw, list) or not all(isinstance(k, dict) and {"frame", "joints"} <= set(k) for k in raw):
                raise ValueError(f"{path} (--keyframes): expected a list of {{\"frame\", \"joints\"}} objects")
            items = [(k["frame"], k["joints"]) for k in raw]
        keyed.update((int(f), np.asarray(j, dtype=np.float64)) for f, j in items)
    for option, file_, frame in (("--continue-from", continue_from, 0), ("--end-pose", end_pose, frames - 1)):
        if file_:
            arr = np.load(file_)
            if arr.ndim not in (2, 3) or arr.shape[-2:] != (22, 3):
                raise ValueError(f"{file_} ({option}): expected a pose (22, 3) or joints (F, 22, 3), got {arr.shape}")
            keyed[frame] = arr if arr.ndim == 2 else arr[-1]
    if not keyed:
        return None
    frames_k = sorted(keyed)
    return Keyframes.make(frames_k, np.stack([keyed[f] for f in frames_k]), name="--keyframes")


def control_fields(args: argparse.Namespace, frames: int) -> dict[str, Any]:
    """``GenerateRequest`` keyword arguments from the parsed options: control, in_place, layer, sequence."""
    from realign_core.guidance.control_spec import ControlSpec, part_joints

    out: dict[str, Any] = {"in_place": bool(args.in_place)}
    if getattr(args, "layer", None):
        if args.sequence:
            raise ValueError("--layer and --sequence cannot be combined (layer each take of the sequence instead)")
        part, prompt = args.layer
        part_joints(part)
        if not prompt.strip():
            raise ValueError("--layer: the part's prompt is empty")
        out["layer"] = (part, prompt)
        out["layer_candidates"] = args.layer_candidates
    if args.sequence:
        from realign_core.control.sequence import Segment

        raw = _load_json(Path(args.sequence))
        if not isinstance(raw, list) or not all(isinstance(e, dict) and set(e) == {"prompt", "seconds"} for e in raw):
            raise ValueError(f"{args.sequence} (--sequence): expected a list of {{\"prompt\", \"seconds\"}} objects")
        out["sequence"] = [Segment(e["prompt"], e["seconds"]) for e in raw]
        return out
    path = _load_path(args.path) if args.path else None
    keys = _load_keys(args.keyframes, frames, args.continue_from, args.end_pose)
    if path is not None or keys is not None or args.loop or args.in_place:
        out["control"] = ControlSpec(path=path, keyframes=keys, loop=bool(args.loop), strength=args.control_strength)
    return out


def add_control_bench(sub: argparse._SubParsersAction) -> None:
    """``realign control-bench``: measure path following, keyframes, loops, sequences and layered body parts
    (docs/control.md)."""
    b = sub.add_parser("control-bench", help="measure path/keyframe/loop/sequence/layer control on fixed cases")
    b.add_argument("--models", default="models/default")
    b.add_argument("--generator", default="mld", choices=["mld", "mdm"])
    b.add_argument("--parts", nargs="+", default=["path", "keyframes", "loop", "sequence", "layer"],
                   choices=["path", "keyframes", "loop", "sequence", "layer"])
    b.add_argument("--seeds", type=int, default=2, help="samples per case")
    b.add_argument("--first-seed", type=int, default=0,
                   help="seeds first-seed .. first-seed+seeds-1 (tune on other seeds than the reported 0..)")
    b.add_argument("--seconds", type=float, default=6.0, help="clip length of the path cases")
    b.add_argument("--steps", type=int, default=None,
                   help="sampler steps (default: control_steps, else steps, of guidance.toml, else 50)")
    b.add_argument("--strength", type=float, default=0.0, help="ReAlign reward guidance strength (0 = off)")
    b.add_argument("--sequence-seconds", type=float, nargs="+", default=[20.0, 40.0, 60.0],
                   help="total lengths of the sequence runs (wall time vs length)")
    b.add_argument("--overlap", type=int, default=None, help="sequence window overlap in frames (default: 20)")
    b.add_argument("--control-weight", type=float, default=None, help="path part: constraint Polyak weight (default: 2)")
    b.add_argument("--refine-iterations", type=int, default=None, help="path part: refinement steps after sampling (default: 24)")
    b.add_argument("--refine-regrow", type=float, default=None,
                   help="path part: a kept refinement step's weight grows by this factor, capped (default: 1, never)")
    b.add_argument("--ramp-start", type=float, default=None, help="path part: weight ramp start fraction (default: 1, no ramp)")
    b.add_argument("--foot-weight", type=float, default=0.0,
                   help="path part: foot-contact cost weight, planted feet do not slide (default: 0, off)")
    b.add_argument("--no-inpaint", action="store_true", help="path part, MDM: gradient steps only, no root inpainting")
    b.add_argument("--device", default="cpu")
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--json", default=None, help="also write the results here")
    b.set_defaults(func=_control_bench)


def _control_bench(args: argparse.Namespace) -> int:
    from realign_core.evaluation.control_eval import main as bench_main

    return bench_main(args)
