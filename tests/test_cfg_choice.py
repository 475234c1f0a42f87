"""Choosing the CFG scale on validation (``realign choose-cfg``) and the validated scale as every path's default."""
from __future__ import annotations

import json
import shutil

import pytest

from realign_core.evaluation.cfg_choice import CfgChoiceConfig, choose_cfg


def _row(cfg, guided, r1, fid, kin=0.5):
    return {"cfg_scale": cfg, "guided": guided, "kin_pass": kin,
            "judges": {j: {"judge_r1": r1 + d, "judge_fid": fid * (1 + d)} for j, d in (("a", 0.0), ("b", 0.02))}}


def _result(rows, current=7.5):
    return {"current_cfg": current, "config": CfgChoiceConfig().__dict__, "rows": rows}


def test_the_rule_takes_the_lowest_fid_that_keeps_r1_and_kinematics():
    rows = [_row(7.5, False, 0.40, 0.30), _row(7.5, True, 0.60, 0.20),
            _row(3.0, True, 0.55, 0.10),                # much more realistic but loses text alignment
            _row(4.0, True, 0.60, 0.15, kin=0.40),      # a walk no longer walks
            _row(5.0, True, 0.595, 0.18),               # within the R@1 slack, lower FID: chosen
            _row(6.0, True, 0.61, 0.19)]
    choice = choose_cfg(_result(rows))
    assert (choice["current"], choice["choice"]) == (7.5, 5.0)
    notes = {r["cfg_scale"]: r for r in choice["rows"]}
    assert not notes[3.0]["r1_ok"] and not notes[4.0]["kin_ok"] and notes[5.0]["relative_fid"] == pytest.approx(0.9)
    assert len(notes) == 5                                 # guided rows only; the unguided one is reported
    # nothing lower: the current scale stays (also on an exact tie)
    assert choose_cfg(_result([_row(7.5, True, 0.6, 0.2), _row(5.0, True, 0.6, 0.2)]))["choice"] == 7.5
    with pytest.raises(ValueError, match="current CFG scale 2.5"):
        choose_cfg(_result(rows, current=2.5))


