"""The latency benchmark on the real tiny generator + reward model (``tiny_guided``), and its plot."""
from __future__ import annotations

import json

import pytest
import torch

from realign_core.cli.bench import main
from realign_core.evaluation.benchmark.instrument import PHASES, instrumented
from realign_core.evaluation.benchmark.report import (curve_points, format_table, plot_guidance_levers,
                                                      plot_quality_vs_latency, tuning_quality_rows)
from realign_core.evaluation.benchmark.runs import (
    BenchConfig,
    autocast_fidelity,
    bench_latency,
    bench_reward_variants,
    plan_configs,
)
from realign_core.guidance.reward_guidance import GuidanceSettings
from realign_core.pipeline import SamplingConfig, TextToMotionPipeline

STEPS, FRAMES = 4, 60
PROMPTS = ["a person walks forward.", "a person jumps."]
GUIDED = GuidanceSettings(strength=5.0)


@pytest.fixture(scope="module")
def pipe(tiny_guided):
    return TextToMotionPipeline.from_checkpoints(tiny_guided)


@pytest.fixture(scope="module")
def rows(pipe):
    return bench_latency(pipe, batch_sizes=(1, 2), frames=FRAMES, steps=STEPS, guided_steps=(0, 2, None),
                         repeats=2, warmup=0, base=GUIDED)


def _sample(pipe: TextToMotionPipeline, settings: GuidanceSettings | None) -> torch.Tensor:
    return pipe(PROMPTS, [FRAMES, 40], [3, 4], SamplingConfig(steps=STEPS), settings).features


def _find(rows, batch, guided):
    return next(r for r in rows if r["batch"] == batch and r["guided_steps"] == guided)


def test_rows_have_the_expected_keys(rows):
    keys = {"generator", "device", "batch", "frames", "steps", "guided_steps", "placement", "amp", "threads",
            "per_motion_s", "call_s", "denoiser_s", "decoder_s", "reward_s", "other_s", "slowdown",
            "mem_peak_mb", "mem_extra_mb", "mem_kind", "denoiser_calls", "decoder_calls", "reward_calls"}
    assert len(rows) == 6
    for r in rows:
        assert keys <= set(r)
        assert r["per_motion_s"] > 0 and r["mem_peak_mb"] > 0 and r["mem_extra_mb"] >= 0
        assert r["call_s"] == pytest.approx(r["per_motion_s"] * r["batch"])
    assert _find(rows, 1, "0")["slowdown"] == pytest.approx(1.0)
    json.dumps(rows)                                    # serialisable as is
    assert "s/motion" in format_table(rows)


def test_split_sums_to_at_most_the_total(rows):
    for r in rows:
        parts = [r[f"{p}_s"] for p in PHASES]
        assert all(p >= 0 for p in parts)
        assert sum(parts) <= r["per_motion_s"] * (1 + 1e-6)
        assert r["denoiser_s"] > 0 and r["decoder_s"] > 0
        assert r["denoiser_calls"] == STEPS


def test_the_consistency_sampler_times_its_own_denoiser(pipe):
    """With the 'lcm' sampler the distilled denoiser's calls are the denoiser phase (one per step)."""
    lcm = bench_latency(pipe, batch_sizes=(1,), frames=FRAMES, steps=2, guided_steps=(0,), repeats=1, warmup=0,
                        base=GUIDED, sampler="lcm")
    assert lcm[0]["sampler"] == "lcm" and lcm[0]["denoiser_calls"] == 2 and lcm[0]["denoiser_s"] > 0


def test_reward_time_only_when_guided(rows):
    for batch in (1, 2):
        unguided, some, every = _find(rows, batch, "0"), _find(rows, batch, "2"), _find(rows, batch, "all")
        assert unguided["reward_s"] == 0 and unguided["reward_calls"] == 0 and unguided["decoder_calls"] == 1
        assert some["reward_calls"] == 2 and some["decoder_calls"] == 3
        assert every["reward_s"] > 0 and every["reward_calls"] == STEPS and every["decoder_calls"] == STEPS + 1
        assert some["reward_s"] > 0          # no ordering of times: the machine may be busy


