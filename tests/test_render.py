"""Tests for realign_core.export.render (stick-figure GIF / MP4 / PNG and motion loading)."""
from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from realign_core.export import render
from realign_core.export.render import (
    RenderConfig,
    camera_basis,
    chain_colours,
    chain_side,
    load_motion_file,
    render_frame,
    render_motion,
    render_motions,
)
from realign_core.motion.skeleton import JOINT_INDEX, KINEMATIC_CHAINS, PARENTS, REFERENCE_OFFSETS

SMALL = RenderConfig(size=(2.0, 2.0), dpi=64)  # 128 x 128 px panels: fast
LEFT_ARM, RIGHT_ARM = KINEMATIC_CHAINS[4], KINEMATIC_CHAINS[3]
LEFT_LEG, RIGHT_LEG = KINEMATIC_CHAINS[1], KINEMATIC_CHAINS[0]


def _rot_x(angle: float) -> np.ndarray:
    """Rotation about world X by ``angle`` radians, (3, 3)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def walking_motion(n_frames: int = 30, speed: float = 1.2, fps: float = 20.0) -> np.ndarray:
    """Synthetic walk: HumanML3D rest pose facing +Z, moving along +Z.

    Legs and arms swing about X in opposite phase.  Returns (T, 22, 3) metres,
    feet roughly on y=0, left side at +X.
    """
    swing = {JOINT_INDEX["left_hip"]: 1, JOINT_INDEX["right_hip"]: -1,
             JOINT_INDEX["left_shoulder"]: -1, JOINT_INDEX["right_shoulder"]: 1}
    frames = []
    for t in range(n_frames):
        phase = 2 * np.pi * t / 20.0
        pos = np.zeros((22, 3))
        rot = [np.eye(3)] * 22
        for j in range(1, 22):
            p = PARENTS[j]
            rot[j] = rot[p] @ _rot_x(0.4 * swing[p] * np.sin(phase)) if p in swing else rot[p]
            pos[j] = pos[p] + rot[j] @ REFERENCE_OFFSETS[j]
        pos += np.array([0.0, -pos[:, 1].min(), speed * t / fps])
        frames.append(pos)
    return np.stack(frames)


def _colour_mask(img: np.ndarray, colour: str) -> np.ndarray:
    """Pixels (H, W) bool close in hue to the default left (blue) or right (red)."""
    r, g, b = (img[..., i].astype(int) for i in range(3))
    if colour == "blue":
        return (b - r > 60) & (b - g > 30)
    return (r - b > 60) & (r - g > 60)


# ---------------------------------------------------------------- colours / camera


def test_chain_sides_and_colours_follow_joint_names():
    assert chain_side(LEFT_LEG) == "left" and chain_side(LEFT_ARM) == "left"
    assert chain_side(RIGHT_LEG) == "right" and chain_side(RIGHT_ARM) == "right"
    assert chain_side(KINEMATIC_CHAINS[2]) == "centre"
    cfg = RenderConfig(left_colour="blue", right_colour="red", centre_colour="black")
    assert chain_colours(cfg) == ("red", "blue", "black", "red", "blue")


def test_camera_basis_is_a_rotation_with_y_up():
    for elev, azim in [(0, 0), (15, 30), (60, -120), (90, 180)]:
        b = camera_basis(elev, azim)
        np.testing.assert_allclose(b @ b.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(b) == pytest.approx(1.0)  # not a mirror
    front = camera_basis(0, 0)  # camera on +Z looking at a +Z-facing character
    np.testing.assert_allclose(front[0], [1, 0, 0], atol=1e-12)  # its left -> screen right
    np.testing.assert_allclose(front[1], [0, 1, 0], atol=1e-12)  # Y -> screen up


@pytest.mark.parametrize("azimuth, left_on_screen_right", [(0.0, True), (180.0, False)])
def test_left_limbs_drawn_blue_on_the_correct_side(azimuth, left_on_screen_right):
    cfg = RenderConfig(size=(3.0, 3.0), dpi=64, elevation=0.0, azimuth=azimuth,
                       floor_grid=False, show_trajectory=False, trail=0, line_width=4)
    img = render_frame(walking_motion(1), 0, config=cfg)
    assert img.shape == (192, 192, 3) and img.dtype == np.uint8
    blue, red = _colour_mask(img, "blue"), _colour_mask(img, "red")
    assert blue.sum() > 50 and red.sum() > 50
    blue_x, red_x = np.nonzero(blue)[1].mean(), np.nonzero(red)[1].mean()
    assert (blue_x > red_x) == left_on_screen_right


def test_swapped_colours_swap_the_picture():
    cfg = RenderConfig(size=(3.0, 3.0), dpi=64, elevation=0.0, azimuth=0.0,
                       floor_grid=False, show_trajectory=False, trail=0, line_width=4,
                       left_colour="#d62728", right_colour="#1f77b4")
    img = render_frame(walking_motion(1), 0, config=cfg)
    assert np.nonzero(_colour_mask(img, "red"))[1].mean() > np.nonzero(
        _colour_mask(img, "blue"))[1].mean()


def test_y_is_vertical_and_camera_follows_root():
    cfg = RenderConfig(size=(3.0, 3.0), dpi=64, elevation=0.0, azimuth=90.0,
                       floor_grid=False, show_trajectory=False, trail=0)
    motion = walking_motion(40)  # walks 2.4 m along +Z, across the side view
    centres = []
    for frame in (0, 39):
        img = render_frame(motion, frame, config=cfg)
        ys, xs = np.nonzero(_colour_mask(img, "blue") | _colour_mask(img, "red"))
        assert ys.max() - ys.min() > 2 * (xs.max() - xs.min())  # standing figure is tall
        centres.append(xs.mean())
    assert abs(centres[0] - centres[1]) < 0.1 * 192  # stays centred


def test_trail_ends_under_the_root():
    cfg = RenderConfig(size=(3.0, 3.0), dpi=64, elevation=20.0, azimuth=90.0,
                       floor_grid=False, show_trajectory=False, trail=10)
    img = render_frame(walking_motion(40), 39, config=cfg)
    r, g, b = (img[..., i].astype(int) for i in range(3))
    green_x = np.nonzero((g - r > 60) & (g - b > 60))[1]
    assert green_x.size > 20
    # side view: +Z is screen left, so the past lies to the right of the feet
    assert abs(green_x.min() - 96) < 20 and green_x.max() > 96 + 20


def test_floor_grid_is_fixed_in_the_world():
    cfg = RenderConfig(size=(3.0, 3.0), dpi=64, elevation=30.0, azimuth=60.0,
                       show_trajectory=False, trail=0, grid_spacing=0.5)
    # rigid rest pose gliding along +Z at 1.5 m/s: 20 frames = 1.5 m = 3 grid cells
    motion = walking_motion(1) + np.arange(21)[:, None, None] * np.array([0.0, 0.0, 0.075])

    def image(frame: int) -> np.ndarray:
        img = render_frame(motion, frame, config=cfg).astype(int)
        img[-30:, :100] = 0  # hide the clock text
        return img

    first = image(0)
    assert np.abs(image(20) - first).max() <= 2  # moved whole cells: same picture
    assert (np.abs(image(5) - first) > 20).sum() > 100  # moved 0.375 m: grid slid


def test_panel_has_equal_aspect():
    from matplotlib.figure import Figure

    cfg = RenderConfig(size=(5.0, 3.0), dpi=50)
    fig = Figure(figsize=(5, 3), dpi=50)
    ax = fig.add_axes((0, 0, 1, 1))
    render._Panel(ax, walking_motion(10), cfg, "", aspect=5 / 3)
    origin, ex, ey = ax.transData.transform([[0, 0], [1, 0], [0, 1]])
    assert np.linalg.norm(ex - origin) == pytest.approx(np.linalg.norm(ey - origin), rel=1e-6)


# ---------------------------------------------------------------- output files


def test_gif_has_one_frame_per_motion_frame(tmp_path):
    out = render_motion(walking_motion(30), tmp_path / "walk.gif", "walk", SMALL)
    assert out == tmp_path / "walk.gif" and out.stat().st_size > 5_000
    with Image.open(out) as im:
        assert im.format == "GIF" and im.size == (128, 128)
        assert im.n_frames == 30
        assert im.info["duration"] == 50  # 20 fps
    assert list(tmp_path.iterdir()) == [out]  # no temp files left


def test_max_frames_subsamples_and_keeps_duration(tmp_path):
    cfg = RenderConfig(size=(2.0, 2.0), dpi=64, max_frames=10)
    out = render_motion(walking_motion(30), tmp_path / "walk.gif", config=cfg)
    with Image.open(out) as im:
        assert im.n_frames == 10 and im.info["duration"] == 150


def test_mp4_is_h264_with_all_frames(tmp_path):
    import imageio_ffmpeg

    out = render_motion(walking_motion(24), tmp_path / "walk.mp4", "walk", SMALL)
    data = out.read_bytes()
    assert len(data) > 2_000 and data[4:8] == b"ftyp"
    proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(out),
                           "-map", "0:v", "-f", "null", "-"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "h264" in proc.stderr and "128x128" in proc.stderr
    assert int(re.findall(r"frame=\s*(\d+)", proc.stderr)[-1]) == 24


def test_png_contact_sheet(tmp_path):
    out = render_motion(walking_motion(30), tmp_path / "walk.png", "walk", SMALL)
    with Image.open(out) as im:
        im.load()
        assert im.format == "PNG" and im.size == (6 * 128, 128)
        arr = np.asarray(im.convert("RGB"))
    for col in range(6):  # every panel shows a figure in both colours
        panel = arr[:, col * 128:(col + 1) * 128]
        assert _colour_mask(panel, "blue").sum() > 10 and _colour_mask(panel, "red").sum() > 10


def test_png_single_still_for_one_frame(tmp_path):
    out = render_motion(walking_motion(1), tmp_path / "pose.png", config=SMALL)
    with Image.open(out) as im:
        assert im.size == (128, 128)


def test_side_by_side_shares_time_axis(tmp_path):
    motions = [walking_motion(12), walking_motion(20, speed=0.6)]
    out = render_motions(motions, tmp_path / "both.gif", ["fast", "slow"], SMALL)
    with Image.open(out) as im:
        assert im.size == (256, 128) and im.n_frames == 20
    sheet = render_motions(motions, tmp_path / "both.png", ["fast", "slow"], SMALL)
    with Image.open(sheet) as im:
        assert im.size == (6 * 128, 2 * 128)


@pytest.mark.parametrize("name", ["walk.avi", "walk", "missing_dir/walk.gif"])
def test_bad_output_paths_raise_and_write_nothing(tmp_path, name):
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / name))):
        render_motion(walking_motion(3), tmp_path / name, config=SMALL)
    assert list(tmp_path.iterdir()) == []


def test_output_path_that_is_a_directory(tmp_path):
    (tmp_path / "x.gif").mkdir()
    with pytest.raises(ValueError, match="directory"):
        render_motion(walking_motion(3), tmp_path / "x.gif", config=SMALL)


def test_bad_positions_raise(tmp_path):
    with pytest.raises(ValueError, match=r"\(5, 21, 3\)"):
        render_motion(np.zeros((5, 21, 3)), tmp_path / "a.gif", config=SMALL)
    bad = walking_motion(3)
    bad[1, 4, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        render_motion(bad, tmp_path / "a.gif", config=SMALL)
    with pytest.raises(ValueError, match="titles"):
        render_motions([walking_motion(3)], tmp_path / "a.gif", ["a", "b"], SMALL)
    assert list(tmp_path.iterdir()) == []


def test_writer_failure_leaves_no_file(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("writer exploded")

    monkeypatch.setattr(render, "_write_animation", boom)
    with pytest.raises(RuntimeError, match="exploded"):
        render_motion(walking_motion(3), tmp_path / "a.gif", config=SMALL)
    assert list(tmp_path.iterdir()) == []


def test_invalid_config_raises():
    with pytest.raises(ValueError, match="fps"):
        RenderConfig(fps=0)
    with pytest.raises(ValueError, match="max_frames"):
        RenderConfig(max_frames=0)


def test_rendering_does_not_touch_pyplot():
    render_frame(walking_motion(1), config=SMALL)
    plt = sys.modules.get("matplotlib.pyplot")
    assert plt is None or plt.get_fignums() == []


# ---------------------------------------------------------------- load_motion_file


def test_load_joints_roundtrip(tmp_path):
    motion = walking_motion(5).astype(np.float32)
    np.save(tmp_path / "m.npy", motion)
    loaded = load_motion_file(tmp_path / "m.npy")
    assert loaded.shape == (5, 22, 3) and loaded.dtype == np.float64
    np.testing.assert_allclose(loaded, motion)


@pytest.mark.parametrize("array, pattern", [
    (np.zeros((5, 21, 3)), r"\(5, 21, 3\)"),
    (np.zeros((5, 66)), r"\(5, 66\)"),
    (np.zeros((22, 3)), r"\(22, 3\)"),
    (np.zeros((0, 22, 3)), r"empty.*\(0, 22, 3\)"),
    (np.full((4, 22, 3), np.nan), r"\(4, 22, 3\).*NaN"),
    (np.array([["a"] * 3] * 22), "non-numeric"),
])
def test_load_rejects_bad_arrays(tmp_path, array, pattern):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(ValueError, match=pattern) as info:
        load_motion_file(path)
    assert str(path) in str(info.value)


def test_load_rejects_corrupt_and_foreign_files(tmp_path):
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"this is not a numpy file at all")
    truncated = tmp_path / "truncated.npy"
    np.save(truncated, walking_motion(5))
    truncated.write_bytes(truncated.read_bytes()[:200])
    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    npz = tmp_path / "archive.npy"
    with open(npz, "wb") as fh:
        np.savez(fh, joints=walking_motion(2))
    for path in (garbage, truncated, pickled, npz, tmp_path / "absent.npy",
                 tmp_path / "motion.txt"):
        with pytest.raises(ValueError, match=re.escape(str(path))):
            load_motion_file(path)


def test_load_features_recovers_the_joints(tmp_path):
    """A features .npy loads as the joints the representation recovers from it."""
    from realign_core.motion.features import features_to_joints, joints_to_features
    from tests.synthetic import walking_motion as walk

    features = joints_to_features(walk(frames=12))
    np.save(tmp_path / "f.npy", features)
    joints = load_motion_file(tmp_path / "f.npy")
    assert joints.shape == (11, 22, 3)
    assert np.allclose(joints, features_to_joints(features), atol=1e-6)
