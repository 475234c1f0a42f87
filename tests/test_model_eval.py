"""`realign eval` and `realign model-card` on a whole tiny stack trained in the test."""
from __future__ import annotations

import json

import pytest
import torch

from realign_core.evaluation.model_card import build_model_card
from realign_core.evaluation.model_eval import evaluate_models, format_result, merge_partial_result, save_result
from realign_core.models.reward_model import load_reward_checkpoint
from realign_core.pipeline import SamplingConfig
from realign_core.training.registry import KINDS


def test_eval_reports_every_measurement(tiny_stack, tmp_path):
    data, root = tiny_stack
    result = evaluate_models(root, data, repeats=2, real_repeats=3, sampling=SamplingConfig(steps=5))
    assert not result["skipped"], result["skipped"]
    assert result["test_prompts"] == 32
    assert result["vae_test"]["mpjpe_mm"] > 0
    real, gen = result["real"], result["generator"]
    assert real["r1"][0] > 1 / 32 and real["fid"][0] >= 0          # fid = FID(train, test), the floor
    assert set(gen) == {"r1", "r2", "r3", "mm_dist", "diversity", "fid"}
    assert gen["fid"][1] >= 0 and gen["r1"][0] <= gen["r3"][0]
    words = result["by_evaluator"]["evaluator_words"]             # the second, MiniLM-free evaluator
    assert set(words["generator"]) == set(gen) and words["real"]["r1"][0] > 1 / 32
    assert words["generator"]["fid"] != gen["fid"]               # its own embedding space, not a copy
    for kind in ("reward", "reward_plain"):
        table = result[f"{kind}_retrieval"]
        assert list(table) == ["0", "100", "300", "500", "700", "900"]
        assert table["0"]["t2m_r1"][0] > 1 / 32
    save_result(result, tmp_path / "e.json")
    assert json.loads((tmp_path / "e.json").read_text())["test_prompts"] == 32
    text = format_result(result)
    assert "VAE test MPJPE" in text and "generator, no guidance" in text and "reward_plain" in text
    assert "generator, no guidance [evaluator_words]" in text

    card = build_model_card(root, tmp_path / "e.json")
    assert "NSF EIA-0196217" in card and "| evaluator |" in card and "Generator without guidance" in card
    assert "not in this model folder" not in card and "scored by evaluator_words" in card

    # a later run of the VAE part only updates that part and keeps every evaluator's earlier rows
    vae_only = evaluate_models(root, data, parts=("vae",), limit=16)
    merged = merge_partial_result(result, vae_only, ("vae",))
    assert merged["vae_test"] == vae_only["vae_test"] and merged["generator"] == gen
    assert merged["by_evaluator"]["evaluator_words"] == words and merged["test_prompts"] == 32
    assert merged["prompts_per_part"] == {"vae": 16, "real": 32, "generator": 32, "reward": 32}


def test_export_halves_weights_and_keeps_models_usable(tiny_stack, tmp_path):
    from realign_core.models.checkpoint import export_models

    data, root = tiny_stack
    sizes = export_models(root, tmp_path / "shipped")
    assert set(sizes) == set(KINDS)
    for kind in KINDS:
        assert sizes[kind] < (root / kind / "best.pt").stat().st_size
    ckpt = torch.load(tmp_path / "shipped" / "vae" / "best.pt", weights_only=False)
    assert all(v.dtype == torch.float16 for v in ckpt["model"].values() if v.is_floating_point())
    assert ckpt["history"], "training history travels with the export (model card training time)"
    reward = torch.load(tmp_path / "shipped" / "reward" / "best.pt", weights_only=False)
    assert reward["dropped"] == ["decoder"] and not any(k.startswith("decoder.") for k in reward["model"])
    shipped, _ = load_reward_checkpoint(tmp_path / "shipped" / "reward" / "best.pt")
    trained, _ = load_reward_checkpoint(root / "reward" / "best.pt")
    assert shipped.decoder is None
    with pytest.raises(RuntimeError, match="without its training decoder"):
        shipped.decode(torch.zeros(1, shipped.config.latent_dim), torch.ones(1, 8, dtype=torch.bool))
    captions = ["a person walks forward.", "a person jumps."]
    assert torch.allclose(shipped.encode_text(captions), trained.encode_text(captions), atol=2e-3)
    result = evaluate_models(tmp_path / "shipped", data, repeats=1, real_repeats=2, sampling=SamplingConfig(steps=3),
                             limit=32)
    assert not result["skipped"] and result["generator"]["r1"][0] >= 0


