"""realign plot-training: the trainer's validation records and judged checkpoints drawn against epochs and hours."""
from __future__ import annotations

import json

import pytest

from realign_core.cli.main import main
from realign_core.evaluation.training_curves import hours_at, load_epochs, load_judged


def _write_log(path, epochs):
    lines = [{"step": 5, "epoch": 0, "loss": 1.0}]
    for e, seconds, val in epochs:
        lines.append({"validation": True, "improved": True, "epoch": e, "step": 10 * e, "train_loss": 2 * val,
                      "epoch_seconds": seconds, "val_loss": val})
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")


def test_records_hours_and_a_rerun_epoch(tmp_path):
    log = tmp_path / "log.jsonl"
    _write_log(log, [(1, 3600, 0.5), (2, 1800, 0.4), (2, 1800, 0.35), (3, 3600, 0.3)])   # epoch 2 ran twice
    epochs = load_epochs(log)
    assert [r.epoch for r in epochs] == [1, 2, 3]
    assert [r.val_loss for r in epochs] == [0.5, 0.35, 0.3]            # the re-run's record wins
    assert [r.hours for r in epochs] == pytest.approx([1.0, 2.0, 3.0])  # but both runs' time counts
    assert hours_at(epochs, 2) == pytest.approx(2.0) and hours_at(epochs, 0) == 0.0


def test_bad_inputs_name_the_file_and_field(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1}\nnot json\n')
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        load_epochs(log)
    log.write_text('{"step": 1}\n')
    with pytest.raises(ValueError, match="no validation records"):
        load_epochs(log)
    judged = tmp_path / "j.json"
    judged.write_text(json.dumps({"judge_r1": 0.3, "judge_fid": 0.2}))
    with pytest.raises(ValueError, match="'epoch' is missing"):
        load_judged([judged])


def test_cli_draws_the_png(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    _write_log(log, [(1, 100, 0.5), (2, 100, 0.4), (3, 100, 0.35)])
    judged = []
    for e, r1 in ((3, 0.4), (1, 0.2)):
        judged.append(tmp_path / f"j{e}.json")
        judged[-1].write_text(json.dumps({"epoch": e, "judge_r1": r1, "judge_fid": 0.3}))
    out = tmp_path / "curves.png"
    assert main(["plot-training", "--log", str(log), "--judged", *map(str, judged), "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert "3 epochs, 2 judged checkpoints" in capsys.readouterr().out
    assert [j.epoch for j in load_judged(judged)] == [1, 3]
    with pytest.raises(SystemExit, match="plot-training: .*no validation records"):
        (tmp_path / "empty.jsonl").write_text("\n")
        main(["plot-training", "--log", str(tmp_path / "empty.jsonl"), "-o", str(out)])


def _write_speed(path, cpu_s):
    path.write_text(json.dumps({"kind": "denoiser", "rows": [
        {"variant": "cached VAE posteriors", "step_cpu_s": 99.0},
        {"variant": "+ 2 threads", "step_cpu_s": cpu_s}]}))


def test_sizes_compare_runs_by_measured_cpu_hours(tmp_path, capsys):
    small, big = tmp_path / "small.jsonl", tmp_path / "big.jsonl"
    _write_log(small, [(1, 50, 0.5), (2, 50, 0.4)])            # steps 10, 20 (10 per epoch)
    _write_log(big, [(1, 999, 0.45), (2, 999, 0.35), (3, 999, 0.3)])
    _write_speed(tmp_path / "s.json", 360.0)                   # 10 steps x 360 CPU-s = 1 CPU-h per epoch
    _write_speed(tmp_path / "b.json", 720.0)
    judged = tmp_path / "j.json"
    judged.write_text(json.dumps({"epoch": 2, "judge_r1": 0.4, "judge_fid": 0.3}))
    out = tmp_path / "sizes.png"
    assert main(["plot-sizes", "--run", "small", str(small), str(tmp_path / "s.json"),
                 "--run", "big", str(big), str(tmp_path / "b.json"), str(judged), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "small: 2 epochs, 2.00 CPU-h" in printed and "big: 3 epochs, 6.00 CPU-h" in printed
    assert "best val loss 0.3000, 1 judged" in printed
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "bad.json").write_text(json.dumps({"rows": [{"variant": "x", "step_cpu_s": 1}]}))
    with pytest.raises(SystemExit, match="--run big: .*bad.json: no row with variant '\\+ 2 threads'"):
        main(["plot-sizes", "--run", "big", str(big), str(tmp_path / "bad.json"), "-o", str(out)])
    with pytest.raises(SystemExit, match="needs LABEL LOG SPEED_JSON"):
        main(["plot-sizes", "--run", "big", str(big), "-o", str(out)])


def test_sizes_take_the_speed_row_a_run_trained_as(tmp_path, capsys):
    log = tmp_path / "run.jsonl"
    _write_log(log, [(1, 50, 0.5), (2, 50, 0.4)])              # 20 steps
    _write_speed(tmp_path / "s.json", 360.0)
    out = tmp_path / "amp.png"
    assert main(["plot-sizes", "--run", "cached", str(log), f"{tmp_path / 's.json'}::cached VAE posteriors",
                 "--title", "bf16 vs float32", "-o", str(out)]) == 0
    assert "cached: 2 epochs, 0.55 CPU-h (99.00 CPU-s/step)" in capsys.readouterr().out   # 20 x 99 / 3600
    with pytest.raises(SystemExit, match="no row with variant 'bf16'"):
        main(["plot-sizes", "--run", "x", str(log), f"{tmp_path / 's.json'}::bf16", "-o", str(out)])


def test_another_validation_metric_for_a_vae_or_reward_log(tmp_path, capsys):
    """A VAE's or reward model's log has no val_loss: --metric names the validation field drawn instead."""
    log = tmp_path / "log.jsonl"
    rows = [{"validation": True, "epoch": e, "step": 10 * e, "train_loss": 1.0 / e, "epoch_seconds": 60,
             "mpjpe_pose_mm": 50.0 - e} for e in (1, 2, 3)]
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert [r.val_loss for r in load_epochs(log, "mpjpe_pose_mm")] == [49.0, 48.0, 47.0]
    with pytest.raises(ValueError, match="line 1 has no field 'val_loss'.*mpjpe_pose_mm"):
        load_epochs(log)
    out = tmp_path / "vae.png"
    assert main(["plot-training", "--log", str(log), "--metric", "mpjpe_pose_mm", "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "3 epochs, 0 judged" in capsys.readouterr().out