def test_choose_cfg_judges_each_scale_and_writes_the_default(tiny_stack, tmp_path, capsys):
    """On the tiny stack: two scales, unguided and default-guided, two judges, the kinematic guard; the choice
    goes to guidance.toml, where the pipeline, `realign generate` and the server take it as their default."""
    import torch

    from realign_core.cli.main import main
    from realign_core.evaluation.guidance_tuning import write_guidance_toml
    from realign_core.guidance.reward_guidance import GuidanceCalibration
    from realign_core.models.layout import guidance_path
    from realign_core.pipeline import SamplingConfig, TextToMotionPipeline
    from server.engine import model_defaults

    data, trained = tiny_stack
    root = tmp_path / "models"
    shutil.copytree(trained, root)
    write_guidance_toml(guidance_path(root), "mld", {"scale": 30.0, "settings": {
        "mu": 1.0, "eta": 0.0, "guided_steps": 1, "placement": "late"}}, {"sampler": "ddim", "steps": 4})
    out = tmp_path / "cfg.json"
    args = ["choose-cfg", "--models", str(root), "--data", str(data), "--scales", "2", "7.5", "--judges",
            "reward_plain", f"evaluator_words@{root}", "--seeds", "2", "--kin-samples", "1", "--r1-slack", "1",
            "--kin-slack", "1", "-o", str(out), "--plot", str(tmp_path / "cfg.png"), "--write-toml"]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert [(r["cfg_scale"], r["guided"]) for r in result["rows"]] == [(2.0, False), (2.0, True), (7.5, False),
                                                                        (7.5, True)]
    assert result["current_cfg"] == 7.5 and result["steps"] == 4
    for row in result["rows"]:
        for scores in row["judges"].values():
            assert len(scores["per_seed"]) == 2 and 0.0 <= scores["judge_r1"] <= 1.0
        assert 0.0 <= row["kin_pass"] <= 1.0
    by = {(r["cfg_scale"], r["guided"]): r["judges"]["reward_plain"]["judge_fid"] for r in result["rows"]}
    assert len(set(by.values())) == 4                      # the scale and the guidance both change the takes
    chosen = result["choice"]["choice"]
    fid = {r["cfg_scale"]: r["relative_fid"] for r in result["choice"]["rows"]}
    assert chosen == min(fid, key=fid.get)                 # slack 1: the lowest FID wins
    assert f"choice: CFG {chosen:g}" in capsys.readouterr().out and (tmp_path / "cfg.png").stat().st_size > 5000
    calibration = GuidanceCalibration.load(guidance_path(root), "mld")
    assert calibration.cfg_scale == chosen and calibration.scale == 30.0 and calibration.steps == 4
    # a second run reuses every row
    mtime = out.stat().st_mtime_ns
    assert main(args[:-1]) == 0 and json.loads(out.read_text())["rows"] == result["rows"]
    assert out.stat().st_mtime_ns != mtime
    # another guide (the reward checkpoint changed, guidance.toml not): unguided rows kept, guided rows made anew
    ckpt = torch.load(root / "reward" / "best.pt", weights_only=False)
    ckpt["model"] = {k: v * 1.5 if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    torch.save(ckpt, root / "reward" / "best.pt")
    assert main(args[:-1]) == 0
    again = {(r["cfg_scale"], r["guided"]): r for r in json.loads(out.read_text())["rows"]}
    for row in result["rows"]:
        kept = again[(row["cfg_scale"], row["guided"])] == row
        assert kept != row["guided"], (row["cfg_scale"], row["guided"])
    # the validated scale is the default of the pipeline and of the server
    guidance_path(root).write_text(guidance_path(root).read_text().replace(f"cfg_scale = {chosen!r}",
                                                                            "cfg_scale = 2.0"))
    pipe = TextToMotionPipeline.from_checkpoints(root, "cpu", generator="mld", reward_kind=None)
    assert pipe.default_cfg == 2.0 and pipe.default_sampling.cfg_scale == 2.0 and model_defaults(pipe).cfg == 2.0
    take = [["a person walks forward."], [48], [3]]
    default = pipe(*take, SamplingConfig(steps=4)).features
    assert torch.equal(default, pipe(*take, SamplingConfig(steps=4, cfg_scale=2.0)).features)
    assert not torch.equal(default, pipe(*take, SamplingConfig(steps=4, cfg_scale=7.5)).features)


def test_calibration_cfg_scale_is_checked(tmp_path):
    from realign_core.guidance.reward_guidance import GuidanceCalibration

    path = tmp_path / "guidance.toml"
    path.write_text("[mld]\nscale = 40.0\ncfg_scale = 5\n")
    assert GuidanceCalibration.load(path, "mld").cfg_scale == 5.0
    for bad in ('"high"', "-1", "true"):
        path.write_text(f"[mld]\nscale = 40.0\ncfg_scale = {bad}\n")
        with pytest.raises(ValueError, match=r"\[mld\] cfg_scale must be a number >= 0"):
            GuidanceCalibration.load(path, "mld")


def _sampler_row(sampler, steps, guided, r1, fid, seconds, kin=0.5):
    return {"sampler": sampler, "steps": steps, "guided": guided, "kin_pass": kin, "seconds_per_motion": seconds,
            "judges": {j: {"judge_r1": r1 + d, "judge_fid": fid * (1 + d)} for j, d in (("a", 0.0), ("b", 0.02))}}


def test_the_sampler_rule_takes_the_fastest_that_keeps_guided_quality():
    from realign_core.evaluation.sampler_choice import SamplerChoiceConfig, choose_sampler

    rows = [_sampler_row("ddim", 10, True, 0.70, 0.08, 0.19), _sampler_row("ddim", 10, False, 0.57, 0.09, 0.16),
            _sampler_row("lcm", 1, True, 0.60, 0.20, 0.02),            # fastest, but loses alignment and realism
            _sampler_row("lcm", 2, True, 0.695, 0.08, 0.04),           # within the R@1 slack, same FID: chosen
            _sampler_row("lcm", 4, True, 0.71, 0.07, 0.07),            # better, but slower than lcm 2
            _sampler_row("lcm", 8, True, 0.72, 0.07, 0.12, kin=0.3)]   # a walk no longer walks
    result = {"reference": "ddim:10", "rows": rows, "config": SamplerChoiceConfig(candidates=("lcm:1",)).__dict__}
    choice = choose_sampler(result)
    notes = {r["candidate"]: r for r in choice["rows"]}
    assert choice["choice"] == "lcm:2" and notes["lcm:4"]["eligible"] and not notes["lcm:8"]["kin_ok"]
    assert not notes["lcm:1"]["r1_ok"] and not notes["lcm:1"]["fid_ok"]
    rows[3] = _sampler_row("lcm", 2, True, 0.695, 0.081, 0.04)          # FID above the reference's: not eligible
    assert choose_sampler(result)["choice"] == "lcm:4"
    result["rows"] = rows[:3]
    assert choose_sampler(result)["choice"] == "ddim:10"                 # nothing eligible: the reference stays
    with pytest.raises(ValueError, match="candidate 'euler:4'"):
        SamplerChoiceConfig(candidates=("euler:4",))


def test_choose_sampler_judges_the_consistency_model_against_the_validated_ddim(tiny_stack, tmp_path, capsys):
    from realign_core.cli.main import main
    from realign_core.evaluation.guidance_tuning import write_guidance_toml
    from realign_core.models.layout import guidance_path

    data, trained = tiny_stack
    root = tmp_path / "models"
    shutil.copytree(trained, root)
    write_guidance_toml(guidance_path(root), "mld", {"scale": 30.0, "settings": {
        "mu": 1.0, "eta": 0.0, "guided_steps": 3, "placement": "late"}}, {"sampler": "ddim", "steps": 4})
    out = tmp_path / "sampler.json"
    assert main(["choose-sampler", "--models", str(root), "--data", str(data), "--candidates", "lcm:1", "lcm:2",
                 "--judges", "reward_plain", "--seeds", "1", "--kin-samples", "1", "-o", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [(r["sampler"], r["steps"], r["guided"]) for r in result["rows"]] == [
        ("ddim", 4, False), ("ddim", 4, True), ("lcm", 1, False), ("lcm", 1, True), ("lcm", 2, False),
        ("lcm", 2, True)]
    assert result["reference"] == "ddim:4" and result["choice"]["choice"] in ("ddim:4", "lcm:1", "lcm:2")
    fids = {(r["sampler"], r["steps"], r["guided"]): r["judges"]["reward_plain"]["judge_fid"] for r in result["rows"]}
    assert len(set(fids.values())) == 6                          # every sampler and the guidance change the takes
    assert "choice:" in capsys.readouterr().out
    # another consistency checkpoint: its rows are judged again, the reference's are reused
    import torch

    ckpt = torch.load(root / "denoiser_lcm" / "best.pt", weights_only=False)
    ckpt["model"] = {k: v * 1.5 if k.startswith("up.") else v for k, v in ckpt["model"].items()}
    torch.save(ckpt, root / "denoiser_lcm" / "best.pt")
    assert main(["choose-sampler", "--models", str(root), "--data", str(data), "--candidates", "lcm:1",
                 "--judges", "reward_plain", "--seeds", "1", "--kin-samples", "1", "-o", str(out)]) == 0
    again = json.loads(out.read_text())
    assert again["rows"][:2] == result["rows"][:2] and again["consistency_model"] != result["consistency_model"]
    assert [r["consistency_model"] for r in again["rows"][2:]] == [again["consistency_model"]] * 2
    with pytest.raises(SystemExit, match="candidate 'lcm'"):
        main(["choose-sampler", "--models", str(root), "--data", str(data), "--candidates", "lcm", "-o", str(out)])
