"""Tests for realign_core.data.captions: mirroring, POS tokens, caption lines,
CMU descriptions and kinematic captions on synthetic stick-figure motions."""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from realign_core.data.captions import (
    CaptionRecord,
    KinematicCaptionConfig,
    caption_line,
    cmu_description_to_sentence,
    kinematic_captions,
    measure_kinematics,
    mirror_caption,
    parse_caption_line,
    pos_tokens,
)
from realign_core.motion.skeleton import JOINT_INDEX, JOINT_NAMES

FPS = 20
UPOS = {"NOUN", "VERB", "ADJ", "ADV", "ADP", "DET", "PRON", "NUM", "CCONJ", "SCONJ", "AUX",
        "PART", "PROPN", "X"}


def shared_dir() -> Path:
    """../shared beside the repository (tests/conftest.py already existed, so local)."""
    return Path(__file__).resolve().parents[1].parent / "shared"


# ---------------------------------------------------------------------------
# mirror_caption
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("a person walks to the left.", "a person walks to the right."),
    ("Left hand up, RIGHT foot down", "Right hand up, LEFT foot down"),
    ("he turns right, then left!", "he turns left, then right!"),
    ("moves leftward and then rightwards", "moves rightward and then leftwards"),
    ("spins clockwise", "spins counterclockwise"),
    ("spins counter-clockwise", "spins clockwise"),
    ("spins anticlockwise and anti-clockwise", "spins clockwise and clockwise"),
    ("turns Counter clockwise, then left", "turns Clockwise, then right"),
    ("a left-handed throw", "a right-handed throw"),
    ("his lefthand reaches", "his righthand reaches"),
    ("(left)", "(right)"),
    ("the leftover bright copyright is alright", "the leftover bright copyright is alright"),
    ("all right, he waves", "all right, he waves"),
])
def test_mirror_caption_cases(text: str, expected: str) -> None:
    assert mirror_caption(text) == expected


@pytest.mark.parametrize("text", [
    "A person steps to the Left, raises the right arm and spins clockwise.",
    "LEFT then right then counterclockwise; leftwards, rightward.",
    "nothing directional here.",
])
def test_mirror_caption_twice_is_identity(text: str) -> None:
    once = mirror_caption(text)
    assert mirror_caption(once) == text
    assert once != text or not re.search(r"left|right|clockwise", text, re.IGNORECASE)


# ---------------------------------------------------------------------------
# pos_tokens
# ---------------------------------------------------------------------------

def _tags(text: str) -> list[tuple[str, str]]:
    return [tuple(tok.split("/")) for tok in pos_tokens(text).split()]


def test_pos_tokens_format() -> None:
    tokens = pos_tokens("A person walks forward, then turns around and jumps 3 times!")
    assert re.fullmatch(r"([a-z0-9.]+/[A-Z]+)( [a-z0-9.]+/[A-Z]+)*", tokens), tokens
    assert all(tag in UPOS for _, tag in _tags("Someone's left arm waves quickly; he doesn't stop."))
    assert "," not in tokens and "!" not in tokens


def test_pos_tokens_tags_and_lemmas() -> None:
    tags = dict(_tags("a person walks forward then turns around and jumps 3 times"))
    assert tags == {"a": "DET", "person": "NOUN", "walk": "VERB", "forward": "ADV", "then": "ADV",
                    "turn": "VERB", "around": "ADV", "and": "CCONJ", "jump": "VERB", "3": "NUM",
                    "time": "NOUN"}
    assert _tags("the man raises his left hand") == [
        ("the", "DET"), ("man", "NOUN"), ("raise", "VERB"), ("his", "PRON"), ("left", "ADJ"),
        ("hand", "NOUN")]
    assert _tags("he does a kick to the right")[-1] == ("right", "NOUN")
    assert _tags("he does a kick")[-1] == ("kick", "NOUN")
    assert ("walking", "VERB") not in _tags("is walking") and ("walk", "VERB") in _tags("is walking")
    assert _tags("slowly") == [("slowly", "ADV")] and _tags("zorbled") == [("zorbled", "VERB")]
    assert _tags("counter-clockwise") == [("counterclockwise", "ADV")]


# ---------------------------------------------------------------------------
# caption lines
# ---------------------------------------------------------------------------

