"""``realign control-bench``: how well paths, keyed poses, loops and long sequences are followed, and what
it costs in motion quality and text alignment.  Every number of docs/control.md comes from here.

Parts (``--parts``), each against the same prompts and seeds generated without the constraint ("free"):

* ``path``: paths straight, L-turn, S-curve and circle x prompts walk, run, jog, walk sadly.  A path's
  length is the prompt's typical speed x the clip length (``PROMPTS``), so it asks where to go, not how
  fast.  Measured: mean and max root (pelvis XZ) deviation from the path (cm; a free motion is placed at
  the path's start, facing its start direction), foot skating on contact frames (cm per frame), text
  alignment with both evaluators (text-motion distance in their metric space, lower = closer; rank of the
  true prompt among the 4, ``r1``), the kinematic suite's check for the prompt (pass rate) and the CPU
  seconds per constrained take (``take_cpu_s``: the batch's process time / its samples).
  ``--foot-weight`` adds the foot-contact cost (``ControlSpec.foot_weight``) to every path case.
* ``keyframes``: continue-from (the pose at frame 0) and in-between (poses at frames 0, F/2 and F-1), the
  poses taken from another motion of the same prompt.  Measured: joint error at keyed frames (cm) after
  guidance alone and after the exact warp, jerk within 5 frames of a key vs elsewhere (cm/frame^3).
* ``loop``: 3 s cycles; the pop where the last frame flows into the next cycle's first (position and
  velocity gap, cm, see ``control.motion.loop_seam_gaps``) vs the same second difference inside the clip,
  for free, guided (before the closing warp) and final clips.
* ``layer``: layered body parts (``control.parts``), ``LAYERS``: a base prompt with an arm taken from another
  prompt's motion of the same seed.  Measured: the layered joints' distance from the layer (cm; their offsets
  from the shoulder in the facing frame) free, pulled by the ``part`` cost (``part_weight`` 1) before and after
  the exact set, and final (the default: set exactly after sampling, no pull); the base prompt's check and
  foot skating; the layer prompt's check on its own motion and on the layered take.
* ``sequence``: sequences of 5 s segments cycling through the prompts, total lengths ``--sequence-seconds``.
  Measured: wall and CPU time vs total length (CPU time is the fairer one on a loaded machine), jerk and foot skating within 3 frames of a transition vs inside
  segments, each segment's text alignment vs the same prompt generated alone.

Sampling: the models' sampler and steps for controlled takes (``pipeline.control_sampling``: guidance.toml's
``control_steps``, else its ``steps``) unless
``--steps`` is given.  Runs on the CPU with ``--threads`` threads by default; results are printed and
optionally written as JSON.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from realign_core.control.motion import generate_controlled, loop_seam_gaps
from realign_core.control.sequence import Segment, generate_sequence
from realign_core.guidance.control_spec import ControlSpec, Keyframes
from realign_core.guidance.control_spec import Path as RootPath
from realign_core.motion.features import features_to_joints, joints_to_features
from realign_core.motion.foot_lock import foot_skate_cm
from realign_core.motion.skeleton import FPS

# name: (caption, typical pelvis speed m/s, kinematic check name)
PROMPTS: dict[str, tuple[str, float, str]] = {
    "walk": ("a person walks forward.", 1.2, "walk_forward"),
    "run": ("a person runs forward.", 3.0, "run_forward"),
    "jog": ("a person jogs forward.", 2.0, "run_forward"),
    "walk_sadly": ("a person walks forward sadly.", 0.9, "walk_forward"),
}
PATHS = ("straight", "l_turn", "s_curve", "circle")
# name: (base prompt of PROMPTS, part, layer caption, the layer's kinematic check name or None)
LAYERS: dict[str, tuple[str, str, str, str | None]] = {
    "walk+wave": ("walk", "right_arm", "a person waves with the right hand.", "wave_right"),
    "jog+wave": ("jog", "right_arm", "a person waves with the right hand.", "wave_right"),
    "walk+arms_up": ("walk", "arms", "a person raises both arms above the head.", None),
}
NEAR_KEY_FRAMES = 5
NEAR_SEAM_FRAMES = 3


# --------------------------------------------------------------------------- paths

def path_shape(name: str, length: float, frames: int) -> np.ndarray:
    """(frames, 2) XZ points at constant speed along a path of ``length`` m starting at 0 heading +Z."""
    s = np.linspace(0.0, 1.0, 2001)
    if name == "straight":
        xz = np.stack([0 * s, s], -1)
    elif name == "l_turn":
        xz = np.where(s[:, None] < 0.5, np.stack([0 * s, s], -1), np.stack([s - 0.5, 0 * s + 0.5], -1))
    elif name == "s_curve":
        xz = np.stack([0.12 * np.sin(2 * math.pi * s), s], -1)
    elif name == "circle":
        r = 1 / (2 * math.pi)
        xz = np.stack([r * (1 - np.cos(s / r)), r * np.sin(s / r)], -1)
    else:
        raise ValueError(f"unknown path {name!r}; known: {', '.join(PATHS)}")
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xz, axis=0), axis=-1))])
    target = np.linspace(0.0, arc[-1], frames)
    out = np.stack([np.interp(target, arc, xz[:, 0]), np.interp(target, arc, xz[:, 1])], -1)
    return out * (length / arc[-1])


# --------------------------------------------------------------------------- measures

def jerk_cm(joints: np.ndarray) -> np.ndarray:
    """(F-3,) mean over joints of |third difference| (cm/frame^3); entry i spans frames i..i+3."""
    j = np.asarray(joints, dtype=np.float64)
    return 100 * np.linalg.norm(j[3:] - 3 * j[2:-1] + 3 * j[1:-2] - j[:-3], axis=-1).mean(-1)


def near_mask(frames: int, centres, radius: int) -> np.ndarray:
    """(frames - 3,) bool over jerk entries: True where the 4-frame window is within ``radius`` of a centre."""
    idx = np.arange(frames - 3) + 1.5
    return np.any(np.abs(idx[:, None] - np.asarray(centres, dtype=np.float64)[None]) <= radius, axis=-1)


class TextScores:
    """Both evaluators' text-motion distances and the kinematic checks for generated joints."""

    def __init__(self, models: str | Path, normalizer, device: str = "cpu"):
        from realign_core.evaluation.scoring import load_evaluators

        self.evaluators = load_evaluators(models, device)
        self.normalizer = normalizer
        captions = [c for c, _, _ in PROMPTS.values()]
        self.captions = captions
        self.text = {k: self._texts(e, captions) for k, e in self.evaluators.items()}

    @staticmethod
    def _texts(evaluator, captions):
        from realign_core.evaluation.scoring import embed_texts

        return embed_texts(evaluator, captions)

    def features(self, joints: np.ndarray) -> np.ndarray:
        """Normalised features (F, 263) of final joints (the last frame's velocity extrapolated)."""
        j = np.asarray(joints, dtype=np.float64)
        return self.normalizer.normalize(joints_to_features(np.concatenate([j, 2 * j[-1:] - j[-2:-1]])))

    def score(self, joints_list: list[np.ndarray], prompt: str) -> dict[str, float]:
        """Mean distance to the prompt and top-1 rate among the 4 prompts per evaluator; kinematic pass rate."""
        from realign_core.evaluation.kinematic.checks import PROMPTS_BY_NAME
        from realign_core.evaluation.scoring import embed_motions

        out: dict[str, float] = {}
        index = list(PROMPTS).index(prompt)
        feats = [self.features(j).astype(np.float32) for j in joints_list]
        for kind, evaluator in self.evaluators.items():
            z = embed_motions(evaluator, feats)
            dist = np.linalg.norm(z[:, None] - self.text[kind][None], axis=-1)   # (N, 4 prompts)
            out[f"{kind}_dist"] = float(dist[:, index].mean())
            out[f"{kind}_r1"] = float((dist.argmin(1) == index).mean())
        check = PROMPTS_BY_NAME[PROMPTS[prompt][2]]
        out["kinematic_pass"] = float(np.mean([check.matches(j) for j in joints_list]))
        return out


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} if rows else {}