def test_guidance_tuning_and_results_table(tiny_stack, tmp_path):
    """Tune on val with the judge, write guidance.toml, then the table with every row on both generators."""
    import shutil

    from realign_core.evaluation.guidance_tuning import TuningConfig, tune, write_guidance_toml
    from realign_core.evaluation.results_table import format_table, run_table, table_methods
    from realign_core.guidance.reward_bank import build_bank, motion_embedder
    from realign_core.guidance.reward_guidance import GuidanceCalibration
    from realign_core.models.layout import bank_path
    from realign_core.models.reward_model import load_reward_model

    data, trained = tiny_stack
    root = tmp_path / "models"
    shutil.copytree(trained, root)
    for kind in ("reward", "reward_plain"):
        ckpt = root / kind / "best.pt"
        build_bank(motion_embedder(load_reward_model(ckpt)), ckpt, data, progress=False).save(bank_path(root, kind))
    cfg = TuningConfig(scales=(0.3, 30.0), mixes=((1.0, 0.0),), guided_steps_options=(2,), prompts=32, steps=4)
    result = tune(root, data, "mld", cfg)
    assert len(result["stages"][0]) == 2 and result["prompts"] == 32
    assert result["winner"]["judge_fid"] <= result["baseline"]["judge_fid"] or \
        all(r["judge_fid"] > result["baseline"]["judge_fid"] for s in result["stages"] for r in s)
    kin = result["baseline"]["kin_pass"]
    assert (kin is None) == (not result["kinematic_prompts"]) and (kin is None or 0.0 <= kin <= 1.0)
    write_guidance_toml(root / "guidance.toml", "mld", result["winner"], {"sampler": "ddim", "steps": 4})
    cal = GuidanceCalibration.load(root / "guidance.toml", "mld")
    assert cal.scale == result["winner"]["scale"] and cal.defaults.strength == 1.0
    assert (cal.sampler, cal.steps) == ("ddim", 4)
    from realign_core.evaluation.guidance_tuning import format_tuning
    assert format_tuning(result).count("**") >= 4

    names = [m.name for m in table_methods(root)]
    assert names[0] == "mld baseline" and "mld + both (T2M+M2M)" in names and len(names) == 7
    assert any(n.startswith("mdm + ReAlign default (") for n in names)
    table = run_table(root, data, "test", None, repeats=2, steps=3, curve=True)
    curve_names = [n for n in table["rows"] if ", " in n and "guided" in n]
    assert list(table["rows"])[0] == "Real" and len(table["rows"]) == 8 + len(curve_names) and curve_names
    assert table["curve"][0]["guided_steps"] == 0 and table["curve"][0]["method"] == "mld baseline"
    assert len(table["curve"]) == 2 + len(curve_names)   # baseline, the default's own row, the others
    from realign_core.evaluation.benchmark.report import plot_quality_vs_latency
    latency = [{"batch": 1, "guided_steps": q["guided_steps"], "steps": 3, "per_motion_s": 1.0 + i,
                "placement": "spread"} for i, q in enumerate(table["curve"])]
    assert plot_quality_vs_latency(latency, table, tmp_path / "curve.png").stat().st_size > 1000
    for name, row in table["rows"].items():
        assert 0 <= row["r1"][0] <= row["r3"][0] <= 1, name
    assert "multimodality" in table["rows"]["mld baseline"]
    assert "| mdm baseline |" in format_table(table)
    words = table["rows_by_evaluator"]["evaluator_words"]
    assert list(words) == list(table["rows"]) and words["mld baseline"] != table["rows"]["mld baseline"]
    assert "| mdm baseline |" in format_table(table, "evaluator_words")
    # a calibration for the latent reward adds its own row; the reward ablations stay in motion space
    import re
    text = re.sub(r'reward_space = "\w+"\n', "", (root / "guidance.toml").read_text())
    (root / "guidance.toml").write_text(text.replace("[mld]\n", '[mld]\nreward_space = "latent"\n', 1))
    mld = [m for m in table_methods(root) if m.generator == "mld" and m.guidance is not None]
    assert [m.guidance.reward_space for m in mld] == ["motion"] * 4 + ["latent"]
    assert mld[-1].name.startswith("mld + latent reward (")