def test_benchmark_leaves_the_pipeline_unchanged(pipe):
    before = [_sample(pipe, s) for s in (None, GUIDED)]
    bench_latency(pipe, batch_sizes=(1,), frames=FRAMES, steps=STEPS, guided_steps=(0, None), repeats=1,
                  warmup=0, amps=(None, "bf16"), base=GUIDED)
    after = [_sample(pipe, s) for s in (None, GUIDED)]
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert not torch.equal(before[0], before[1])
    for obj, name in ((pipe.generator, "model_fn"), (pipe.generator, "to_features"),
                      (pipe.reward.model, "encode_motion")):
        assert name not in vars(obj)


def test_instrumentation_is_undone_on_error(pipe):
    with pytest.raises(RuntimeError), instrumented(pipe):
        assert "to_features" in vars(pipe.generator)
        raise RuntimeError("boom")
    assert "to_features" not in vars(pipe.generator) and "encode_motion" not in vars(pipe.reward.model)


def test_instrumented_guided_output_is_bit_identical(pipe):
    plain = _sample(pipe, GUIDED)
    with instrumented(pipe) as clock:
        timed = _sample(pipe, GUIDED)
    assert torch.equal(plain, timed)
    assert clock.calls["reward"] == STEPS and clock.seconds["reward"] > 0


def test_plan_configs_skips_duplicates():
    configs = plan_configs((1,), (0, 5, 50, None), 50, ("spread", "late"), (None, "bf16"))
    assert BenchConfig(1, 0) in configs and BenchConfig(1, 5, "late", "bf16") in configs
    assert sum(c.guided_steps == 0 for c in configs) == 1
    assert sum(c.guided_steps is None for c in configs) == 2       # 50 >= steps counts as all
    assert len(configs) == 1 + 4 + 2


def test_autocast_fidelity_reports_finite_changes(pipe):
    out = autocast_fidelity(pipe, "bf16", batch=2, frames=FRAMES, steps=STEPS, base=GUIDED)
    for key in ("reward_max_abs_diff", "grad_cosine_min", "motion_max_abs_diff_norm"):
        assert out[key] == out[key] and abs(out[key]) < float("inf")
    assert out["reward_max_abs_diff"] < 0.1 and out["grad_cosine_min"] > 0.5