# --------------------------------------------------------------------------- parts

def bench_paths(pipe, scores: TextScores, seeds: list[int], seconds: float, cfg, guidance, schedule=None,
                foot_weight: float = 0.0) -> dict:
    """The path part; ``foot_weight`` > 0 adds the foot-contact cost to every path case."""
    frames = round(seconds * FPS)
    rows = {}
    for prompt, (caption, speed, _) in PROMPTS.items():
        free = generate_controlled(pipe, [caption] * len(seeds), [frames] * len(seeds), seeds, [None] * len(seeds),
                                   cfg, guidance)
        free_joints = [m.joints for m in free]
        rows[f"free/{prompt}"] = {"skate_cm": float(np.mean([foot_skate_cm(j) for j in free_joints])),
                                  **scores.score(free_joints, prompt)}
        for name in PATHS:
            xz = path_shape(name, speed * (frames - 1) / FPS, frames)
            spec = ControlSpec(path=RootPath.per_frame(xz), foot_weight=foot_weight)
            cpu_started = time.process_time()
            done = generate_controlled(pipe, [caption] * len(seeds), [frames] * len(seeds), seeds,
                                       [spec] * len(seeds), cfg, guidance, constraint_schedule=schedule)
            take_cpu_s = (time.process_time() - cpu_started) / len(seeds)
            joints = [m.joints for m in done]
            place = spec.placement()
            dev = [np.linalg.norm(j[:, 0, [0, 2]] - xz, axis=-1) for j in joints]
            dev_free = [np.linalg.norm(place.to_world(j)[:, 0, [0, 2]] - xz, axis=-1) for j in free_joints]
            rows[f"{name}/{prompt}"] = {
                "dev_mean_cm": 100 * float(np.mean([d.mean() for d in dev])),
                "dev_max_cm": 100 * float(np.max([d.max() for d in dev])),
                "free_dev_mean_cm": 100 * float(np.mean([d.mean() for d in dev_free])),
                "skate_cm": float(np.mean([foot_skate_cm(j) for j in joints])), "take_cpu_s": take_cpu_s,
                **scores.score(joints, prompt)}
    return {"rows": rows, "summary": _path_summary(rows)}


