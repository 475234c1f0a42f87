"""`realign choose-guidance`: tuned candidates re-judged by several validation judges, and the rule that picks
the cheapest default keeping full guidance's gains within a latency budget."""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict

import pytest

from realign_core.evaluation.guidance_choice import (ChoiceConfig, JudgeSpec, choose, combine_choices, format_choice,
                                                     pool_candidates, reusable_without_latent)


def _row(space, k, judge_a, judge_b, kin=0.5, scale=30.0):
    settings = None if space is None else {"strength": 1.0, "mu": 1.0, "eta": 1.0 if space == "motion" else 0.0,
                                           "guided_steps": k, "placement": "late", "reward_space": space}
    return {"scale": scale if settings else 0.0, "settings": settings, "kin_pass": kin,
            "judges": {"a": {"judge_r1": judge_a[0], "judge_fid": judge_a[1]},
                       "b": {"judge_r1": judge_b[0], "judge_fid": judge_b[1]}}}


def _result(latent5_kin=0.5):
    rows = [_row(None, None, (0.40, 0.30), (0.30, 20.0)),
            _row("motion", None, (0.70, 0.15), (0.60, 10.0)),           # full guidance (the reference)
            _row("motion", None, (0.72, 0.40), (0.61, 25.0), scale=100),  # higher R@1 but FID above baseline
            _row("motion", 3, (0.68, 0.15), (0.58, 10.0)),               # keeps 93 % / 100 % by both
            _row("latent", 3, (0.62, 0.16), (0.62, 9.0)),                # judge a: 73 % of the R@1 gain
            _row("latent", 5, (0.68, 0.14), (0.60, 10.0), kin=latent5_kin),
            _row("latent", None, (0.69, 0.14), (0.61, 9.5))]
    return {"judges": {"a": {}, "b": {}}, "steps": 10, "rows": rows}


LATENCY = [{"batch": 1, "guided_steps": g, "steps": 10, "reward_space": space, "per_motion_s": s}
           for g, space, s in [("0", "-", 1.0), ("3", "motion", 1.5), ("all", "motion", 2.8),
                               ("3", "latent", 1.2), ("5", "latent", 1.3), ("all", "latent", 1.6)]]


def test_choice_is_the_cheapest_candidate_keeping_the_gains_by_every_judge():
    choice = choose(_result(), LATENCY)
    ref = choice["reference"]
    assert ref["scale"] == 30.0 and ref["settings"]["guided_steps"] is None   # the FID guard skips scale 100
    assert {k: v for k, v in choice["rows"][0]["kept"]["a"].items()} == {"r1": 1.0, "fid": 1.0}
    pick = choice["choice"]
    assert (pick["settings"]["reward_space"], pick["settings"]["guided_steps"]) == ("latent", 5)
    assert choice["budget_met"] and pick["slowdown"] == pytest.approx(1.3)
    latent3 = next(r for r in choice["rows"] if r["settings"]["guided_steps"] == 3
                   and r["settings"]["reward_space"] == "latent")
    assert latent3["kept"]["a"]["r1"] == pytest.approx(0.22 / 0.30) and not latent3["keeps_gain"]
    table = format_choice(choice)
    assert "**1.30**" in table and "| all = full guidance |" in table
    assert len(table.splitlines()) == 2 + 1 + 5        # header, baseline, the rows within 2x and the reference

    tight = choose(_result(), LATENCY, ChoiceConfig(max_slowdown=1.25))
    assert not tight["budget_met"] and tight["choice"]["settings"]["guided_steps"] == 5   # cheapest at any cost

    guarded = choose(_result(latent5_kin=0.3), LATENCY)     # the 5-step latent setting stops doing the motions
    assert not guarded["budget_met"]
    assert (guarded["choice"]["settings"]["reward_space"], guarded["choice"]["settings"]["guided_steps"]) == ("motion", 3)


