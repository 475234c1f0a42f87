"""Kinematic (model-free) alignment: each check on synthetic motions that should pass and fail,
left/right and rotation consistency, the caption labels of the validation, the statistics, and
the end-to-end evaluation on the real tiny generator + reward model (``tiny_guided``)."""
from __future__ import annotations

import json
from pathlib import Path
import math

import numpy as np
import pytest

from realign_core.cli.evaluate import kinematic_main
from realign_core.evaluation.kinematic.checks import (
    PROMPTS,
    PROMPTS_BY_NAME,
    MeasuredMotion,
    all_checks,
    arm_measures,
    caption_prompts,
    select_prompts,
)
from realign_core.evaluation.kinematic.labels import (LABELS, ClipRecord, format_recall_through, format_validation,
                                                      label_clip, validate_checks)
from realign_core.evaluation.kinematic.report import (compare_reports, format_arm_measures, format_ground_measures,
                                                      format_reports, kinematic_alignment)
from realign_core.evaluation.metrics import paired_difference, wilson_interval
from realign_core.motion.features import mirror_joints
from realign_core.motion.quaternion import qrot, qyaw
from realign_core.motion.skeleton import JOINT_INDEX
from tests.synthetic import walking_motion

FPS = 20
UPPER_BODY = [j for j in range(22) if j not in (7, 8, 10, 11)]   # all but ankles and toes
J = JOINT_INDEX


def passing(joints: np.ndarray) -> set[str]:
    """Names of every check (prompts and mirror twins) the motion passes."""
    m = MeasuredMotion(joints)
    return {name for name, check in all_checks().items() if check(m)}


def standing(frames: int = 60) -> np.ndarray:
    """A person standing still, facing +Z: (frames, 22, 3) m."""
    return walking_motion(frames=frames, speed=0.0)