def _path_summary(rows: dict) -> dict:
    ctl = [r for k, r in rows.items() if not k.startswith("free/")]
    free = [r for k, r in rows.items() if k.startswith("free/")]
    out = {"constrained": _mean(ctl), "free": _mean(free)}
    for name in PATHS:
        out[name] = _mean([r for k, r in rows.items() if k.startswith(name + "/")])
    return out


def bench_keyframes(pipe, scores: TextScores, seeds: list[int], seconds: float, cfg, guidance) -> dict:
    frames = round(seconds * FPS)
    cases = {"continue_from": lambda src: ((0,), src[[frames // 2]]),
             "in_between": lambda src: ((0, frames // 2, frames - 1),
                                        src[[frames // 4, frames // 2, 3 * frames // 4]])}
    rows = {}
    for prompt, (caption, _, _) in PROMPTS.items():
        sources = [m.joints for m in generate_controlled(pipe, [caption] * len(seeds), [frames] * len(seeds),
                                                         [s + 1000 for s in seeds], [None] * len(seeds), cfg, guidance)]
        free = [m.joints for m in generate_controlled(pipe, [caption] * len(seeds), [frames] * len(seeds), seeds,
                                                      [None] * len(seeds), cfg, guidance)]
        for case, pick in cases.items():
            specs = [ControlSpec(keyframes=Keyframes.make(*pick(src))) for src in sources]
            keyed = specs[0].keyframes.frames
            guided = [m.joints for m in generate_controlled(pipe, [caption] * len(seeds), [frames] * len(seeds), seeds,
                                                            specs, cfg, guidance, exact_keys=False)]
            final = [m.joints for m in generate_controlled(pipe, [caption] * len(seeds), [frames] * len(seeds), seeds,
                                                           specs, cfg, guidance)]

            def key_err(js, placed=False, specs=specs, keyed=keyed):
                errs = []
                for j, s in zip(js, specs):
                    j = s.placement().to_world(j) if placed else j
                    errs.append(np.linalg.norm(j[list(keyed)] - s.keyframes.joints, axis=-1).mean())
                return 100 * float(np.mean(errs))
            near = near_mask(frames, keyed, NEAR_KEY_FRAMES)
            rows[f"{case}/{prompt}"] = {
                "free_key_err_cm": key_err(free, placed=True), "guided_key_err_cm": key_err(guided),
                "final_key_err_cm": key_err(final),
                "jerk_near_keys": float(np.mean([jerk_cm(j)[near].mean() for j in final])),
                "jerk_elsewhere": float(np.mean([jerk_cm(j)[~near].mean() for j in final])),
                "free_jerk": float(np.mean([jerk_cm(j).mean() for j in free])), **scores.score(final, prompt)}
    return {"rows": rows, "summary": {case: _mean([r for k, r in rows.items() if k.startswith(case + "/")])
                                      for case in cases}}


def _raw_cycle_gaps(features: np.ndarray, joints: np.ndarray) -> dict[str, float]:
    """Seam gaps of a clip generated with one extra frame, without the closing warp."""
    from realign_core.control.motion import Cycle, cycle_transform

    xz, yaw = cycle_transform(features)
    return loop_seam_gaps(joints[:-1], Cycle((float(xz[0]), float(xz[1])), yaw))


def bench_loops(pipe, seeds: list[int], seconds: float, cfg, guidance) -> dict:
    from realign_core.motion.features import features_to_joints

    frames = round(seconds * FPS)
    rows = {}
    for prompt, (caption, _, _) in PROMPTS.items():
        n = len(seeds)
        runs = {"free": None, "guided": ControlSpec(loop=True)}
        for label, spec in runs.items():
            out = pipe([caption] * n, [frames + 1] * n, seeds, cfg, guidance, control=spec)
            gaps = []
            for i in range(n):
                feats = out.features[i, :frames + 1].cpu().numpy()
                gaps.append(_raw_cycle_gaps(feats, features_to_joints(feats)))
            rows[f"{label}/{prompt}"] = _mean(gaps)
        final = generate_controlled(pipe, [caption] * n, [frames] * n, seeds, [ControlSpec(loop=True)] * n, cfg,
                                    guidance)
        rows[f"final/{prompt}"] = _mean([loop_seam_gaps(m.joints, m.cycle) for m in final])
        rows[f"final/{prompt}"]["turn_deg"] = float(np.mean([abs(math.degrees(m.cycle.yaw)) for m in final]))
    return {"rows": rows, "summary": {label: _mean([r for k, r in rows.items() if k.startswith(label + "/")])
                                      for label in ("free", "guided", "final")}}


def bench_sequences(pipe, scores: TextScores, totals: list[float], seed: int, cfg, guidance,
                    overlap: int | None = None) -> dict:
    from realign_core.control.sequence import DEFAULT_OVERLAP

    names = list(PROMPTS)
    rows = []
    alone_cache: dict[str, dict] = {}
    for total in totals:
        count = max(1, round(total / 5.0))
        segments = [Segment(PROMPTS[names[k % len(names)]][0], total / count) for k in range(count)]
        started, cpu_started = time.perf_counter(), time.process_time()
        seq = generate_sequence(pipe, segments, seed, cfg, guidance, overlap=overlap or DEFAULT_OVERLAP)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        jerk = jerk_cm(seq.joints)
        seams = [a for a, _ in seq.segments[1:]]
        near = near_mask(len(seq.joints), seams, NEAR_SEAM_FRAMES)
        skate_near = [foot_skate_cm(seq.joints[max(0, s - 6):s + 6]) for s in seams]
        skate_in = [foot_skate_cm(seq.joints[a + 6:b - 6]) for a, b in seq.segments if b - a > 24]
        seg_scores = []
        for k, (a, b) in enumerate(seq.segments):
            prompt = names[k % len(names)]
            seg_scores.append({"prompt": prompt, **scores.score([seq.joints[a:b]], prompt)})
            if prompt not in alone_cache:
                alone = generate_controlled(pipe, [PROMPTS[prompt][0]], [b - a], [seed], [None], cfg, guidance)
                alone_cache[prompt] = scores.score([alone[0].joints], prompt)
        rows.append({"total_s": total, "frames": len(seq.joints), "windows": len(seq.windows), "wall_s": wall,
                     "wall_s_per_motion_s": wall / total, "cpu_s": cpu, "cpu_s_per_motion_s": cpu / total,
                     "jerk_transitions": float(jerk[near].mean()) if near.any() else 0.0,
                     "jerk_within": float(jerk[~near].mean()),
                     "skate_transitions_cm": float(np.mean(skate_near)) if skate_near else 0.0,
                     "skate_within_cm": float(np.mean(skate_in)),
                     "segments": _mean([{k: v for k, v in s.items() if k != "prompt"} for s in seg_scores])})
    alone = _mean(list(alone_cache.values()))
    return {"rows": rows, "alone": alone}


# --------------------------------------------------------------------------- CLI

def bench_layers(pipe, seeds: list[int], seconds: float, cfg, guidance) -> dict:
    """The layer part (see the module docstring)."""
    from realign_core.control.parts import layer_error_m, part_layer
    from realign_core.evaluation.kinematic.checks import MeasuredMotion, all_checks

    frames, rows = round(seconds * FPS), {}

    def passed(name: str, joints_list) -> float:
        return float(np.mean([all_checks()[name](MeasuredMotion(j)) for j in joints_list]))
    for name, (base, part, caption, check) in LAYERS.items():
        base_caption, _, base_check = PROMPTS[base]
        layers = [part_layer(pipe, caption, part, frames, s, cfg, guidance, with_features=True) for s in seeds]
        pulled = [ControlSpec(part=lay, part_weight=1.0) for lay, _ in layers]
        runs = {"free": ([None] * len(seeds), True), "pulled": (pulled, False), "pulled_final": (pulled, True),
                "final": ([ControlSpec(part=lay) for lay, _ in layers], True)}
        row: dict[str, float] = {}
        for label, (specs, exact) in runs.items():
            done = generate_controlled(pipe, [base_caption] * len(seeds), [frames] * len(seeds), seeds, specs, cfg,
                                       guidance, exact_keys=exact)
            row[f"{label}_layer_err_cm"] = 100 * float(np.mean([layer_error_m(m.features, lay)
                                                                for m, (lay, _) in zip(done, layers)]))
            if label != "pulled":
                joints = [m.joints for m in done]
                row[f"{label}_{base_check}"] = passed(base_check, joints)
                row[f"{label}_skate_cm"] = float(np.mean([foot_skate_cm(j) for j in joints]))
                if check is not None:
                    row[f"{label}_{check}"] = passed(check, joints)
        if check is not None:
            row[f"layer_alone_{check}"] = passed(check, [features_to_joints(f) for _, f in layers])
        rows[name] = row
    return {"rows": rows}


def _fmt(d: dict) -> str:
    return "  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items())


def constraint_schedule(args, base):
    """The ConstraintSchedule ``base`` (the models' default) changed by the options given; --refine-iterations
    sets the refinement's iterations of every take, paths included."""
    iterations = getattr(args, "refine_iterations", None)
    changes = {k: v for k, v in (("base_weight", getattr(args, "control_weight", None)),
                                 ("final_iterations", iterations), ("path_iterations", iterations),
                                 ("start_fraction", getattr(args, "ramp_start", None)),
                                 ("refine_regrow", getattr(args, "refine_regrow", None))) if v is not None}
    if getattr(args, "no_inpaint", False):
        changes.update(inpaint_root=False, inpaint_final=False)
    return replace(base, **changes)


def main(args) -> int:
    """Run the parts asked for and print (and optionally write) the results."""
    from realign_core.pipeline import TextToMotionPipeline

    torch.set_num_threads(args.threads)
    pipe = TextToMotionPipeline.from_checkpoints(args.models, args.device, generator=args.generator)
    scores = TextScores(args.models, pipe.normalizer, args.device)
    cfg = pipe.control_sampling if args.steps is None else replace(pipe.control_sampling, steps=args.steps)
    guidance = None
    if args.strength > 0:   # the models' validated setting (guidance.toml) at this strength
        if not pipe.has_reward:
            raise SystemExit(f"realign control-bench: --strength {args.strength} needs a reward model in {args.models}")
        base = pipe.default_guidance
        guidance = replace(base, strength=args.strength, eta=base.eta if pipe.has_reference_bank else 0.0)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    schedule = constraint_schedule(args, pipe.constraint_schedule)
    meta = {"models": str(args.models), "generator": args.generator, "seeds": args.seeds,
            "first_seed": args.first_seed, "steps": cfg.steps, "sampler": cfg.sampler,
            "guidance": asdict(guidance) if guidance is not None else None, "threads": args.threads, "loadavg_start": list(os.getloadavg()),
            "evaluators": list(scores.evaluators), "schedule": asdict(schedule), "overlap": args.overlap,
            "foot_weight": args.foot_weight, "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    results: dict = {"meta": meta}
    started = time.perf_counter()
    if "path" in args.parts:
        results["path"] = bench_paths(pipe, scores, seeds, args.seconds, cfg, guidance, schedule, args.foot_weight)
        for k, v in results["path"]["summary"].items():
            print(f"path {k:12s} {_fmt(v)}")
    if "keyframes" in args.parts:
        results["keyframes"] = bench_keyframes(pipe, scores, seeds, args.seconds, cfg, guidance)
        for k, v in results["keyframes"]["summary"].items():
            print(f"keyframes {k:14s} {_fmt(v)}")
    if "loop" in args.parts:
        results["loop"] = bench_loops(pipe, seeds, 3.0, cfg, guidance)
        for k, v in results["loop"]["summary"].items():
            print(f"loop {k:8s} {_fmt(v)}")
    if "layer" in args.parts:
        results["layer"] = bench_layers(pipe, seeds, args.seconds, cfg, guidance)
        for k, v in results["layer"]["rows"].items():
            print(f"layer {k:12s} {_fmt(v)}")
    if "sequence" in args.parts:
        results["sequence"] = bench_sequences(pipe, scores, list(args.sequence_seconds), args.first_seed, cfg, guidance,
                                              args.overlap)
        for row in results["sequence"]["rows"]:
            print(f"sequence {_fmt({k: v for k, v in row.items() if k != 'segments'})}  "
                  f"segments: {_fmt(row['segments'])}")
        print(f"sequence alone {_fmt(results['sequence']['alone'])}")
    meta["wall_s"] = time.perf_counter() - started
    meta["loadavg_end"] = list(os.getloadavg())
    print(f"done in {meta['wall_s']:.0f} s (load average {meta['loadavg_start'][0]:.2f} -> "
          f"{meta['loadavg_end'][0]:.2f})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


__all__ = ["LAYERS", "PATHS", "PROMPTS", "foot_skate_cm", "jerk_cm", "main", "path_shape"]