def test_pooling_refuses_tunings_of_other_prompts_or_samplers():
    base = {"generator": "mld", "prompts": 256, "config": {"steps": 10, "sampler": "ddim", "batch": 32, "kin_samples": 4},
            "baseline": {"scale": 0.0, "settings": None}, "stages": [[{"scale": 30.0, "settings": {"guided_steps": 3}}]]}
    other = json.loads(json.dumps(base))
    other["stages"][0].append({"scale": 9.0, "settings": {"guided_steps": 1, "reward_space": "latent"}})
    baseline, rows = pool_candidates([base, other])
    assert baseline["settings"] is None and [r["scale"] for r in rows] == [30.0, 9.0]   # the shared row once
    other["config"]["steps"] = 50
    with pytest.raises(ValueError, match=r"config.steps: 10 vs 50"):
        pool_candidates([base, other])
    assert JudgeSpec.parse("evaluator_words@/tmp/judge", None).name == "evaluator_words@judge"
    with pytest.raises(ValueError, match="KIND or KIND@ROOT"):
        JudgeSpec.parse("@/tmp/judge", None)


@pytest.fixture(scope="module")
def tuned_tiny(tiny_stack, tmp_path_factory):
    """The tiny stack with a reward bank, a validation search of each reward space (T2M, last step or all
    steps) and the latency of every (reward space, guided-step count): (data, root, tunings, latency)."""
    from realign_core.cli.main import main
    from realign_core.evaluation.guidance_tuning import TuningConfig, tune

    data, trained = tiny_stack
    tmp = tmp_path_factory.mktemp("tuned")
    root = tmp / "models"
    shutil.copytree(trained, root)
    assert main(["bank", "--models", str(root), "--data", str(data), "--kinds", "reward", "latent_reward"]) == 0
    tunings = []
    for space in ("motion", "latent"):
        cfg = TuningConfig(scales=(30.0,), mixes=(), guided_steps_options=(1,), stage3_scale_factors=(1.0,),
                           placements=("late",), prompts=32, steps=4, kin_samples=0, reward_space=space)
        tunings.append(tmp / f"t_{space}.json")
        tunings[-1].write_text(json.dumps(tune(root, data, "mld", cfg)))
    latency = tmp / "lat.json"
    assert main(["bench", "--models", str(root), "--steps", "4", "--batch", "1", "--guided", "0", "1", "all",
                 "--placement", "late", "--reward-space", "motion", "latent", "--repeats", "1", "--warmup", "0",
                 "--json", str(latency)]) == 0
    return data, root, tunings, latency