def smoothstep(t: np.ndarray) -> np.ndarray:
    """0 -> 1 ramp with zero slope at both ends, t in [0, 1]."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def jumping(peak_m: float = 0.25, airborne_s: float = 0.4) -> np.ndarray:
    """Standing, then the whole body rises on a parabola of ``peak_m`` for ``airborne_s``."""
    pos = standing(60)
    n = round(airborne_s * FPS)
    t = np.linspace(0, 1, n + 2)[1:-1]
    pos[25:25 + n, :, 1] += (4 * peak_m * t * (1 - t))[:, None]
    return pos


def sitting(drop_m: float = 0.45, hold_s: float = 2.0, stand_up: bool = False, ramp_s: float = 1.0) -> np.ndarray:
    """Standing 1 s, the upper body lowered by ``drop_m`` over ``ramp_s`` (feet stay), held ``hold_s``,
    then, if ``stand_up``, raised again over ``ramp_s``."""
    ramp, hold = round(ramp_s * FPS), round(hold_s * FPS)
    down = 20 + ramp + hold
    pos = standing(down + (ramp + 20 if stand_up else 0))
    frames = np.arange(len(pos))
    offset = drop_m * smoothstep((frames - 20) / ramp)
    if stand_up:
        offset[down:] = drop_m * (1 - smoothstep((frames[down:] - down) / ramp))
    pos[:, UPPER_BODY, 1] -= offset[:, None]
    return pos


def lying_down() -> np.ndarray:
    """The upper body tips over backwards to horizontal and stays: pelvis low, head not above it."""
    pos = sitting(drop_m=0.6)
    pelvis = pos[:, :1]
    rel = pos[:, UPPER_BODY] - pelvis
    angle = np.deg2rad(90) * smoothstep((np.arange(len(pos)) - 20) / 20)[:, None]
    y, z = rel[..., 1], rel[..., 2]
    rel[..., 1], rel[..., 2] = y * np.cos(angle) - z * np.sin(angle), -(y * np.sin(angle) + z * np.cos(angle))
    pos[:, UPPER_BODY] = pelvis + rel
    return pos


def waving(side: str = "right", hz: float = 2.0, amplitude: float = 0.1, raised: bool = True) -> np.ndarray:
    """Standing; from 0.5 s to 2.5 s the wrist of ``side`` swings sideways, above its shoulder if ``raised``."""
    pos = standing(60)
    wrist, shoulder = J[f"{side}_wrist"], J[f"{side}_shoulder"]
    t = np.arange(10, 50) / FPS
    outward = 1.0 if side == "left" else -1.0          # the character's left is +X
    pos[10:50, wrist] = pos[10:50, shoulder] + np.stack(
        [outward * 0.1 + amplitude * np.sin(2 * np.pi * hz * t), np.full_like(t, 0.35 if raised else -0.3),
         np.full_like(t, 0.05)], axis=-1)
    return pos


def kicking(sides: tuple[str, ...] = ("left",), frames_up: int = 3) -> np.ndarray:
    """Standing; at 1 s the ankle and toe of each side swing 0.7 m forward and 0.4 m up in
    ``frames_up`` frames, then come back."""
    up = smoothstep(np.arange(1, frames_up + 1) / frames_up)
    path = np.concatenate([up, np.ones(2), up[::-1]])
    pos = standing(len(path) + 40)
    lift = np.stack([np.zeros_like(path), 0.4 * path, 0.7 * path], axis=-1)
    for side in sides:
        for joint in (J[f"{side}_ankle"], J[f"{side}_foot"]):
            pos[20:20 + len(path), joint] += lift
    return pos


# --------------------------------------------------------------------------- #
# Each check on motions that should pass and motions that should fail
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("direction_deg, name", [(0, "walk_forward"), (90, "walk_left"),
                                                 (-90, "walk_right"), (180, "walk_backward")])
def test_walk_direction_relative_to_the_initial_facing(direction_deg, name):
    walk = walking_motion(frames=80, speed=1.0, direction_deg=direction_deg)
    walks = {n for n in passing(walk) if n.startswith("walk_")}
    assert walks == {name}
    # the whole motion rotated about Y (another initial facing) says the same
    assert passing(qrot(qyaw(np.array(2.0)), walk)) == passing(walk)


def test_direction_needs_distance_and_a_straight_path():
    assert "walk_forward" not in passing(walking_motion(frames=30, speed=0.3))     # 0.44 m
    assert "walk_forward" in passing(walking_motion(frames=30, speed=0.6))         # 0.87 m
    assert "walk_forward" not in passing(walking_motion(frames=120, speed=1.0, turn_deg=300))   # a loop


def test_run_versus_walk_by_speed():
    run = walking_motion(frames=80, speed=3.0, step_hz=2.8)
    assert {"run_forward"} <= passing(run) and "walk_forward" not in passing(run)
    walk = walking_motion(frames=80, speed=1.2)
    assert "run_forward" not in passing(walk)
    back_run = walking_motion(frames=80, speed=3.0, step_hz=2.8, direction_deg=180)
    assert "run_forward" not in passing(back_run)


@pytest.mark.parametrize("speed", [0.0, 1.0])
def test_turn_sign_and_magnitude(speed):
    left = walking_motion(frames=80, speed=speed, turn_deg=120)
    right = walking_motion(frames=80, speed=speed, turn_deg=-120)
    slight = walking_motion(frames=80, speed=speed, turn_deg=40)
    assert {"turn_left"} <= passing(left) and "turn_right" not in passing(left)
    assert {"turn_right"} <= passing(right) and "turn_left" not in passing(right)
    assert not {"turn_left", "turn_right"} & passing(slight)


def test_turn_convention_matches_recover_root():
    """recover_root: heading > 0 = turned to the left; the facing yaw the checks use agrees."""
    import torch

    from realign_core.motion.features import joints_to_features, recover_root

    left = walking_motion(frames=80, speed=1.0, turn_deg=120)
    heading, _ = recover_root(torch.from_numpy(joints_to_features(left)).double())
    assert float(heading[-1]) > math.radians(60)
    assert MeasuredMotion(left).summary.heading_change_deg > 60


def test_jump():
    assert "jump" in passing(jumping())
    assert "jump" not in passing(jumping(peak_m=0.04))        # feet barely leave the floor
    assert "jump" not in passing(standing())
    assert "jump" not in passing(walking_motion(frames=80, speed=1.2))


def test_sit_down():
    assert "sit_down" in passing(sitting())
    assert "sit_down" in passing(sitting(stand_up=True))      # sits, stays 2 s, stands up again
    assert "sit_down" not in passing(sitting(drop_m=0.15))    # a knee bend
    assert "sit_down" not in passing(sitting(hold_s=0.2, stand_up=True, ramp_s=0.5))   # a brief squat
    assert "sit_down" not in passing(lying_down())           # pelvis low, but the torso is not upright
    assert "sit_down" not in passing(standing())
    # starting seated and standing up is not sitting down
    assert "sit_down" not in passing(sitting()[::-1].copy())


def test_wave_side_raise_and_oscillation():
    right = waving("right")
    assert "wave_right" in passing(right) and "wave_left" not in passing(right)
    assert "wave_left" in passing(waving("left")) and "wave_right" not in passing(waving("left"))
    assert "wave_right" not in passing(waving("right", amplitude=0.0))    # raised but not moving
    assert "wave_right" not in passing(waving("right", raised=False))     # swinging below the shoulder
    both = waving("right")
    both[:, J["left_wrist"]] = waving("left")[:, J["left_wrist"]]
    assert not {"wave_right", "wave_left"} & passing(both)               # both hands: not "the right hand"


def test_kick_side_speed_and_support():
    left = kicking(("left",))
    assert "kick_left" in passing(left) and "kick_right" not in passing(left)
    assert "kick_right" in passing(kicking(("right",)))
    assert not {"kick_left", "kick_right"} & passing(kicking(("left",), frames_up=30))   # slow leg raise
    assert not {"kick_left", "kick_right"} & passing(kicking(("left", "right")))         # both feet: a jump
    assert not {"kick_left", "kick_right"} & passing(walking_motion(frames=80, speed=1.2))


def test_stand_still():
    assert "stand_still" in passing(standing(80))
    assert "stand_still" not in passing(walking_motion(frames=80, speed=0.5))
    assert "stand_still" not in passing(waving("right"))
    assert "stand_still" not in passing(sitting())


@pytest.mark.parametrize("make", [lambda: walking_motion(frames=80, speed=1.0, direction_deg=90),
                                  lambda: walking_motion(frames=80, speed=1.0, turn_deg=120),
                                  lambda: waving("right"), lambda: kicking(("left",))])
def test_mirroring_swaps_left_and_right(make):
    motion = make()
    mirrored = {n.replace("left", "@").replace("right", "left").replace("@", "right") for n in passing(motion)}
    assert any("left" in n or "right" in n for n in mirrored)
    assert passing(mirror_joints(motion)) == mirrored


def test_prompt_set_and_bad_input():
    assert len(PROMPTS) >= 10 and len({p.caption for p in PROMPTS}) == len(PROMPTS)
    assert select_prompts("jump, sit_down") == (PROMPTS_BY_NAME["jump"], PROMPTS_BY_NAME["sit_down"])
    with pytest.raises(ValueError, match="unknown prompt"):
        select_prompts("fly")
    with pytest.raises(ValueError, match="22, 3"):
        MeasuredMotion(np.zeros((10, 21, 3)))
    walk_wave = caption_prompts("a person walks forward and waves.", "walk_forward, wave_right")
    assert [(p.name, p.caption) for p in walk_wave] == [("walk_forward", "a person walks forward and waves."),
                                                         ("wave_right", "a person walks forward and waves.")]
    assert walk_wave[0].matches(walking_motion(frames=80, speed=1.2)) and not walk_wave[1].matches(standing(80))
    (both,) = caption_prompts("a person walks forward and waves.", "walk_forward+wave_right")
    walking_and_waving = walking_motion(frames=60, speed=1.2)
    wave = waving("right")
    arm, shoulder = [J["right_wrist"], J["right_elbow"]], [J["right_shoulder"]]
    walking_and_waving[:, arm] = walking_and_waving[:, shoulder] + (wave[:, arm] - wave[:, shoulder])
    assert both.name == "walk_forward+wave_right" and both.matches(walking_and_waving)
    assert not both.matches(walking_motion(frames=60, speed=1.2)) and not both.matches(wave)
    for caption, checks in [("a person flies.", "fly"), ("", "jump"), ("a person jumps.", "")]:
        with pytest.raises(ValueError, match="caption prompts"):
            caption_prompts(caption, checks)
    nan = standing()
    nan[3, 4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        PROMPTS[0].matches(nan)


# --------------------------------------------------------------------------- #
# Statistics
# --------------------------------------------------------------------------- #

def test_wilson_interval_and_paired_difference():
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    diff, lo, hi = paired_difference([False] * 8 + [True] * 2, [True] * 8 + [False] * 2)
    assert diff == pytest.approx(0.6) and lo < 0.6 < hi
    diff, lo, hi = paired_difference([True] * 3, [True] * 3)      # all pairs agree: still uncertain
    assert diff == 0.0 and lo < -0.3 and hi > 0.3
    diff, lo, hi = paired_difference([False] * 40, [True] * 40)
    assert diff == 1.0 and 0.85 < lo < 1.0 and hi == 1.0


# --------------------------------------------------------------------------- #
# kinematic_alignment with a scripted generator of synthetic motions
# --------------------------------------------------------------------------- #

SCRIPTED = {
    "a person walks forward.": lambda n: walking_motion(frames=n, speed=1.2),
    "a person walks backward.": lambda n: walking_motion(frames=n, speed=0.9, direction_deg=180),
    "a person turns left.": lambda n: walking_motion(frames=n, speed=0.0, turn_deg=120),
    "a person stands still.": lambda n: standing(n),
}


def scripted(captions: list[str], frames: list[int], seeds: list[int], swap: bool = False) -> list[np.ndarray]:
    """Synthetic motions doing what each caption says (or, with ``swap``, what the next prompt says)."""
    keys = list(SCRIPTED)
    pick = [keys[(keys.index(c) + 1) % len(keys)] if swap else c for c in captions]
    return [SCRIPTED[c](f) for c, f in zip(pick, frames)]


def test_alignment_counts_matches_per_prompt_and_pairs_seeds():
    prompts = select_prompts(["walk_forward", "walk_backward", "turn_left", "stand_still"])
    good = kinematic_alignment(scripted, prompts, samples_per_prompt=3, seconds=4.0, seed=7, batch_size=5)
    bad = kinematic_alignment(lambda c, f, s: scripted(c, f, s, swap=True), prompts, 3, 4.0, seed=7, batch_size=5)
    assert [p.fraction for p in good.prompts] == [1.0] * 4 and good.overall == 1.0
    assert [p.fraction for p in bad.prompts] == [0.0] * 4 and bad.overall_ci[1] < 0.3
    assert good.prompts[1].seeds == [10, 11, 12] and good.seconds == 4.0
    diff = compare_reports(good, bad)
    assert diff["overall"]["difference"] == -1.0 and diff["turn_left"]["high"] <= 0
    table = format_reports({"baseline": good, "guided": bad})
    assert "turn_left" in table and "overall" in table and "-100.0" in table
    assert json.loads(json.dumps(good.to_dict()))["prompts"]["walk_backward"]["n"] == 3
    arms = format_arm_measures({"baseline": good, "guided": bad})
    assert "stand_still" in arms and "0.00 / 0.00" in arms and len(good.prompts[0].arm) == 3
    ground = {p.name: p.ground_mean() for p in good.prompts}
    assert ground["stand_still"]["pelvis_excursion_m"] < 0.05 < ground["walk_forward"]["pelvis_excursion_m"]
    assert json.loads(json.dumps(good.to_dict()))["prompts"]["stand_still"]["ground_measures_mean"] == \
        ground["stand_still"]
    table = format_ground_measures({"baseline": good, "guided": bad})
    assert table.splitlines()[-2].startswith("all") and "stand_still" in table


def test_arm_measures_read_what_the_wave_check_reads():
    wave = arm_measures(MeasuredMotion(waving("right")))
    assert wave["right_wrist_raised_s"] == pytest.approx(2.0) and wave["right_wrist_swings"] >= 3
    assert wave["left_wrist_raised_s"] == 0.0 and wave["left_wrist_swings"] == 0.0
    held = arm_measures(MeasuredMotion(waving("right", amplitude=0.0)))     # raised and held: no swing
    assert held["right_wrist_raised_s"] == pytest.approx(2.0) and held["right_wrist_swings"] == 0.0


# --------------------------------------------------------------------------- #
# Validation labels and validate_checks on a small captioned dataset
# --------------------------------------------------------------------------- #

def clip(captions: list[str], single: bool = True) -> ClipRecord:
    return ClipRecord("x", [c.lower() for c in captions], single, False)


def test_caption_labels():
    back = next(lab for lab in LABELS if lab.name == "walk_backward")
    assert label_clip(back, clip(["A person walks backwards."])) is True
    assert label_clip(back, clip(["a person walks forward, turns around and walks back."])) is None
    assert label_clip(back, clip(["a person dances."])) is False
    # a multi-clip trial: a caption with a sequence may describe another clip of it
    assert label_clip(back, clip(["a person walks backwards, then sits."], single=False)) is None
    left = next(lab for lab in LABELS if lab.name == "turn_left")
    right = next(lab for lab in LABELS if lab.name == "turn_right")
    for text, want_left in [("a person walks, then turns left 90 degrees.", True),
                            ("a person performs a 90 degree counter clockwise jump.", True),
                            ("the person does a 360 clockwise jump", False),
                            ("a person turns 360 degrees to the right during a jump.", False)]:
        assert label_clip(left, clip([text])) is (True if want_left else None)
        assert label_clip(right, clip([text])) is (None if want_left else True)
    # "rightwards" of a step is not a turn; a mirrored "counter clockwise" is ambiguous
    assert label_clip(right, clip(["a human performs one large step forwards and rightwards."])) is None
    assert label_clip(left, clip(["a human performs a 90 degree counter counterclockwise jump."])) is None


def write_dataset(root) -> None:
    """A tiny built dataset: metadata.jsonl + new_joints of five synthetic clips (one mirrored)."""
    motions = {
        "back": (walking_motion(frames=80, speed=0.9, direction_deg=180), "a person walks backwards."),
        "fwd": (walking_motion(frames=80, speed=1.2), "a person walks."),
        "still": (standing(80), "a person stands still."),
        "jump": (jumping(), "a person jumps."),
    }
    (root / "new_joints").mkdir(parents=True)
    rows = []
    for name, (pos, caption) in motions.items():
        np.save(root / "new_joints" / f"{name}.npy", pos.astype(np.float32))
        rows.append({"id": name, "trial": name, "mirror": False,
                     "captions": [{"text": caption, "source": "kitml"},
                                  {"text": "a person walks backward.", "source": "kinematic"}]})
    np.save(root / "new_joints" / "Mback.npy", mirror_joints(motions["back"][0]).astype(np.float32))
    rows.append({"id": "Mback", "trial": "back", "mirror": True,
                 "captions": [{"text": "a person walks backwards.", "source": "kitml"}]})
    (root / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_validate_checks_on_a_small_dataset(tmp_path):
    write_dataset(tmp_path)
    result = validate_checks(tmp_path)
    back = result["labels"]["walk_backward"]
    assert back["positives"] == 2 and back["recall"] == 1.0          # the clip and its mirror
    assert back["negatives"] == 3 and back["false_positive_rate"] == 0.0   # kinematic captions are ignored
    assert result["labels"]["walk_forward"]["recall"] == 1.0 and result["labels"]["stand_still"]["recall"] == 1.0
    assert result["confusion"]["walk_backward"]["walk_forward"] == 0.0
    assert validate_checks(tmp_path, include_mirrored=False)["labels"]["walk_backward"]["positives"] == 1
    assert "walk_backward" in format_validation(result)


def test_validate_checks_on_another_source_of_the_same_clips(tmp_path):
    """``joints_of`` replaces the real joints (e.g. by a VAE's reconstructions): a source that loses the walk
    loses its recall, the labels stay the real captions'."""
    write_dataset(tmp_path)
    still = standing(80)
    real, through = validate_checks(tmp_path), validate_checks(tmp_path, joints_of=lambda clip_id: still)
    assert through["labels"]["walk_backward"]["positives"] == 2 and through["labels"]["walk_backward"]["recall"] == 0.0
    assert through["labels"]["stand_still"]["recall"] == 1.0
    row = next(line for line in format_recall_through(real, through).splitlines() if line.startswith("walk_backward"))
    assert row.split()[1:3] == ["2", "100.0"] and "0.0" in row.split()[4]


# --------------------------------------------------------------------------- #
# End to end on the real tiny generator + reward model
# --------------------------------------------------------------------------- #

def test_end_to_end_on_tiny_models(tiny_guided, tmp_path, capsys):
    data = tmp_path / "data"
    write_dataset(data)
    out = tmp_path / "kin.json"
    argv = ["--models", str(tiny_guided), "--samples", "2", "--steps", "5", "--seconds", "2",
            "--prompts", "walk_forward,turn_left", "--strength", "2", "--device", "cpu",
            "--validate-on", str(data), "-o", str(out)]
    assert kinematic_main(argv) == 0
    printed = capsys.readouterr().out
    assert "baseline" in printed and "guided" in printed and "turn_left" in printed and "recall" in printed
    result = json.loads(out.read_text())
    for setting in ("baseline", "guided"):
        rep = result["alignment"][setting]
        assert set(rep["prompts"]) == {"walk_forward", "turn_left"}
        assert all(0.0 <= p["fraction"] <= 1.0 and p["n"] == 2 for p in rep["prompts"].values())
        assert 0.0 <= rep["overall"] <= 1.0 and rep["seconds"] == 2.0
    assert result["alignment"]["baseline"]["prompts"]["turn_left"]["seeds"] == [2, 3]
    assert result["alignment"]["baseline"]["settings"]["guidance"] is None
    assert result["alignment"]["guided"]["settings"]["guidance"]["strength"] == 2.0
    assert -1.0 <= result["alignment"]["difference"]["overall"]["difference"] <= 1.0
    assert result["validation"]["labels"]["walk_backward"]["recall"] == 1.0


def test_a_free_caption_is_checked_for_each_thing_it_asks(tiny_guided, tmp_path, capsys):
    """``--caption`` + ``--checks`` (how often the README demo prompt does what it says): one row per check, all
    with that caption; without --checks it is refused before anything is generated."""
    out = tmp_path / "demo.json"
    caption = "a person walks forward and waves with the right hand."
    assert kinematic_main(["--models", str(tiny_guided), "--samples", "2", "--steps", "3", "--seconds", "2",
                           "--caption", caption, "--checks", "walk_forward,wave_right", "--device", "cpu",
                           "-o", str(out)]) == 0
    rep = json.loads(out.read_text())["alignment"]["guided"]["prompts"]
    assert set(rep) == {"walk_forward", "wave_right"} and {p["caption"] for p in rep.values()} == {caption}
    with pytest.raises(SystemExit):
        kinematic_main(["--models", str(tiny_guided), "--caption", caption, "-o", str(out)])
    assert "--checks" in capsys.readouterr().err


def test_realign_eval_kinematic_runs_every_generator_present(tiny_guided, tmp_path, capsys):
    import shutil

    from realign_core.cli.main import main as realign_main

    data, models = tmp_path / "data", tmp_path / "models"
    write_dataset(data)
    shutil.copytree(tiny_guided, models)
    assert realign_main(["eval", "--kinematic", "--models", str(models), "--data", str(data),
                         "--kinematic-samples", "1", "--steps", "3", "--device", "cpu"]) == 0
    result = json.loads((models / "kinematic_alignment_mld.json").read_text())
    assert set(result["alignment"]) == {"baseline", "guided", "difference"}
    assert len(result["alignment"]["baseline"]["prompts"]) == len(PROMPTS)
    assert not (models / "kinematic_alignment_mdm.json").exists()      # no MDM checkpoint in this folder
    validation = json.loads((models / "kinematic_validation.json").read_text())
    assert validation["validation"]["labels"]["walk_backward"]["recall"] == 1.0
    assert "walk_forward" in capsys.readouterr().out


# --------------------------------------------------------------------------- #
# Reward agreement: does the reward score passing samples higher?
# --------------------------------------------------------------------------- #

def test_agreement_auc():
    from realign_core.evaluation.kinematic.reward_agreement import agreement_auc

    perfect = agreement_auc([True, True, False, False], [0.9, 0.8, 0.1, 0.2])
    assert perfect["auc"] == 1.0 and perfect["passing"] == 2 and perfect["reward_passing"] == pytest.approx(0.85)
    assert agreement_auc([True, False, True, False], [0.1, 0.9, 0.2, 0.8])["auc"] == 0.0
    assert agreement_auc([True, False], [0.5, 0.5])["auc"] == 0.5
    none_pass = agreement_auc([False, False], [0.1, 0.2])
    assert none_pass["auc"] is None and none_pass["reward_passing"] is None and none_pass["reward_failing"] == pytest.approx(0.15)
    with pytest.raises(ValueError, match="2 verdicts for 3 rewards"):
        agreement_auc([True, False], [0.1, 0.2, 0.3])


def test_reward_agreement_cli_on_the_shipped_models(tmp_path):
    models = Path(__file__).resolve().parents[1] / "models" / "default"
    out = tmp_path / "agreement.json"
    assert kinematic_main(["--models", str(models), "--prompts", "walk_forward,stand_still", "--samples", "3",
                           "--seconds", "2", "--steps", "2", "--reward-agreement", "-o", str(out)]) == 0
    rows = json.loads(out.read_text())["reward_agreement"]["prompts"]
    assert set(rows) == {"walk_forward", "stand_still"}
    for row in rows.values():
        assert row["n"] == 3 and len(row["reward"]) == 3 and all(-1.0 <= r <= 1.0 for r in row["reward"])
        assert row["passing"] == sum(row["passed"])
    with pytest.raises(SystemExit):
        kinematic_main(["--models", str(models), "--caption", "a person waves.", "--checks", "wave_right",
                        "--layer", "right_arm", "a person waves.", "--reward-agreement"])