def test_a_row_generated_like_an_earlier_one_is_scored_once(tiny_stack, monkeypatch):
    """run_table generates and scores each distinct (generator, sampler, steps, reward, guidance) once; rows that
    name the same settings (e.g. the shipped default and the lever it coincides with) share those scores."""
    from realign_core.evaluation import results_table as rt

    data, root = tiny_stack
    calls = []
    original = rt.score_method
    def counted(pipe, method, *args):
        calls.append(method.name)
        return original(pipe, method, *args)

    monkeypatch.setattr(rt, "score_method", counted)
    methods = [rt.Method("mld baseline"), rt.Method("mld sampler: ddim 3 steps", sampler="ddim", steps=3),
               rt.Method("mld sampler: ddim 2 steps", sampler="ddim", steps=2)]
    table = rt.run_table(root, data, "test", None, repeats=1, steps=3, methods=methods, generators=("mld",))
    assert calls == ["mld baseline", "mld sampler: ddim 2 steps"]     # DDIM 3 = the table's own 3 steps
    assert table["rows"]["mld sampler: ddim 3 steps"] == table["rows"]["mld baseline"]
    assert table["rows"]["mld sampler: ddim 2 steps"] != table["rows"]["mld baseline"]


def test_stage3_picks_the_fewest_guided_steps_that_keep_the_gain():
    from realign_core.evaluation.guidance_tuning import TuningConfig, cheapest_keeping_gain

    def row(k, r1, fid=0.1, scale=30.0):
        return {"judge_r1": r1, "judge_fid": fid, "scale": scale,
                "settings": {"strength": 1.0, "mu": 1.0, "eta": 0.0, "guided_steps": k, "placement": "spread"}}

    base = {"judge_r1": 0.2, "judge_fid": 0.3}
    cfg = TuningConfig(keep_gain=0.9, steps=50)
    rows = [row(None, 0.70), row(25, 0.68), row(10, 0.66, fid=0.2), row(5, 0.50), row(10, 0.67, scale=90.0)]
    # best gain 0.50; 90% of it = 0.45 -> R@1 >= 0.65; fewest steps among those is 10, the lower FID of the two
    assert cheapest_keeping_gain(rows, base, cfg) is rows[4]
    assert cheapest_keeping_gain([*rows[:4], row(10, 0.67, fid=0.25)], base, cfg) is rows[2]
    # a candidate that breaks the FID guard never wins, however cheap
    rows.append(row(5, 0.69, fid=0.5))
    assert cheapest_keeping_gain(rows, base, cfg) is rows[4]
    # keep_gain 1.0 = the best R@1 whatever it costs
    assert cheapest_keeping_gain(rows, base, TuningConfig(keep_gain=1.0, steps=50)) is rows[0]


def test_stage3_tries_each_set_of_guided_steps_once():
    from realign_core.evaluation.guidance_tuning import TuningConfig, stage3_schedules

    cfg = TuningConfig(steps=10, guided_steps_options=(1, 2, 10), placements=("spread", "late"))
    # one guided step is the last step either way; 10 of 10 is "all" (stage 2 has it)
    assert stage3_schedules(cfg) == [(1, "spread"), (2, "spread"), (2, "late")]


def test_the_kinematic_guard_rejects_candidates_that_stop_doing_the_motion():
    from realign_core.evaluation.guidance_tuning import TuningConfig, cheapest_keeping_gain

    def row(k, r1, kin):
        return {"judge_r1": r1, "judge_fid": 0.1, "scale": 30.0, "kin_pass": kin,
                "settings": {"strength": 1.0, "mu": 1.0, "eta": 0.0, "guided_steps": k, "placement": "spread"}}

    base = {"judge_r1": 0.2, "judge_fid": 0.3, "kin_pass": 0.40}
    rows = [row(None, 0.70, 0.20), row(10, 0.60, 0.39), row(5, 0.58, 0.45), row(2, 0.30, 0.41)]
    cfg = TuningConfig(keep_gain=0.9, steps=50, kin_slack=0.03)
    # the best judge R@1 (0.70) fails the guard (0.20 < 0.40 - 0.03): the gain is measured among the rest
    # (best 0.60 -> 90 % = R@1 >= 0.56), and the fewest guided steps keeping it is 5
    assert cheapest_keeping_gain(rows, base, cfg) is rows[2]
    # with the guard off (slack 1) the 0.70 row sets the bar (R@1 >= 0.65) and wins
    assert cheapest_keeping_gain(rows, base, TuningConfig(keep_gain=0.9, steps=50, kin_slack=1.0)) is rows[0]
    # nothing meets the guard: the candidate that keeps the most of the motion
    worse = [row(None, 0.70, 0.10), row(5, 0.60, 0.30)]
    assert cheapest_keeping_gain(worse, base, cfg) is worse[1]