def test_choose_guidance_rejudges_every_candidate_with_each_judge(tuned_tiny, tmp_path, capsys):
    """Re-judge the tiny stack's motion-space search with the reward judge and a words judge."""
    from realign_core.cli.main import main
    from realign_core.evaluation.guidance_tuning import load_judge

    data, root, tunings, latency = tuned_tiny
    tuning = json.loads(tunings[0].read_text())
    (tmp_path / "t.json").write_text(json.dumps(tuning))
    (tmp_path / "lat.json").write_text(latency.read_text())
    out = tmp_path / "choice.json"
    args = ["choose-guidance", "--models", str(root), "--data", str(data), "--tunings", str(tmp_path / "t.json"),
            "--judges", "reward_plain", f"evaluator_words@{root}", "--latency", str(tmp_path / "lat.json"),
            "--max-slowdown", "100", "--keep-gain", "-100", "-o", str(out), "--plot", str(tmp_path / "choice.png")]
    assert main(args) == 0
    result = json.loads(out.read_text())
    words = f"evaluator_words@{root.name}"
    assert list(result["judges"]) == ["reward_plain", words] and len(result["rows"]) == 3
    tuned = {json.dumps(r["settings"], sort_keys=True): r for r in
             [tuning["baseline"], *(r for s in tuning["stages"] for r in s)]}
    for row in result["rows"]:     # the same prompts and seeds reproduce the tuning's own judge scores
        assert row["judges"]["reward_plain"]["judge_r1"] == pytest.approx(
            tuned[json.dumps(row["settings"], sort_keys=True)]["judge_r1"], abs=1e-9)
        assert row["judges"][words] != row["judges"]["reward_plain"]      # its own embedding space
    choice = result["choice"]
    assert choice["reference"]["settings"]["guided_steps"] is None and choice["budget_met"]
    assert choice["choice"]["slowdown"] == min(r["slowdown"] for r in choice["rows"])
    assert "choice:" in capsys.readouterr().out and (tmp_path / "choice.png").stat().st_size > 5000
    # more precisely: the screened rows only (reference, choice, within budget), the whole split, two seed sets
    precise = tmp_path / "precise.json"
    screen = ["--screen", str(out), "--min-kept", "2.0", "--prompts", "0", "--seeds", "2", "-o", str(precise)]
    assert main(args[:-2] + screen) == 0
    again = json.loads(precise.read_text())
    from realign_core.evaluation.results_table import eval_subset
    assert again["prompts"] == len(eval_subset(data, "val", None).captions) and again["seeds"] == 2
    assert {json.dumps(r["settings"], sort_keys=True) for r in again["rows"][1:]} == \
        {json.dumps(choice[k]["settings"], sort_keys=True) for k in ("reference", "choice")}
    runs = again["rows"][0]["judges"]["reward_plain"]["per_seed"]
    assert len(runs) == 2 and runs[0] != runs[1]
    # another latent reward model would re-generate its latent rows only; these guides are all reused as judged
    reused = tmp_path / "reused.json"
    assert main(args[:-2] + screen[:-1] + [str(reused), "--reuse", str(precise)]) == 0
    assert json.loads(reused.read_text())["rows"] == again["rows"]
    # another latent reward model: its latent rows are judged again, with their own kinematic pass rates
    both = []
    for t in tunings:
        patched = json.loads(t.read_text())
        patched["config"]["kin_samples"] = 1
        both.append(tmp_path / f"k_{t.name}")
        both[-1].write_text(json.dumps(patched))
    latent_run = tmp_path / "latent_run.json"
    assert main(["choose-guidance", "--models", str(root), "--data", str(data), "--tunings", *map(str, both),
                 "--judges", "reward_plain", f"evaluator_words@{root}", "--latency", str(latency), "--max-slowdown",
                 "100", "--keep-gain", "-100", "--reuse", str(out), "-o", str(latent_run)]) == 0
    rows = json.loads(latent_run.read_text())["rows"]
    latent = [r for r in rows if r["settings"] and r["settings"]["reward_space"] == "latent"]
    assert latent and all(r["kin_own"] and 0.0 <= r["kin_pass"] <= 1.0 for r in latent)
    assert all("kin_own" not in r for r in rows if r not in latent)
    # another generator: every row's kinematic pass rate (the unguided baseline's too) is measured again
    own = tmp_path / "own.json"
    assert main(["choose-guidance", "--models", str(root), "--data", str(data), "--tunings", *map(str, both),
                 "--judges", "reward_plain", "--latency", str(latency), "--max-slowdown", "100", "--keep-gain",
                 "-100", "--own-kinematic", "-o", str(own)]) == 0
    rows = json.loads(own.read_text())["rows"]
    assert rows[0]["settings"] is None and all(r["kin_own"] and 0.0 <= r["kin_pass"] <= 1.0 for r in rows)
    with pytest.raises(FileNotFoundError, match="judge checkpoint .*evaluator_words"):
        load_judge(tmp_path / "nowhere", "evaluator_words", None)