def test_caption_line_round_trip() -> None:
    line = caption_line("A person walks forward.", 1.5, 4.25)
    caption, tokens, start, end = line.split("#")
    assert caption == "A person walks forward." and (start, end) == ("1.5", "4.25")
    assert tokens == pos_tokens("A person walks forward.")
    assert parse_caption_line(line + "\n") == CaptionRecord("A person walks forward.", tokens, 1.5, 4.25)
    whole = parse_caption_line(caption_line("someone jumps."))
    assert whole.whole_clip and caption_line("someone jumps.").endswith("#0.0#0.0")


def test_parse_official_and_stray_hash_lines() -> None:
    official = ("a man kicks something or someone with his left leg.#a/DET man/NOUN kick/VERB "
                "something/PRON or/CCONJ someone/PRON with/ADP his/DET left/ADJ leg/NOUN#0.0#0.0")
    record = parse_caption_line(official)
    assert record.caption.startswith("a man kicks") and record.tokens.endswith("leg/NOUN")
    assert record.whole_clip
    stray = parse_caption_line("walks #1 forward#walk/VERB#0.0#2.0")
    assert stray.caption == "walks #1 forward" and stray.end == 2.0
    assert parse_caption_line("a person runs.#run/VERB#nan#nan").whole_clip
    assert "#" not in caption_line("a # caption").split("#")[0]


@pytest.mark.parametrize("line", [
    "no fields at all", "caption#tokens#0.0", "caption#tokens#zero#1.0", "#tok#0.0#0.0",
    "caption#tokens#-1.0#2.0",
])
def test_parse_malformed_line_names_it(line: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(line))):
        parse_caption_line(line)


def test_caption_line_rejects_bad_segment() -> None:
    with pytest.raises(ValueError):
        caption_line("a person walks.", 2.0, 1.0)
    with pytest.raises(ValueError):
        caption_line("   ", 0.0, 0.0)


# ---------------------------------------------------------------------------
# CMU descriptions
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("description, expected", [
    ("playground - forward jumps, turn around", "a person does forward jumps, then turns around."),
    ("walk", "a person walks."),
    ("jump, balance", "a person jumps, then balances."),
    ("Story - Walk, sit, stand", "a person walks, sits, then stands."),
    ("run/jog", "a person runs or jogs."),
    ("navigate - walk forward, backward, sideways", "a person walks forward, backward, sideways."),
    ("salsa style dance", "a person does a salsa style dance."),
    ("boxing", "a person is boxing."),
    ("climb 2 steps", "a person climbs 2 steps."),
    ("walk on uneven terrain", "a person walks on uneven terrain."),
    ("Cartwheel", "a person cartwheels."),
    ("golf swing", "a person does a golf swing."),
    ("bear (human subject)", "a person acts like a bear."),
    ("JumpForward", "a person jumps forward."),
    ("AttitudeWalk8", "a person does an attitude walk in a figure eight."),
    ("Pick box up, bend from waist", "a person picks box up, then bends from waist."),
    ("A pulls B; B resists (2 subjects - subject B)",
     "a person gets pulled by the other person, then resists."),
])
def test_cmu_description_examples(description: str, expected: str) -> None:
    assert cmu_description_to_sentence(description) == expected


@pytest.mark.parametrize("description", ["Unknown", "", "   ", "clean", "Story", "12.5 lbs", "180.0",
                                         "106_15.amc", "calibration"])
def test_cmu_uninformative_descriptions(description: str) -> None:
    assert cmu_description_to_sentence(description) is None


@pytest.mark.shared_data
def test_cmu_descriptions_csv() -> None:
    path = shared_dir() / "data" / "cmu_mocap" / "descriptions.csv"
    if not path.exists():
        pytest.skip(f"{path} is absent: this test needs the shared CMU data beside the repo")
    with path.open(newline="", encoding="utf-8") as handle:
        descriptions = [row["description"] for row in csv.DictReader(handle)]
    informative = [d for d in descriptions if d.strip().lower() != "unknown"]
    assert len(informative) > 1000
    sentences = [cmu_description_to_sentence(d) for d in informative]
    good = [s for s in sentences if s is not None and s.startswith("a person ")]
    assert len(good) >= 0.9 * len(informative), len(good) / len(informative)
    for description, sentence in zip(informative, sentences):
        if sentence is None:
            continue
        assert sentence.endswith(".") and not sentence.endswith(".."), (description, sentence)
        assert "  " not in sentence and " -" not in sentence and " ," not in sentence, (description, sentence)
        assert sentence.count("(") == sentence.count(")") == 0, (description, sentence)
        assert not re.search(r"[;\"/#_]|\bselfmark\b|\bgrs\b", sentence), (description, sentence)


