"""The paper's results tables on our data: baseline vs ReAlign variants, scored by the independent evaluators.

Rows (``table_methods``), each generated for the same prompts and seeds:

* Real (test motions themselves);
* ``mld`` baseline (no guidance), ``+ T2M`` (eta = 0), ``+ M2M`` (mu = 0),
  ``+ both``, and ``+ both`` guided by the non-step-aware reward model (the
  ablation of the paper's Table 3) -- all at the validated scale, strength
  and guided steps;
* with ``curve``: the validated default at 5/10/25/all guided steps (the
  quality-vs-latency curve);
* the baseline / validated-default pair on the MDM-style generator
  (plug-and-play: the same guidance code on a motion-space model).

Metrics: R@1/2/3, FID, MM-Dist, Diversity (mean +- 95 % CI over ``repeats``
generations with different seeds) and MultiModality.  MultiModality uses the
repeats as the samples of each prompt (S = repeats, not Guo et al.'s 30): its
CI comes from bootstrap resampling of the prompts.

Every row is scored by each evaluator present (:func:`~realign_core.evaluation.scoring.load_evaluators`) on
the same generated motions: ``rows`` holds the primary evaluator's metrics, ``rows_by_evaluator`` the
others' (e.g. ``evaluator_words``, which shares nothing with MiniLM or the reward model).

Guidance settings are never tuned here: they come from the models'
``guidance.toml``, written by :mod:`realign_core.evaluation.guidance_tuning` from the
validation split.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from realign_core.evaluation import metrics as M
from realign_core.evaluation.scoring import (
    AnyEvaluator,
    EvalSet,
    embed_motions,
    embed_texts,
    load_evaluators,
    make_eval_set,
    real_metrics,
    summarize,
)
from realign_core.guidance.reward_guidance import GuidanceCalibration, GuidanceSettings
from realign_core.models.layout import checkpoint_path, generator_present, guidance_path
from realign_core.pipeline import SamplingConfig, TextToMotionPipeline

MetricDict = dict[str, tuple[float, float]]


@dataclass(frozen=True)
class Method:
    """One generated row: generator, guiding reward model (None = none), guidance settings, and the sampler
    and step count when the row has its own (None: the table's DDIM at its ``steps``)."""

    name: str
    generator: str = "mld"
    reward_kind: str | None = None
    guidance: GuidanceSettings | None = None
    sampler: str | None = None
    steps: int | None = None

    def sampling(self, steps: int) -> SamplingConfig:
        """This row's sampler settings in a table made at ``steps`` sampler steps."""
        return SamplingConfig(sampler=self.sampler or "ddim", steps=self.steps or steps)


def table_methods(models: Path, generators: tuple[str, ...] = ("mld", "mdm"), curve: bool = False) -> list[Method]:
    """The rows of the table for the generators whose checkpoints exist under ``models``.

    Every guided row keeps the validated scale, strength and guided steps and varies only the reward
    mix: ``+ T2M`` (eta = 0), ``+ M2M`` (mu = 0), ``+ both``, all with the motion-space reward model; the
    validated default is whichever of these the tuning chose, or, when it chose the reward model on the
    generator's latents (``reward_space = "latent"``), the extra row ``+ latent reward``.  ``curve``: also
    the validated default at other guided-step counts (the quality-vs-latency curve, see :func:`curve_rows`).
    """
    rows: list[Method] = []
    for gen in generators:
        if not generator_present(models, gen):
            continue
        best = GuidanceCalibration.load(guidance_path(models), gen).defaults
        both = replace(best, mu=best.mu or 1.0, eta=best.eta or 1.0, reward_space="motion")
        rows.append(Method(f"{gen} baseline", gen))
        if gen == "mld":
            rows += [Method(f"{gen} + T2M reward", gen, "reward", replace(both, eta=0.0)),
                     Method(f"{gen} + M2M reward", gen, "reward", replace(both, mu=0.0)),
                     Method(f"{gen} + both (T2M+M2M)", gen, "reward", both),
                     Method(f"{gen} + both, non-step-aware reward", gen, "reward_plain", both)]
            if best.reward_space == "latent":   # the ablations above stay in motion space
                rows.append(Method(f"{gen} + latent reward ({_mix_label(best)})", gen, "reward", best))
            if curve:
                rows += [Method(f"{gen} + ReAlign default, {_guided_label(k)}", gen, "reward",
                                replace(best, guided_steps=k)) for k in CURVE_GUIDED if k != best.guided_steps]
        else:
            rows.append(Method(f"{gen} + ReAlign default ({_mix_label(best)})", gen, "reward", best))
    return rows


CURVE_GUIDED: tuple[int | None, ...] = (5, 10, 25, None)   # guided-step counts of the curve (None = all)


LEVER_COUNTS: tuple[int | None, ...] = (1, 2, 3, 5, None)   # guided-step counts of the lever curve (None = all)


def lever_methods(models: Path, tunings: list[str | Path | dict], placement: str = "late",
                  counts: tuple[int | None, ...] = LEVER_COUNTS) -> list[Method]:
    """The test-split quality-vs-latency curve's rows: per validation search (one reward space each) and
    guided-step count, the candidate with the best judge R@1 on validation (the points of the validation
    levers figure, :func:`~realign_core.evaluation.benchmark.report.best_tuning_rows`), named
    "mld lever: {space} reward, {k} {placement} x{scale}"; its step scale is given as the strength
    relative to the models' calibrated scale.  The last row is the shipped default
    (:func:`default_lever_method`); the baseline row is ``mld baseline``."""
    from realign_core.evaluation.benchmark.report import best_tuning_rows, guided_key

    scale = GuidanceCalibration.load(guidance_path(models), "mld").scale
    rows: list[Method] = []
    for tuning in tunings:
        tuning = json.loads(Path(tuning).read_text()) if isinstance(tuning, (str, Path)) else tuning
        space, best = best_tuning_rows(tuning, placement)
        steps = int(tuning["config"]["steps"])
        for k in counts:
            row = best.get(guided_key(k, steps))
            if row is None or not row["settings"]:
                continue
            s = GuidanceSettings(**row["settings"])
            rows.append(Method(f"mld lever: {space} reward, {_steps_label(s)} x{row['scale']:g}", "mld", "reward",
                               replace(s, strength=s.strength * row["scale"] / scale)))
    return rows + [default_lever_method(models)]


def default_lever_method(models: Path) -> Method:
    """The shipped default of ``models/guidance.toml`` as a row of the lever curve, named
    "mld default: {space} reward, {k} {placement} x{scale}" (the plot marks it apart from the series)."""
    cal = GuidanceCalibration.load(guidance_path(models), "mld")
    s = cal.defaults
    return Method(f"mld default: {s.reward_space} reward, {_steps_label(s)} x{cal.scale * s.strength:g}", "mld",
                  "reward", s)


SAMPLER_SERIES: tuple[tuple[str, int], ...] = (("ddim", 5), ("ddim", 20), ("lcm", 1), ("lcm", 2), ("lcm", 4))


def sampler_methods(models: Path, series: tuple[tuple[str, int], ...] = SAMPLER_SERIES) -> list[Method]:
    """The sampler-steps lever of the curve: the unguided generator at each (sampler, steps) of ``series``
    ("mld sampler: lcm 4 steps"), and each with the shipped default guidance ("mld sampler: lcm 4 steps +
    default guidance": its reward, scale and placement, at most as many guided steps as the sampler has).
    The 'lcm' rows need the consistency denoiser (ROOT/denoiser_lcm) and are left out without it."""
    default = GuidanceCalibration.load(guidance_path(models), "mld").defaults
    has_lcm = checkpoint_path(models, "denoiser_lcm").is_file()
    rows: list[Method] = []
    for sampler, steps in series:
        if sampler == "lcm" and not has_lcm:
            continue
        guided = replace(default, guided_steps=None if default.guided_steps is None
                         else min(default.guided_steps, steps))
        rows += [Method(f"mld sampler: {sampler} {steps} steps", "mld", None, None, sampler, steps),
                 Method(f"mld sampler: {sampler} {steps} steps + default guidance", "mld", "reward", guided,
                        sampler, steps)]
    return rows


def _steps_label(s: GuidanceSettings) -> str:
    """"all steps", "last 3" (late placement) or "3 spread": which steps a setting guides."""
    return "all steps" if s.guided_steps is None else f"last {s.guided_steps}" if s.placement == "late" \
        else f"{s.guided_steps} {s.placement}"


def _guided_label(k: int | None) -> str:
    return "all steps guided" if k is None else f"{k} steps guided"


def _mix_label(g: GuidanceSettings) -> str:
    return {(True, False): "T2M", (False, True): "M2M"}.get((g.mu > 0, g.eta > 0), "T2M+M2M")


def curve_rows(result: dict[str, Any], generator: str = "mld", steps: int = 50) -> list[dict[str, Any]]:
    """Quality per guided-step count of the validated default, for the quality-vs-latency plot:
    [{guided_steps (0 = baseline, None = all), r1, r1_ci, fid, fid_ci, method}], from a ``run_table``
    result made with ``curve=True``.  Rows that are the default's settings at some step count count."""
    methods, rows = result["methods"], result["rows"]
    default = result.get("defaults", {}).get(generator)
    out = []
    for name, m in methods.items():
        if m["generator"] != generator or name not in rows:
            continue
        if m["guidance"] is None:
            k: int | None = 0
        elif m["reward"] == "reward" and default is not None and \
                {**m["guidance"], "guided_steps": None} == {**default, "guided_steps": None}:
            k = m["guidance"]["guided_steps"]
            k = None if k is not None and k >= steps else k
        else:
            continue
        r = rows[name]
        out.append({"guided_steps": k, "r1": r["r1"][0], "r1_ci": r["r1"][1], "fid": r["fid"][0],
                    "fid_ci": r["fid"][1], "method": name})
    return sorted(out, key=lambda q: steps if q["guided_steps"] is None else q["guided_steps"])


def eval_subset(data: Path, split: str, limit: int | None, seed: int = 0) -> EvalSet:
    """The split's prompts, or a seeded random subset of ``limit`` of them (same for every method)."""
    full = make_eval_set(data, split)
    if not limit or limit >= len(full.captions):
        return full
    keep = sorted(np.random.default_rng(seed).choice(len(full.captions), limit, replace=False).tolist())
    return EvalSet([full.captions[i] for i in keep], [full.lengths[i] for i in keep], [full.features[i] for i in keep])


def generate_set(pipe: TextToMotionPipeline, prompts: EvalSet, seeds: list[int], sampling: SamplingConfig,
                 guidance: GuidanceSettings | None, batch: int = 32, desc: str = "") -> list[np.ndarray]:
    """One normalised feature array (T_i, 263) per prompt."""
    out: list[np.ndarray] = []
    for i in tqdm(range(0, len(prompts.captions), batch), desc=desc, leave=False):
        caps, lens = prompts.captions[i:i + batch], prompts.lengths[i:i + batch]
        feats = pipe(caps, lens, seeds[i:i + batch], sampling, guidance).features
        normed = pipe.normalizer.normalize(feats)
        out += [normed[j, :n].cpu().numpy() for j, n in enumerate(lens)]
    return out


def score_method(pipe: TextToMotionPipeline, method: Method, evaluators: dict[str, AnyEvaluator], prompts: EvalSet,
                 repeats: int, sampling: SamplingConfig, batch: int = 32) -> dict[str, MetricDict]:
    """Generate ``repeats`` times (seed = repeat * 1,000,003 + prompt index) and score every run with
    every evaluator: {kind: metrics}."""
    text = {k: embed_texts(e, prompts.captions) for k, e in evaluators.items()}
    real = {k: embed_motions(e, prompts.features) for k, e in evaluators.items()}
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in evaluators}
    per_repeat: dict[str, list[np.ndarray]] = {k: [] for k in evaluators}
    for rep in range(repeats):
        seeds = [rep * 1_000_003 + j for j in range(len(prompts.captions))]
        feats = generate_set(pipe, prompts, seeds, sampling, method.guidance, batch,
                             desc=f"{method.name} ({rep + 1}/{repeats})")
        for k, evaluator in evaluators.items():
            emb = embed_motions(evaluator, feats)
            per_repeat[k].append(emb)
            r = M.r_precision(text[k], emb, seed=rep)
            runs[k].append({"r1": float(r[0]), "r2": float(r[1]), "r3": float(r[2]), "fid": M.fid(emb, real[k]),
                            "mm_dist": M.matching_score(text[k], emb), "diversity": M.diversity(emb, seed=rep)})
    result = {k: summarize(r) for k, r in runs.items()}
    if repeats >= 2:
        for k in evaluators:
            result[k]["multimodality"] = multimodality_ci(np.stack(per_repeat[k], axis=1))
    return result