def test_combined_choice_compares_latent_reward_models_under_one_rule():
    """Two runs that differ only in the latent reward model: a smaller one that is cheaper and keeps the gains
    wins; one whose baseline scores differ (other prompts) is refused."""
    big = {"models": "big", "choice": choose(_result(), LATENCY)}
    small = {"models": "small", "choice": choose(_result(), [{**r, "per_motion_s": 1.0 + (r["per_motion_s"] - 1.0) / 2}
                                                             if r["reward_space"] == "latent" else r for r in LATENCY])}
    small["choice"]["rows"] = [r for r in small["choice"]["rows"] if r["settings"]["reward_space"] == "latent"
                               or r["settings"]["guided_steps"] is None]
    combined = combine_choices({"3 layers": big, "1 layer": small})
    latent = [r for r in combined["rows"] if r["settings"]["reward_space"] == "latent"]
    assert sorted({r["latent_model"] for r in latent}) == ["1 layer", "3 layers"] and len(latent) == 6
    assert sum(r["settings"]["reward_space"] == "motion" for r in combined["rows"]) == 3   # shared rows once
    pick = combined["choice"]
    assert pick["latent_model"] == "1 layer" and pick["slowdown"] == pytest.approx(1.15) and combined["budget_met"]
    table = format_choice(combined)
    assert "latent (1 layer)" in table and table.count("**") == 2 * 3   # one row in bold: its cost and two judges'
    strict = combine_choices({"3 layers": big, "1 layer": small}, ChoiceConfig(keep_gain=0.99))
    assert not strict["budget_met"] and strict["choice"]["settings"]["guided_steps"] is None   # only the reference
    other = json.loads(json.dumps(small))
    other["choice"]["baseline"]["judges"]["a"]["judge_r1"] = 0.41
    with pytest.raises(ValueError, match="1 layer: its baseline scores differ"):
        combine_choices({"3 layers": big, "1 layer": other})


def test_reuse_takes_unguided_and_motion_space_rows_only(tmp_path):
    rows = [{**r, "judges": {n: {**j, "per_seed": []} for n, j in r["judges"].items()}} for r in _result()["rows"]]
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"prompts": 760, "seeds": 3, "rows": rows}))
    kept = reusable_without_latent(earlier, ["a", "b"], 760, 3)
    assert len(kept) == 4 and all(not r["settings"] or r["settings"]["reward_space"] == "motion" for r in kept.values())
    assert reusable_without_latent(earlier, ["a", "b"], 256, 3) == {}         # other prompts: nothing
    assert reusable_without_latent(earlier, ["a", "c"], 760, 3) == {}         # a judge it lacks: nothing
    assert reusable_without_latent(None, ["a"], 760, 3) == {}