# ---------------------------------------------------------------------------
# Synthetic stick-figure motions
# ---------------------------------------------------------------------------

# Rest pose facing +Z with the character's left at +X, floor at Y=0 (metres).
REST_POSE = {
    "pelvis": (0.0, 0.95, 0.0), "left_hip": (0.09, 0.88, 0.0), "right_hip": (-0.09, 0.88, 0.0),
    "spine1": (0.0, 1.05, 0.0), "left_knee": (0.10, 0.50, 0.02), "right_knee": (-0.10, 0.50, 0.02),
    "spine2": (0.0, 1.18, 0.0), "left_ankle": (0.10, 0.08, -0.02), "right_ankle": (-0.10, 0.08, -0.02),
    "spine3": (0.0, 1.25, 0.0), "left_foot": (0.11, 0.02, 0.12), "right_foot": (-0.11, 0.02, 0.12),
    "neck": (0.0, 1.45, 0.0), "left_collar": (0.07, 1.38, 0.0), "right_collar": (-0.07, 1.38, 0.0),
    "head": (0.0, 1.60, 0.03), "left_shoulder": (0.18, 1.40, 0.0), "right_shoulder": (-0.18, 1.40, 0.0),
    "left_elbow": (0.22, 1.12, 0.0), "right_elbow": (-0.22, 1.12, 0.0),
    "left_wrist": (0.24, 0.86, 0.03), "right_wrist": (-0.24, 0.86, 0.03),
}
REST = np.array([REST_POSE[name] for name in JOINT_NAMES])
LEG = {side: [JOINT_INDEX[f"{side}_{j}"] for j in ("knee", "ankle", "foot")] for side in ("left", "right")}
MIRROR = [JOINT_INDEX[n.replace("left_", "@").replace("right_", "left_").replace("@", "right_")]
          for n in JOINT_NAMES]


@dataclass(frozen=True)
class Seg:
    """One piece of a synthetic motion.

    seconds; speed m/s along ``direction`` deg relative to the body (0 forward,
    +90 left); turn deg over the segment (+ = to the left); gait: 'walk' (one
    foot always down), 'run' (0.1 s flights), 'jump' (0.4 s hops of 0.3 m).
    """

    seconds: float
    speed: float = 0.0
    direction: float = 0.0
    turn: float = 0.0
    gait: str = "walk"