def test_cli_prints_a_table_and_writes_json(tiny_guided, tmp_path, capsys):
    out = tmp_path / "latency.json"
    assert main(["--models", str(tiny_guided), "--batch", "1", "--steps", str(STEPS), "--frames", str(FRAMES),
                 "--guided", "0", "all", "--repeats", "1", "--warmup", "0", "--strength", "2",
                 "--table-clock", "cpu", "--reward-variants", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "s/motion" in text and "denoiser (cpu)" in text and "as trained" in text
    payload = json.loads(out.read_text())
    assert [r["guided_steps"] for r in payload["rows"]] == ["0", "all"]
    assert payload["meta"]["guidance"]["strength"] == 2.0
    assert len(payload["reward_variants"]) == 5
    assert payload["meta"]["sampler"] == "ddim" and {r["sampler"] for r in payload["rows"]} == {"ddim"}


def test_cli_times_another_sampler(tiny_guided, tmp_path, capsys):
    out = tmp_path / "latency.json"
    assert main(["--models", str(tiny_guided), "--batch", "1", "--steps", "4", "--frames", str(FRAMES),
                 "--guided", "0", "all", "--repeats", "1", "--warmup", "0", "--sampler", "dpmsolver++",
                 "--json", str(out)]) == 0
    assert "4 dpmsolver++ steps" in capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert [(r["sampler"], r["steps"], r["guided_steps"]) for r in rows] == [("dpmsolver++", 4, "0"),
                                                                          ("dpmsolver++", 4, "all")]
    assert rows[1]["reward_calls"] > rows[0]["reward_calls"] == 0


def test_rounds_pair_each_configuration_with_its_own_rounds_unguided_row(pipe):
    rows = bench_latency(pipe, batch_sizes=(1,), frames=FRAMES, steps=STEPS, guided_steps=(0, None), repeats=1,
                         warmup=0, base=GUIDED, rounds=3)
    assert [r["guided_steps"] for r in rows] == ["0", "all"] and {r["rounds"] for r in rows} == {3}
    guided = rows[1]
    assert guided["repeats"] == 3 and len(guided["slowdown_rounds"]) == 3
    assert guided["slowdown"] == sorted(guided["slowdown_rounds"])[1]          # the median of paired ratios
    assert rows[0]["slowdown"] == pytest.approx(1.0)
    sweeps = [[{"batch": 1, "guided_steps": "0", "repeats": 2, "per_motion_s": u, "slowdown": 1.0,
                "slowdown_cpu": 1.0},
               {"batch": 1, "guided_steps": "3", "repeats": 2, "per_motion_s": g, "slowdown": g / u,
                "slowdown_cpu": g / u}] for u, g in ((1.0, 1.2), (2.0, 3.0), (1.0, 1.3))]
    from realign_core.evaluation.benchmark.runs import merge_rounds
    merged = merge_rounds(sweeps)
    assert merged[1]["per_motion_s"] == pytest.approx(5.5 / 3) and merged[1]["repeats"] == 6
    assert merged[1]["slowdown"] == pytest.approx(1.3)     # median of 1.2, 1.5, 1.3; the ratio of means is 1.375
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        bench_latency(pipe, batch_sizes=(1,), guided_steps=(0,), rounds=0)


def test_reward_variants_are_timed(pipe):
    rows = bench_reward_variants(pipe.reward.model.config, ({}, {"motion_layers": 1}), batch=1, frames=FRAMES,
                                 repeats=1)
    assert [r["variant"] for r in rows] == ["as trained", "motion_layers=1"]
    assert all(r["pass_ms"] > 0 and r["pass_cpu_ms"] > 0 for r in rows)
    assert rows[1]["motion_layers"] == 1


def test_quality_vs_latency_plot_from_made_up_numbers(tmp_path):
    latency = {"rows": [{"batch": 1, "steps": 50, "guided_steps": g, "placement": "spread", "amp": "fp32",
                         "per_motion_s": s, "slowdown": s / 1.0}
                        for g, s in (("0", 1.0), ("5", 1.3), ("10", 1.6), ("25", 2.5), ("all", 4.0))]}
    quality = [{"guided_steps": g, "r1": r, "r1_ci": 0.01, "fid": f, "fid_ci": 0.2}
               for g, r, f in ((0, 0.30, 3.0), (5, 0.32, 2.6), (10, 0.33, 2.4), (25, 0.34, 2.2), ("all", 0.35, 2.0))]
    points = curve_points(latency["rows"], quality)
    assert [p["guided"] for p in points] == ["0", "5", "10", "25", "all"]
    (tmp_path / "q.json").write_text(json.dumps({"rows": quality}))
    png = plot_quality_vs_latency(latency, tmp_path / "q.json", tmp_path / "img" / "curve.png")
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError):
        plot_quality_vs_latency(latency, [{"guided_steps": 7, "r1": 0.1, "fid": 1.0}], tmp_path / "none.png")


def test_guidance_levers_plot_takes_the_best_candidate_per_guided_count(tmp_path):
    def row(scale, r1, fid, k, placement, space):
        return {"scale": scale, "judge_r1": r1, "judge_fid": fid,
                "settings": {"guided_steps": k, "placement": placement, "reward_space": space}}

    def tuning(space, late3):
        return {"config": {"steps": 10}, "baseline": {"judge_r1": 0.40, "judge_fid": 0.30},
                "stages": [[row(30, 0.60, 0.20, None, "spread", space)],
                           [row(30, 0.50, 0.25, 3, "late", space), row(90, late3, 0.18, 3, "late", space),
                            row(30, 0.45, 0.28, 3, "spread", space)]]}

    space, rows = tuning_quality_rows(tuning("latent", 0.58), "late")
    assert space == "latent"
    assert rows == [{"guided_steps": 0, "r1": 0.40, "fid": 0.30}, {"guided_steps": "all", "r1": 0.60, "fid": 0.20},
                    {"guided_steps": "3", "r1": 0.58, "fid": 0.18}]
    assert tuning_quality_rows(tuning("latent", 0.58), "spread")[1][-1]["r1"] == 0.45
    latency = [{"batch": 1, "guided_steps": g, "placement": "late", "reward_space": sp, "per_motion_s": s}
               for g, sp, s in (("0", "-", 0.2), ("3", "motion", 0.32), ("all", "motion", 0.5),
                                ("3", "latent", 0.23), ("all", "latent", 0.3))]
    png = plot_guidance_levers(latency, [tuning("motion", 0.62), tuning("latent", 0.58)], tmp_path / "levers.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="no tuning series"):
        plot_guidance_levers(latency[:1], [tuning("motion", 0.62)], tmp_path / "none.png")
