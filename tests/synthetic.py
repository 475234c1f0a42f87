"""Small synthetic motions for self-contained tests (no ../shared needed)."""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from realign_core.motion.skeleton import NUM_JOINTS, PARENTS, RAW_OFFSETS, REFERENCE_BONE_LENGTHS

# A rest pose facing +Z (left at +X): legs down, spine up, arms hanging down.
REST_OFFSETS = RAW_OFFSETS * REFERENCE_BONE_LENGTHS[:, None]
REST_OFFSETS[16] = [0.13, -0.02, 0.0]   # shoulders out to the side of the collars
REST_OFFSETS[17] = [-0.12, -0.02, 0.0]
LEG_LENGTH = REFERENCE_BONE_LENGTHS[[4, 7]].sum() + 0.05

_SWINGS = {  # joint: (amplitude deg, phase offset rad) of a rotation about +X
    1: (25.0, 0.0), 2: (25.0, np.pi), 4: (20.0, np.pi / 2), 5: (20.0, 3 * np.pi / 2),
    16: (20.0, np.pi), 17: (20.0, 0.0), 18: (10.0, np.pi), 19: (10.0, 0.0),
}


def forward_kinematics(root: np.ndarray, yaw: np.ndarray, local_x_deg: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Joints from a root path, yaw and per-joint X rotations.

    root: (T, 3) m; yaw: (T,) rad about +Y; local_x_deg: (T, 22) deg -> (T, 22, 3) m.
    """
    frames = len(root)
    world = [None] * NUM_JOINTS
    pos = np.zeros((frames, NUM_JOINTS, 3))
    pos[:, 0] = root
    world[0] = Rotation.from_euler("y", yaw[:, None])
    for j in range(NUM_JOINTS):
        if j:
            p = PARENTS[j]
            pos[:, j] = pos[:, p] + world[p].apply(REST_OFFSETS[j] * scale)
            world[j] = world[p] * Rotation.from_euler("x", np.deg2rad(local_x_deg[:, j:j + 1]))
        else:
            world[0] = world[0] * Rotation.from_euler("x", np.deg2rad(local_x_deg[:, :1]))
    return pos


def walking_motion(frames: int = 60, speed: float = 1.2, turn_deg: float = 0.0, scale: float = 1.0,
                   fps: int = 20, step_hz: float = 1.8, direction_deg: float = 0.0) -> np.ndarray:
    """A walk-like motion: legs and arms swing, heading turns by turn_deg overall.

    The body faces its heading; it travels at ``direction_deg`` relative to the
    heading (0 = forward, +90 = to its left, 180 = backward).
    Returns (frames, 22, 3) metres, Y up.
    """
    t = np.arange(frames) / fps
    yaw = np.deg2rad(turn_deg) * t / max(t[-1], 1e-9)
    phase = 2 * np.pi * step_hz * t
    local = np.zeros((frames, NUM_JOINTS))
    for j, (amp, off) in _SWINGS.items():
        local[:, j] = amp * np.sin(phase + off) * min(speed, 2.0)
    travel = yaw + np.deg2rad(direction_deg)
    step = speed / fps * np.stack([np.sin(travel), np.zeros(frames), np.cos(travel)], -1)
    root = np.cumsum(step, axis=0) - step[0]
    root[:, 1] = LEG_LENGTH * scale + 0.02 * np.sin(2 * phase)
    return forward_kinematics(root, yaw, local, scale)


def to_cmu20(positions: np.ndarray) -> np.ndarray:
    """SMPL-22 positions (T, 22, 3) m -> a CMU-style 20-joint trial (T, 20, 3) in CMU units."""
    from realign_core.data.cmu import CMU_UNIT_METRES, DIRECT_MAP
    from realign_core.motion.skeleton import JOINT_INDEX

    out = np.zeros((len(positions), 20, 3))
    for name, src in DIRECT_MAP.items():
        out[:, src] = positions[:, JOINT_INDEX[name]]
    for hand, wrist, elbow in ((7, "left_wrist", "left_elbow"), (11, "right_wrist", "right_elbow")):
        forearm = positions[:, JOINT_INDEX[wrist]] - positions[:, JOINT_INDEX[elbow]]
        out[:, hand] = positions[:, JOINT_INDEX[wrist]] + 0.3 * forearm
    return (out / CMU_UNIT_METRES).astype(np.float32)


def waving_motion(frames: int = 80, fps: int = 20) -> np.ndarray:
    """A standing body whose right arm rises slowly sideways (0 -> 150 degrees about the forward axis) while its
    forearm swings 25 degrees either way at 2.5 Hz (the wave); bone lengths kept: (frames, 22, 3) metres."""
    joints = walking_motion(frames=frames, speed=0.0, step_hz=0.0)
    t = np.arange(frames) / fps
    raise_deg, wave_deg = 150 * t / t[-1], 25 * np.sin(2 * np.pi * 2.5 * t)
    shoulder, elbow, wrist = joints[:, 17], joints[:, 19], joints[:, 21]
    upper = Rotation.from_euler("z", -raise_deg[:, None], degrees=True).apply(elbow - shoulder)
    fore = Rotation.from_euler("z", -(raise_deg + wave_deg)[:, None], degrees=True).apply(wrist - elbow)
    joints[:, 19] = shoulder + upper
    joints[:, 21] = shoulder + upper + fore
    return joints


SYNTHETIC_CLASSES: dict[str, tuple[dict, tuple[str, ...]]] = {
    # name: (walking_motion kwargs, captions)
    "walk_forward": ({"speed": 1.2}, ("a person walks forward.", "someone walks straight ahead.")),
    "walk_left": ({"speed": 1.0, "direction_deg": 90.0}, ("a person walks to the left.", "someone sidesteps left.")),
    "walk_right": ({"speed": 1.0, "direction_deg": -90.0}, ("a person walks to the right.", "someone sidesteps right.")),
    "walk_backward": ({"speed": 0.9, "direction_deg": 180.0}, ("a person walks backward.", "someone steps back.")),
    "run": ({"speed": 3.0, "step_hz": 2.8}, ("a person runs forward.", "someone is running fast.")),
    "turn_left": ({"speed": 1.0, "turn_deg": 150.0}, ("a person walks and turns left.", "someone turns to the left.")),
    "turn_right": ({"speed": 1.0, "turn_deg": -150.0}, ("a person walks and turns right.", "someone turns to the right.")),
    "stand": ({"speed": 0.0}, ("a person stands still.", "someone is standing in place.")),
}


def write_synthetic_dataset(out, clips_per_class: int = 6, seed: int = 0, frames: tuple[int, int] = (48, 100)):
    """A small HumanML3D-layout dataset of 8 clearly different motion classes.

    Each clip varies speed, length, start yaw and body scale a little; captions
    name the class. Splits: per class, 2/3 train, the rest split between val and test.
    Returns the output folder.
    """
    from pathlib import Path

    from realign_core.data.captions import caption_line
    from realign_core.data.layout import write_split_files
    from realign_core.motion.features import joints_to_features
    from realign_core.motion.normalization import Normalizer, mean_std
    from realign_core.motion.quaternion import qrot, qyaw

    out = Path(out)
    for sub in ("new_joint_vecs", "new_joints", "texts"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    train_feats = []
    for cname, (kwargs, captions) in SYNTHETIC_CLASSES.items():
        for k in range(clips_per_class):
            kw = dict(kwargs)
            kw["speed"] = kw["speed"] * rng.uniform(0.85, 1.15)
            pos = walking_motion(frames=int(rng.integers(*frames)), scale=rng.uniform(0.9, 1.1), **kw)
            pos = qrot(qyaw(rng.uniform(0, 2 * np.pi)), pos)
            feats = joints_to_features(pos)
            clip_id = f"{cname}_{k:02d}"
            np.save(out / "new_joint_vecs" / f"{clip_id}.npy", feats)
            (out / "texts" / f"{clip_id}.txt").write_text("\n".join(caption_line(c) for c in captions) + "\n")
            split = "train" if k < clips_per_class * 2 // 3 else ("val" if k % 2 == 0 else "test")
            splits[split].append(clip_id)
            if split == "train":
                train_feats.append(feats)
    write_split_files(out, splits)
    Normalizer(*mean_std(train_feats)).save(out)
    return out