def test_levers_on_the_test_split_are_the_validated_points_with_both_evaluators(tuned_tiny, tmp_path, capsys):
    """`realign eval --table --levers`: the baseline and each search's best validated setting per guided-step
    count, generated on test prompts, scored by both evaluators, drawn against the measured latency."""
    from realign_core.cli.main import main
    from realign_core.guidance.reward_guidance import GuidanceCalibration
    from realign_core.models.layout import guidance_path

    data, root, tunings, latency = tuned_tiny
    out, png = tmp_path / "levers.json", tmp_path / "levers.png"
    assert main(["eval", "--models", str(root), "--data", str(data), "--table", "--generators", "mld",
                 "--limit", "32", "--repeats", "2", "--steps", "4", "--levers", *map(str, tunings),
                 "--latency", str(latency), "--plot", str(png), "-o", str(out)]) == 0
    table = json.loads(out.read_text())
    scale = GuidanceCalibration.load(guidance_path(root), "mld").scale
    levers = {n: m for n, m in table["methods"].items() if n.startswith("mld lever:")}
    default = GuidanceCalibration.load(guidance_path(root), "mld").defaults
    shipped = [n for n in table["methods"] if n.startswith("mld default:")]
    assert list(table["rows"]) == ["Real", "mld baseline", *levers, *shipped] and len(shipped) == 1
    assert table["methods"][shipped[0]]["guidance"] == asdict(default)     # guidance.toml's setting, as it is
    assert {(m["guidance"]["reward_space"], m["guidance"]["guided_steps"]) for m in levers.values()} == \
        {("motion", 1), ("motion", None), ("latent", 1), ("latent", None)}
    for name, m in levers.items():      # the candidate's own step scale, as a strength of the calibrated one
        assert m["guidance"]["strength"] * scale == pytest.approx(float(name.rsplit("x", 1)[1]))
        # scored by each evaluator separately: R@1 of tiny models on 32 prompts can coincide, FID cannot
        assert table["rows_by_evaluator"]["evaluator_words"][name]["fid"] != table["rows"][name]["fid"]
    assert png.stat().st_size > 10000
    # the sampler-steps lever: each (sampler, steps) unguided and with the default guidance, its own rows and
    # latency rows (the consistency model 'lcm' timed at 2 steps here; untimed rows are left off the plot)
    lcm_latency = tmp_path / "lat_lcm.json"
    assert main(["bench", "--models", str(root), "--sampler", "lcm", "--steps", "2", "--batch", "1", "--guided",
                 "0", "all", "--placement", "late", "--reward-space", "latent", "--repeats", "1", "--warmup", "0",
                 "--json", str(lcm_latency)]) == 0
    samplers = tmp_path / "samplers.json"
    assert main(["eval", "--models", str(root), "--data", str(data), "--table", "--generators", "mld",
                 "--limit", "32", "--repeats", "2", "--steps", "4", "--levers", str(tunings[1]), "--samplers",
                 "--latency", str(latency), str(lcm_latency), "--plot", str(png), "-o", str(samplers)]) == 0
    table = json.loads(samplers.read_text())
    rows = {n: m for n, m in table["methods"].items() if n.startswith("mld sampler:")}
    assert {(m["sampler"], m["steps"]) for m in rows.values()} == {("ddim", 5), ("ddim", 20), ("lcm", 1),
                                                                    ("lcm", 2), ("lcm", 4)}
    guided = rows["mld sampler: lcm 2 steps + default guidance"]["guidance"]
    assert guided == {**asdict(default), "guided_steps": None if default.guided_steps is None
                      else min(default.guided_steps, 2)}
    assert rows["mld sampler: lcm 2 steps"]["guidance"] is None
    assert table["rows"]["mld sampler: lcm 2 steps"]["fid"] != table["rows"]["mld sampler: ddim 20 steps"]["fid"]
    with pytest.raises(SystemExit, match="--latency"):
        main(["eval", "--models", str(root), "--data", str(data), "--table", "--levers", str(tunings[0]),
              "--plot", str(png)])


def test_when_full_guidance_costs_realism_a_row_may_cost_no_more():
    """The ds2 case: every guided row raises the judges' FID over the unguided sampler, full guidance most. A row
    keeps the FID criterion if it raises FID no more than full guidance does; one raising it more does not."""
    from realign_core.evaluation.guidance_choice import gain_fractions

    base, ref = {"judge_r1": 0.50, "judge_fid": 0.050}, {"judge_r1": 0.70, "judge_fid": 0.086}
    assert gain_fractions({"judge_r1": 0.69, "judge_fid": 0.072}, base, ref) == pytest.approx({"r1": 0.95, "fid": 1.0})
    assert gain_fractions({"judge_r1": 0.72, "judge_fid": 0.090}, base, ref)["fid"] == 0.0
    flat = {"judge_r1": 0.70, "judge_fid": 0.050}                       # full guidance leaves FID unchanged
    assert gain_fractions({"judge_r1": 0.7, "judge_fid": 0.051}, base, flat)["fid"] == 0.0
    rows = [_row(None, None, (0.50, 0.050), (0.40, 0.060)),
            _row("motion", None, (0.70, 0.086), (0.55, 0.091)),          # full guidance: R@1 up, FID up
            _row("latent", 3, (0.70, 0.067), (0.54, 0.076)),             # keeps both, raises FID less
            _row("latent", 5, (0.73, 0.095), (0.56, 0.080))]             # judge a: FID above full guidance's
    choice = choose({"judges": {"a": {}, "b": {}}, "steps": 10, "rows": rows}, LATENCY)
    assert choice["choice"]["settings"]["guided_steps"] == 3 and choice["budget_met"]