def multimodality_ci(emb: np.ndarray, resamples: int = 20, seed: int = 0) -> tuple[float, float]:
    """MultiModality of (P, S, D) embeddings with a 95 % half-width from bootstrap over prompts."""
    rng = np.random.default_rng(seed)
    value = M.multimodality(emb, seed=seed)
    boots = [M.multimodality(emb[rng.integers(0, len(emb), len(emb))], seed=seed) for _ in range(resamples)]
    return value, float(M.CI_Z * np.std(boots, ddof=1))


def run_table(models: Path, data: Path, split: str = "test", limit: int | None = None, repeats: int = 5,
              steps: int = 50, device: str = "cpu", methods: list[Method] | None = None,
              batch: int = 32, curve: bool = False, generators: tuple[str, ...] = ("mld", "mdm")) -> dict[str, Any]:
    """Score Real and every method on the same prompts; returns a JSON-ready dict (with ``curve``,
    the quality rows of the quality-vs-latency plot, when ``curve``)."""
    evaluators = load_evaluators(models, device)
    if "evaluator" not in evaluators:
        raise FileNotFoundError(f"{checkpoint_path(models, 'evaluator')}: the results table needs the evaluator")
    prompts = eval_subset(data, split, limit)
    methods = table_methods(models, generators, curve=curve) if methods is None else methods
    calibrations = {g: GuidanceCalibration.load(guidance_path(models), g)               # read once, up front
                    for g in sorted({m.generator for m in methods})}
    defaults = {g: asdict(c.defaults) for g, c in calibrations.items()}
    by_kind: dict[str, dict[str, Any]] = {k: {"Real": real_metrics(e, prompts, None, repeats=20)}
                                          for k, e in evaluators.items()}
    pipes: dict[tuple[str, str | None], TextToMotionPipeline] = {}
    scored: dict[tuple, dict[str, MetricDict]] = {}
    for method in methods:
        key = (method.generator, method.reward_kind)
        if key not in pipes:
            pipes[key] = TextToMotionPipeline.from_checkpoints(models, device, generator=method.generator,
                                                               reward_kind=method.reward_kind)
        same = _generation_key(method, steps)     # a row generated exactly like an earlier one is not run again
        if same not in scored:
            scored[same] = score_method(pipes[key], method, evaluators, prompts, repeats, method.sampling(steps), batch)
        for kind, metrics in scored[same].items():
            by_kind[kind][method.name] = metrics
    rows = by_kind.pop("evaluator")
    result = {"split": split, "prompts": len(prompts.captions), "repeats": repeats, "steps": steps,
              "device": device, "defaults": defaults, "methods": {m.name: _method_dict(m) for m in methods},
              "foot_lock": {g: bool(c.foot_lock) for g, c in calibrations.items()},
              "rows": rows, "rows_by_evaluator": by_kind}
    if curve:
        result["curve"] = curve_rows(result, "mld", steps)
    return result