def test_validation_kinematic_prompts_come_from_the_split_captions(tmp_path):
    import re

    from realign_core.evaluation.kinematic.labels import LABELS
    from realign_core.evaluation.kinematic.val_prompts import split_prompts
    from tests.synthetic import walking_motion, write_synthetic_dataset

    data = write_synthetic_dataset(tmp_path, clips_per_class=3, frames=(44, 60))
    prompts = split_prompts(data, "val", max_per_label=1)
    by_label = {lab.name: lab for lab in LABELS}
    names = [p.name for p in prompts]
    assert "walk_forward/0" in names and "walk_backward/0" in names and len(set(names)) == len(names)
    for p in prompts:
        assert re.search(by_label[p.name.split("/")[0]].positive, p.caption), p
    # a prompt's check is its label's: a forward walk passes "walks forward" and fails "walks backward"
    walk = walking_motion(frames=80, speed=1.2)
    check = {p.name: p.matches(walk) for p in prompts}
    assert check["walk_forward/0"] and not check["walk_backward/0"]
    with pytest.raises(FileNotFoundError, match="nosuch.txt"):
        split_prompts(data, "nosuch")


def test_tuning_reuses_only_candidates_scored_on_the_same_prompts_and_sampler(tmp_path):
    from realign_core.evaluation.guidance_tuning import TuningConfig, candidate_key, reusable_rows
    from realign_core.guidance.reward_guidance import GuidanceSettings

    g = GuidanceSettings(strength=1.0, eta=0.0)
    row = {"judge_r1": 0.5, "judge_fid": 0.2, "scale": 30.0, "settings": {**g.__dict__}}
    base = {"judge_r1": 0.1, "judge_fid": 0.3, "scale": 0.0, "settings": None}
    cfg = TuningConfig(steps=50, batch=32)
    path = tmp_path / "guidance_tuning_mld.json"
    path.write_text(json.dumps({"generator": "mld", "prompts": 128,
                                "config": {"steps": 50, "batch": 32, "sampler": "ddim", "kin_samples": 4},
                                "baseline": base, "stages": [[row]]}))
    known = reusable_rows(path, "mld", 128, cfg)
    assert known[candidate_key(30.0, g)] is not None and known[candidate_key(0.0, None)]["judge_r1"] == 0.1
    assert candidate_key(10.0, g) not in known
    assert reusable_rows(path, "mld", 64, cfg) == {}                      # other prompts
    assert reusable_rows(path, "mdm", 128, cfg) == {}                     # other generator
    assert reusable_rows(path, "mld", 128, TuningConfig(steps=20)) == {}  # other sampler
    assert reusable_rows(path, "mld", 128, TuningConfig(sampler="unipc")) == {}
    assert reusable_rows(path, "mld", 128, TuningConfig(kin_samples=2)) == {}  # other kinematic guard
    assert reusable_rows(tmp_path / "missing.json", "mld", 128, cfg) == {}


def test_partial_table_runs_merge_only_on_the_same_prompts_and_sampler():
    from realign_core.evaluation.results_table import merge_tables

    def table(prompts, rows, gen):
        return {"split": "test", "prompts": prompts, "repeats": 5, "steps": 50, "defaults": {gen: {}},
                "methods": {r: {"generator": gen} for r in rows if r != "Real"},
                "rows": {r: {"r1": (0.1, 0.01)} for r in rows}}

    mld = table(128, ["Real", "mld baseline"], "mld")
    mdm = table(128, ["Real", "mdm baseline"], "mdm")
    merged = merge_tables(mld, mdm)
    assert list(merged["rows"]) == ["Real", "mld baseline", "mdm baseline"]
    assert list(merge_tables(mdm, mld)["rows"]) == ["Real", "mld baseline", "mdm baseline"]
    assert set(merged["defaults"]) == {"mld", "mdm"} and set(merged["methods"]) == {"mld baseline", "mdm baseline"}
    assert merge_tables(mld, table(64, ["Real", "mdm baseline"], "mdm"))["prompts"] == 64   # other prompts: replaced
    assert "mld baseline" not in merge_tables(mld, table(64, ["Real", "mdm baseline"], "mdm"))["rows"]


def test_table_rows_option_names_the_unknown_row(tiny_guided, synthetic_dataset):
    """`realign eval --table --rows` keeps only the named rows; an unknown name is refused with the list."""
    from realign_core.cli.main import main

    with pytest.raises(SystemExit, match=r"--rows: no row 'mld nope'; rows: mld baseline, mld \+ T2M reward"):
        main(["eval", "--models", str(tiny_guided), "--data", str(synthetic_dataset), "--table",
              "--generators", "mld", "--rows", "mld baseline", "mld nope"])