def _rot_y(points: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate (T, J, 3) points about +Y by angle (T,) rad (+Z towards +X)."""
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    out = points.copy()
    out[..., 0] = points[..., 0] * c + points[..., 2] * s
    out[..., 2] = -points[..., 0] * s + points[..., 2] * c
    return out


def _foot_lifts(phase: np.ndarray, gait: str) -> tuple[np.ndarray, np.ndarray]:
    """Left/right foot heights (m) over a stride phase (rad)."""
    if gait == "run":  # both feet up for ~0.1 s around each switch
        return 0.25 * np.maximum(0, np.sin(phase) + 0.6), 0.25 * np.maximum(0, -np.sin(phase) + 0.6)
    if gait == "walk":
        return 0.12 * np.maximum(0, np.sin(phase)), 0.12 * np.maximum(0, -np.sin(phase))
    return np.zeros_like(phase), np.zeros_like(phase)


def synth(*segments: Seg, fps: int = FPS) -> np.ndarray:
    """(T, 22, 3) motion built from segments, starting at the origin facing +Z."""
    yaw, speed, direction, gait = [], [], [], []
    heading = 0.0
    for seg in segments:
        n = int(round(seg.seconds * fps))
        yaw.append(heading + np.deg2rad(seg.turn) * np.arange(1, n + 1) / n)
        heading = yaw[-1][-1]
        speed += [seg.speed] * n
        direction += [seg.direction] * n
        gait += [seg.gait] * n
    yaw, speed = np.concatenate(yaw), np.array(speed)
    t = np.arange(len(yaw)) / fps
    travel = yaw + np.deg2rad(direction)
    velocity = speed[:, None] * np.stack([np.sin(travel), np.cos(travel)], -1) / fps
    root = np.cumsum(velocity, axis=0) - velocity[0]
    pose = np.repeat(REST[None], len(yaw), axis=0)
    stride_hz = np.where(np.array(gait) == "run", 1.4, 0.9)
    phase = 2 * np.pi * np.cumsum(stride_hz) / fps
    for i, g in enumerate(gait):
        left, right = _foot_lifts(phase[i:i + 1], g)
        pose[i, LEG["left"], 1] += left[0] * np.array([0.5, 1, 1])
        pose[i, LEG["right"], 1] += right[0] * np.array([0.5, 1, 1])
        if g == "jump":  # 0.4 s parabolic hops every 0.8 s
            u = (t[i] % 0.8) / 0.4
            pose[i, :, 1] += 1.2 * u * (1 - u) if u < 1 else 0.0
    pose = _rot_y(pose, yaw)
    pose[..., 0] += root[:, None, 0]
    pose[..., 2] += root[:, None, 1]
    return pose


def mirrored(positions: np.ndarray) -> np.ndarray:
    """Negate X and swap left/right joints."""
    out = positions[:, MIRROR].copy()
    out[..., 0] *= -1
    return out


def rotated(positions: np.ndarray, degrees: float) -> np.ndarray:
    """The whole motion rotated about the world Y axis."""
    return _rot_y(positions, np.full(len(positions), np.deg2rad(degrees)))


def first(positions: np.ndarray) -> str | None:
    captions = kinematic_captions(positions)
    return captions[0] if captions else None


MOTIONS: dict[str, tuple[tuple[Seg, ...], str | None]] = {
    "walk_forward": ((Seg(4, 1.3),), "a person walks forward."),
    "walk_left": ((Seg(4, 1.0, 90),), "a person walks to the left."),
    "walk_right": ((Seg(4, 1.0, -90),), "a person walks to the right."),
    "walk_backward": ((Seg(4, 1.0, 180),), "a person walks backward."),
    "run_forward": ((Seg(3, 3.2, gait="run"),), "a person runs forward."),
    "run_left": ((Seg(3, 3.0, 90, gait="run"),), "a person runs to the left."),
    "walk_then_turn_right": ((Seg(3, 1.3), Seg(1.5, turn=-90, gait="stand")),
                             "a person walks forward and turns right."),
    "backward_then_turn_left": ((Seg(3, 1.0, 180), Seg(1.5, turn=90, gait="stand")),
                                "a person walks backward and turns left."),
    "turn_around_left": ((Seg(2.5, turn=180, gait="stand"),), "a person turns around to the left."),
    "turn_around_right": ((Seg(2.5, turn=-180, gait="stand"),), "a person turns around to the right."),
    "jump_in_place": ((Seg(2.4, gait="jump"),), "a person jumps in place."),
    "jump_forward": ((Seg(2.4, 1.0, gait="jump"),), "a person jumps forward."),
    "stand_still": ((Seg(3, gait="stand"),), "a person stands still."),
    "run_then_stop": ((Seg(2, 3.2, gait="run"), Seg(3, gait="stand")), "a person runs forward."),
    "forward_then_back": ((Seg(4, 1.2), Seg(1.5, 1.2, 180)), "a person walks."),  # path too winding
    "shuffle": ((Seg(3, 0.15),), None),                      # 0.45 m: neither still nor travelling
    "there_and_back": ((Seg(2.5, 1.3), Seg(1, turn=180, gait="stand"), Seg(2.5, 1.3)), None),
    "too_short": ((Seg(0.6, 1.3),), None),
}


def test_short_hops_are_not_jumps() -> None:
    """Both feet up for 0.1 s with the body raised 0.15 m: too short for a jump."""
    motion = synth(Seg(3, gait="stand"))
    hop = (np.arange(len(motion)) % 10) < 2
    motion[hop, :, 1] += 0.15
    summary = measure_kinematics(motion, FPS)
    assert summary.max_rise_m > 0.1 and summary.max_airborne_s == pytest.approx(0.1)
    assert summary.jump_count == 0
    assert not any("jump" in c for c in kinematic_captions(motion))
    longer = KinematicCaptionConfig(min_airborne_s=0.1)
    assert kinematic_captions(motion, FPS, longer)[0] == "a person jumps in place."


def test_kinematic_captions_raised_ground() -> None:
    """Walking onto a platform: feet 'airborne' for seconds is raised ground, not a jump."""
    motion = synth(Seg(4, 1.3))
    motion[len(motion) // 2:, :, 1] += 0.3
    summary = measure_kinematics(motion, FPS)
    assert summary.jump_count == 0 and summary.raised_fraction == pytest.approx(0.5, abs=0.05)
    assert kinematic_captions(motion) == []
    assert kinematic_captions(motion, FPS, KinematicCaptionConfig(max_raised_fraction=0.6))[0] == \
        "a person walks forward."


@pytest.mark.parametrize("name", list(MOTIONS))
def test_kinematic_captions_synthetic(name: str) -> None:
    segments, expected = MOTIONS[name]
    captions = kinematic_captions(synth(*segments))
    if expected is None:
        assert captions == []
    else:
        assert captions[0] == expected
        assert 1 <= len(captions) <= 2 and all(c.endswith(".") for c in captions)


@pytest.mark.parametrize("name", ["walk_left", "walk_backward", "walk_then_turn_right", "run_forward",
                                  "turn_around_right", "jump_forward"])
@pytest.mark.parametrize("yaw", [37.0, -121.0, 180.0])
def test_kinematic_captions_ignore_global_yaw(name: str, yaw: float) -> None:
    motion = synth(*MOTIONS[name][0])
    assert kinematic_captions(rotated(motion, yaw)) == kinematic_captions(motion)


@pytest.mark.parametrize("name", ["walk_left", "run_left", "walk_then_turn_right", "backward_then_turn_left",
                                  "turn_around_left", "walk_forward", "stand_still", "shuffle"])
def test_kinematic_captions_mirror_consistency(name: str) -> None:
    motion = rotated(synth(*MOTIONS[name][0]), 23.0)
    expected = [mirror_caption(c) for c in kinematic_captions(motion)]
    assert kinematic_captions(mirrored(motion)) == expected
    if "left" in name or "right" in name:
        assert kinematic_captions(mirrored(motion)) != kinematic_captions(motion)


def test_measure_kinematics_values() -> None:
    walk = measure_kinematics(rotated(synth(Seg(4, 1.2, 90)), 70.0), FPS)
    assert walk.left_m == pytest.approx(4.4, abs=0.3) and abs(walk.forward_m) < 0.1
    assert walk.typical_speed_mps == pytest.approx(1.2, abs=0.05)
    assert walk.body_direction == "left" and walk.upright and not walk.static
    turn = measure_kinematics(synth(Seg(3, turn=-120, gait="stand")), FPS)
    assert turn.heading_change_deg == pytest.approx(-120, abs=10)
    jump = measure_kinematics(synth(Seg(2.4, gait="jump")), FPS)
    assert jump.max_rise_m > 0.2 and jump.max_airborne_s >= 0.3 and 0.2 < jump.airborne_fraction < 0.6
    run = measure_kinematics(synth(Seg(3, 3.2, gait="run")), FPS)
    assert 0 < run.max_airborne_s < 0.15 and run.max_rise_m < 0.05


def test_kinematic_captions_thresholds_and_posture() -> None:
    sitting = synth(Seg(3, gait="stand"))
    upper = [j for j, name in enumerate(JOINT_NAMES) if "knee" not in name and "ankle" not in name
             and "foot" not in name]
    sitting[:, upper, 1] -= 0.5  # thighs horizontal, shins vertical: seated on a stool
    for side in ("left", "right"):
        sitting[:, LEG[side], 2] += 0.4
        sitting[:, LEG[side][0], 1] = 0.47
    assert measure_kinematics(sitting, FPS).static and not measure_kinematics(sitting, FPS).upright
    assert kinematic_captions(sitting) == []
    assert first(synth(Seg(4, 1.7))) == "a person walks forward."
    assert first(synth(Seg(4, 1.95))) == "a person moves forward."  # between walking and running
    assert first(synth(Seg(4, 2.3, gait="run"))) == "a person runs forward."
    strict = KinematicCaptionConfig(min_travel_m=10.0)
    assert kinematic_captions(synth(Seg(4, 1.3)), FPS, strict) == []
    with pytest.raises(ValueError):
        kinematic_captions(np.zeros((10, 21, 3)))
