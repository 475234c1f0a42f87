"""``realign generate`` with control options and ``realign control-bench``, on the real tiny generator."""
from __future__ import annotations

import json

import numpy as np
import pytest

from realign_core.cli.main import main

pytestmark = pytest.mark.usefixtures("one_thread")


def test_generate_with_a_path_then_a_looped_in_place_continuation(tiny_generator, tmp_path):
    models = str(tiny_generator[0])
    (tmp_path / "path.json").write_text(json.dumps({"points": [[0, 0], [3.0, 0]], "times": [0, 2]}))
    assert main(["generate", "a person walks forward.", "--models", models, "--seconds", "2", "--steps", "5",
                 "--path", str(tmp_path / "path.json"), "-o", str(tmp_path / "walk")]) == 0
    walk = np.load(tmp_path / "walk.npy")
    assert walk.shape == (40, 22, 3) and np.abs(walk[0, 0, [0, 2]]).max() < 1e-5
    assert main(["generate", "a person walks forward.", "--models", models, "--seconds", "1.5", "--steps", "5",
                 "--continue-from", str(tmp_path / "walk.npy"), "--loop", "--in-place",
                 "-o", str(tmp_path / "cycle")]) == 0
    cycle = np.load(tmp_path / "cycle.npy")
    root = np.load(tmp_path / "cycle_root.npy")
    assert cycle.shape == (30, 22, 3) and root.shape == (30, 3)
    placed = cycle[0] + np.array([root[0, 0], 0.0, root[0, 1]])
    assert np.abs(placed - walk[-1]).max() < 1e-4          # starts in the previous take's last pose
    info = json.loads((tmp_path / "cycle_cycle.json").read_text())
    assert set(info) == {"translation_xz", "yaw"}
    # the seam closes onto the keyed first pose: the next cycle's first frame follows the last one smoothly
    from realign_core.control.motion import Cycle, loop_seam_gaps

    world = cycle + np.concatenate([root[:, None, :1], np.zeros((30, 1, 1)), root[:, None, 1:2]], axis=-1)
    gaps = loop_seam_gaps(world, Cycle(tuple(info["translation_xz"]), info["yaw"]))
    assert gaps["position_cm"] < 3 * gaps["inside_median_cm"] + 1.0, gaps


def test_generate_refuses_bad_control_files_naming_them(tiny_generator, tmp_path):
    (tmp_path / "keys.json").write_text(json.dumps([{"frame": 0}]))
    with pytest.raises(SystemExit, match=r"keys.json \(--keyframes\): expected a list of"):
        main(["generate", "walk", "--models", str(tiny_generator[0]), "--seconds", "2", "--steps", "2",
              "--keyframes", str(tmp_path / "keys.json"), "-o", str(tmp_path / "x")])


def test_control_bench_runs_and_writes_its_json(tiny_generator, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["control-bench", "--models", str(tiny_generator[0]), "--parts", "loop", "sequence", "layer",
                 "--seeds", "1", "--steps", "3", "--seconds", "2", "--sequence-seconds", "3", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data["loop"]["summary"]) == {"free", "guided", "final"} and data["meta"]["steps"] == 3
    assert data["sequence"]["rows"][0]["frames"] == 60 and "loop guided" in capsys.readouterr().out
    for row in data["layer"]["rows"].values():   # the finish sets the layered joints exactly
        assert row["final_layer_err_cm"] < 1e-3 < row["free_layer_err_cm"], row
    assert set(data["layer"]["rows"]["walk+wave"]) >= {"free_walk_forward", "final_wave_right", "layer_alone_wave_right"}


def test_generate_foot_lock_on_and_off(tiny_generator, tmp_path):
    """--foot-lock on moves the take back over its planted feet (heights and poses kept); off leaves it as sampled;
    on a take with a path it changes nothing (the path pins the root)."""
    from realign_core.motion.foot_lock import lock_joints

    models = str(tiny_generator[0])
    base = ["generate", "a person stands still.", "--models", models, "--seconds", "2", "--steps", "3", "--seed", "4"]
    takes = {}
    for mode in ("on", "off"):
        assert main(base + ["--foot-lock", mode, "-o", str(tmp_path / mode)]) == 0
        takes[mode] = np.load(tmp_path / f"{mode}.npy")
    np.testing.assert_allclose(takes["on"], lock_joints(takes["off"]), atol=2e-4)
    assert np.abs(takes["on"] - takes["off"]).max() > 1e-3          # the tiny model's take does slide
    np.testing.assert_allclose(takes["on"][..., 1], takes["off"][..., 1], atol=1e-5)
    (tmp_path / "path.json").write_text(json.dumps({"points": [[0, 0], [1.0, 0]], "times": [0, 2]}))
    for mode in ("on", "off"):
        assert main(base + ["--foot-lock", mode, "--path", str(tmp_path / "path.json"),
                            "-o", str(tmp_path / f"path_{mode}")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "path_on.npy"), np.load(tmp_path / "path_off.npy"))