def _generation_key(m: Method, steps: int) -> tuple:
    """What a row's motions depend on: generator, sampler, steps and (when guided) reward and guidance settings."""
    sampling = m.sampling(steps)
    guided = (m.reward_kind, tuple(sorted(asdict(m.guidance).items()))) if m.guidance is not None else None
    return m.generator, sampling.sampler, sampling.steps, guided


def _method_dict(m: Method) -> dict[str, Any]:
    out = {"generator": m.generator, "reward": m.reward_kind, "guidance": asdict(m.guidance) if m.guidance else None}
    if m.sampler is not None:
        out.update(sampler=m.sampler, steps=m.steps)
    return out


METRIC_ORDER = ("r1", "r2", "r3", "fid", "mm_dist", "diversity", "multimodality")


def table_rows(result: dict[str, Any], evaluator: str = "evaluator") -> dict[str, MetricDict]:
    """{method: metrics} of one evaluator in a ``run_table`` result ({} when it did not score it)."""
    return result["rows"] if evaluator == "evaluator" else result.get("rows_by_evaluator", {}).get(evaluator, {})


def format_table(result: dict[str, Any], evaluator: str = "evaluator") -> str:
    """Markdown table of a ``run_table`` result as scored by ``evaluator``."""
    head = "| method | " + " | ".join(METRIC_ORDER) + " |"
    lines = [head, "|" + "---|" * (len(METRIC_ORDER) + 1)]
    for name, row in table_rows(result, evaluator).items():
        cells = [f"{row[k][0]:.3f} ± {row[k][1]:.3f}" if k in row else "–" for k in METRIC_ORDER]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def merge_tables(previous: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A partial run (some generators) updates an earlier table made on the same prompts and sampler;
    otherwise the new table replaces it."""
    same = all(previous.get(k) == new[k] for k in ("split", "prompts", "repeats", "steps"))
    if not same:
        return new
    merged = {**previous, **{k: v for k, v in new.items() if k not in ("methods", "rows", "defaults", "curve")}}
    merged["defaults"] = {**previous.get("defaults", {}), **new["defaults"]}
    methods = {**previous["methods"], **new["methods"]}
    order = {"mld": 1, "mdm": 2}        # Real first, then each generator's rows in their own order
    rank = {name: order.get(m["generator"], 3) for name, m in methods.items()}

    def ordered(old: dict[str, Any], new_rows: dict[str, Any]) -> dict[str, Any]:
        return dict(sorted({**old, **new_rows}.items(), key=lambda kv: rank.get(kv[0], 0)))

    merged["methods"] = methods
    merged["rows"] = ordered(previous["rows"], new["rows"])
    kinds = set(previous.get("rows_by_evaluator", {})) | set(new.get("rows_by_evaluator", {}))
    merged["rows_by_evaluator"] = {k: ordered(previous.get("rows_by_evaluator", {}).get(k, {}),
                                              new.get("rows_by_evaluator", {}).get(k, {})) for k in sorted(kinds)}
    if "curve" in new:
        merged["curve"] = new["curve"]
    return merged


def save_table(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=list))


