"""Stick-figure previews of 22-joint motions: GIF, MP4 or a PNG contact sheet.

Conventions (see :mod:`realign_core.motion.skeleton`): positions are ``(T, 22, 3)``
metres, world Y up, 20 fps; a character facing +Z has its left side at +X.

Rendering uses matplotlib's Agg canvas directly (``Figure`` +
``FigureCanvasAgg``), so it never opens a window and never touches pyplot's
global state.  The 3D scene is projected orthographically by
:func:`camera_basis` onto plain 2D axes: world Y is always the screen's
vertical, both screen axes share one scale (equal aspect), and artists are
updated in place each frame, which keeps a 200-frame GIF to a few seconds.

The camera follows the root horizontally (the figure stays centred while the
floor grid and the root trajectory slide under it).  Left limbs are drawn in
``RenderConfig.left_colour`` (blue), right limbs in ``right_colour`` (red), so
a left/right mirroring bug is visible at a glance.

Output format is chosen by the extension of ``out_path``:

* ``.gif`` - animation via matplotlib's Pillow writer;
* ``.mp4`` - H.264 animation via the ffmpeg binary of ``imageio_ffmpeg``;
* ``.png`` - a still contact sheet of ``sheet_frames`` evenly spaced frames
  (a single still when the motion has one frame).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np
from matplotlib import animation
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from realign_core.motion.skeleton import JOINT_NAMES, KINEMATIC_CHAINS, NUM_JOINTS

__all__ = [
    "RenderConfig",
    "render_motion",
    "render_motions",
    "render_frame",
    "load_motion_file",
    "camera_basis",
    "chain_side",
    "chain_colours",
]

FORMATS: dict[str, str] = {".gif": "gif", ".mp4": "mp4", ".png": "png"}
FEATURE_DIM = 263  # HumanML3D feature width


@dataclass(frozen=True)
class RenderConfig:
    """Rendering options.

    fps: frames per second of the source motion (and of the output, unless
        ``max_frames`` forces temporal subsampling).
    size: (width, height) of one panel in inches; pixels = size * dpi, rounded
        to even numbers (H.264 needs even dimensions).
    dpi: pixels per inch.
    elevation: camera angle above the horizontal, degrees.
    azimuth: camera angle around world Y, degrees; 0 = camera in front of a
        character facing +Z, positive swings the camera toward its left (+X);
        180 = view from behind.
    trail: number of past root positions highlighted on the floor; 0 = none.
    show_trajectory: draw the whole root path on the floor (faint).
    floor_grid: draw a floor grid (it is fixed in the world, so it slides
        under the root-following camera).
    grid_spacing: grid line spacing, metres.
    left_colour / right_colour / centre_colour: limb colours.
    floor_colour / trajectory_colour / background: scene colours.
    line_width: limb line width, points.  joint_size: joint marker size, points.
    max_frames: cap on animation frames; longer motions are subsampled with a
        constant stride and the output fps divided by it (duration kept).
    sheet_frames: number of evenly spaced frames in a PNG contact sheet.
    """

    fps: float = 20.0
    size: tuple[float, float] = (4.0, 4.0)
    dpi: int = 80
    elevation: float = 15.0
    azimuth: float = 30.0
    trail: int = 20
    show_trajectory: bool = True
    floor_grid: bool = True
    grid_spacing: float = 0.5
    left_colour: str = "#1f77b4"
    right_colour: str = "#d62728"
    centre_colour: str = "#404040"
    floor_colour: str = "#c8c8c8"
    trajectory_colour: str = "#2ca02c"
    background: str = "white"
    line_width: float = 2.5
    joint_size: float = 3.0
    max_frames: int = 400
    sheet_frames: int = 6

    def __post_init__(self) -> None:
        checks = {
            "fps": self.fps > 0,
            "size": len(self.size) == 2 and min(self.size) > 0,
            "dpi": self.dpi > 0,
            "trail": self.trail >= 0,
            "grid_spacing": self.grid_spacing > 0,
            "max_frames": self.max_frames >= 1,
            "sheet_frames": self.sheet_frames >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"RenderConfig: invalid {', '.join(bad)}: {self}")

    def panel_pixels(self) -> tuple[int, int]:
        """Panel (width, height) in pixels, each rounded to an even number >= 16."""
        width, height = (max(16, 2 * round(s * self.dpi / 2)) for s in self.size)
        return width, height


# --------------------------------------------------------------------------
# Skeleton colours and camera geometry
# --------------------------------------------------------------------------


def chain_side(chain: Sequence[int]) -> str:
    """'left', 'right' or 'centre' for a kinematic chain, from its joint names.

    The branching joint (chain[0], e.g. pelvis or spine3) is ignored.
    """
    names = [JOINT_NAMES[j] for j in chain[1:]]
    left = sum(n.startswith("left_") for n in names)
    right = sum(n.startswith("right_") for n in names)
    if left > right:
        return "left"
    if right > left:
        return "right"
    return "centre"


def chain_colours(config: RenderConfig = RenderConfig()) -> tuple[str, ...]:
    """Colour of each chain of ``KINEMATIC_CHAINS`` (same order)."""
    by_side = {"left": config.left_colour, "right": config.right_colour,
               "centre": config.centre_colour}
    return tuple(by_side[chain_side(c)] for c in KINEMATIC_CHAINS)


def camera_basis(elevation: float, azimuth: float) -> np.ndarray:
    """Orthographic camera basis, (3, 3): rows are screen-right, screen-up and
    toward-camera unit vectors in world coordinates (Y up).

    ``points @ basis.T`` gives (screen_x, screen_y, depth) in metres; larger
    depth is closer to the camera.  Angles in degrees (see RenderConfig).
    The basis is a proper rotation, so the picture is never mirrored.
    """
    e, a = math.radians(elevation), math.radians(azimuth)
    toward = np.array([math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)])
    right = np.array([math.cos(a), 0.0, -math.sin(a)])
    up = np.cross(toward, right)
    return np.stack([right, up, toward])


def _check_positions(positions: np.ndarray, name: str) -> np.ndarray:
    """Validate joints (T, 22, 3) with T >= 1, all finite; returns float64."""
    try:
        arr = np.asarray(positions, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: not a numeric array ({exc})") from exc
    if arr.ndim != 3 or arr.shape[1:] != (NUM_JOINTS, 3) or arr.shape[0] == 0:
        raise ValueError(f"{name}: expected joint positions of shape (T, {NUM_JOINTS}, 3) "
                         f"with T >= 1, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: positions of shape {arr.shape} contain NaN or inf")
    return arr


# --------------------------------------------------------------------------
# One panel: the artists of one motion on one Axes
# --------------------------------------------------------------------------


class _Panel:
    """Artists of one motion on one axes, updated in place by :meth:`show`."""

    def __init__(self, ax: Axes, positions: np.ndarray, config: RenderConfig,
                 title: str, aspect: float) -> None:
        """positions: (T, 22, 3) m, validated; aspect: axes width / height in pixels."""
        self.ax, self.config, self.n_frames = ax, config, positions.shape[0]
        basis = camera_basis(config.elevation, config.azimuth)
        floor = float(positions[..., 1].min())
        root_h = positions[:, 0, :] * np.array([1.0, 0.0, 1.0])  # (T, 3) on y=0
        self.root_h = root_h
        # Everything is projected once; per frame we only subtract the root.
        self.joints = (positions - root_h[:, None, :]) @ basis.T  # (T, 22, 3)
        path = root_h + np.array([0.0, floor, 0.0])
        self.path = path @ basis.T  # (T, 3)
        self.root_proj = root_h @ basis.T  # (T, 3)
        self.basis, self.floor = basis, floor
        self._set_view(aspect)
        self._make_grid()
        self._make_artists(title)

    def _set_view(self, aspect: float) -> None:
        """Fixed root-relative screen limits with equal scale on both axes."""
        pts = self.joints[..., :2].reshape(-1, 2)
        floor_pt = (np.array([0.0, self.floor, 0.0]) @ self.basis.T)[:2]
        pts = np.vstack([pts, floor_pt])
        half_w = np.abs(pts[:, 0]).max()
        v_lo, v_hi = pts[:, 1].min(), pts[:, 1].max()
        half_h = 0.5 * (v_hi - v_lo)
        margin = 0.12 * max(half_w, half_h) + 0.1
        half_w, half_h = max(half_w + margin, 0.5), max(half_h + 1.5 * margin, 0.5)
        half_w, half_h = max(half_w, half_h * aspect), max(half_h, half_w / aspect)
        v_mid = 0.5 * (v_lo + v_hi) + 0.25 * margin  # head room for the title
        self.half_w, self.half_h = half_w, half_h
        self.ax.set_xlim(-half_w, half_w)
        self.ax.set_ylim(v_mid - half_h, v_mid + half_h)

    def _make_grid(self) -> None:
        """Base grid segments around the origin on the floor, projected (L, 2, 2)."""
        s = self.config.grid_spacing
        n = int(math.ceil(1.5 * math.hypot(self.half_w, self.half_h) / s)) + 1
        ticks = np.arange(-n, n + 1) * s
        ext = n * s
        segs = [[[t, self.floor, -ext], [t, self.floor, ext]] for t in ticks]
        segs += [[[-ext, self.floor, t], [ext, self.floor, t]] for t in ticks]
        self.grid_base = (np.array(segs) @ self.basis.T)[..., :2]

    def _make_artists(self, title: str) -> None:
        """Create the grid, path, trail, limb lines and labels (empty data)."""
        cfg, ax = self.config, self.ax
        self.grid = LineCollection([], colors=cfg.floor_colour, linewidths=0.8, zorder=0)
        self.grid.set_visible(cfg.floor_grid)
        ax.add_collection(self.grid)
        (self.path_line,) = ax.plot([], [], color=cfg.trajectory_colour, lw=1.0,
                                    alpha=0.45, zorder=1)
        self.path_line.set_visible(cfg.show_trajectory)
        (self.trail_line,) = ax.plot([], [], color=cfg.trajectory_colour, lw=2.2, zorder=1.5)
        self.trail_line.set_visible(cfg.trail > 0)
        self.limbs = [ax.plot([], [], color=c, lw=cfg.line_width, marker="o",
                              markersize=cfg.joint_size, solid_capstyle="round")[0]
                      for c in chain_colours(cfg)]
        ax.text(0.5, 0.97, title, transform=ax.transAxes, ha="center", va="top",
                fontsize=10)
        self.clock = ax.text(0.03, 0.03, "", transform=ax.transAxes, ha="left",
                             va="bottom", fontsize=8, family="monospace", color="0.3")

    def show(self, frame: int) -> None:
        """Update all artists to ``frame`` (clamped to the last frame: hold)."""
        t = min(frame, self.n_frames - 1)
        offset = self.root_proj[t, :2]
        if self.config.floor_grid:
            s = self.config.grid_spacing
            snapped = np.round(self.root_h[t] / s) * s
            shift = ((snapped - self.root_h[t]) @ self.basis.T)[:2]
            self.grid.set_segments(self.grid_base + shift)
        path = self.path[:, :2] - offset
        if self.config.show_trajectory:
            self.path_line.set_data(path[:, 0], path[:, 1])
        if self.config.trail > 0:
            tail = path[max(0, t - self.config.trail): t + 1]
            self.trail_line.set_data(tail[:, 0], tail[:, 1])
        self._show_limbs(self.joints[t])
        self.clock.set_text(f"{t / self.config.fps:5.2f} s  {t + 1}/{self.n_frames}")

    def _show_limbs(self, joints: np.ndarray) -> None:
        """joints: (22, 3) projected; nearer chains get a higher zorder."""
        depth = [joints[list(c), 2].mean() for c in KINEMATIC_CHAINS]
        for rank, k in enumerate(np.argsort(depth)):
            chain = list(KINEMATIC_CHAINS[k])
            line = self.limbs[k]
            line.set_data(joints[chain, 0], joints[chain, 1])
            line.set_zorder(3 + rank)


# --------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------


def _new_figure(rows: int, cols: int, config: RenderConfig) -> Figure:
    """An Agg figure of rows x cols panels, each ``config.panel_pixels()``."""
    w, h = config.panel_pixels()
    fig = Figure(figsize=(cols * w / config.dpi, rows * h / config.dpi), dpi=config.dpi,
                 facecolor=config.background)
    FigureCanvasAgg(fig)
    return fig


def _add_panel(fig: Figure, row: int, col: int, rows: int, cols: int,
               positions: np.ndarray, title: str, config: RenderConfig) -> _Panel:
    """Axes filling grid cell (row, col) with a panel for ``positions``."""
    ax = fig.add_axes((col / cols, 1 - (row + 1) / rows, 1 / cols, 1 / rows))
    ax.set_axis_off()
    ax.set_facecolor(config.background)
    w, h = config.panel_pixels()
    return _Panel(ax, positions, config, title, aspect=w / h)


def render_frame(positions: np.ndarray, frame: int = 0, title: str = "",
                 config: RenderConfig = RenderConfig()) -> np.ndarray:
    """Render one frame to an RGB image.

    positions: (T, 22, 3) metres.  Returns (H, W, 3) uint8 with
    (W, H) = ``config.panel_pixels()``.
    """
    arr = _check_positions(positions, "positions")
    if not 0 <= frame < arr.shape[0]:
        raise ValueError(f"frame {frame} out of range for {arr.shape[0]} frames")
    fig = _new_figure(1, 1, config)
    panel = _add_panel(fig, 0, 0, 1, 1, arr, title, config)
    panel.show(frame)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def _check_out_path(out_path: str | os.PathLike) -> Path:
    """Validate an output path: known extension, existing writable directory."""
    path = Path(out_path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"{path}: unsupported output extension {path.suffix!r}; "
                         f"use one of {', '.join(FORMATS)}")
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, expected a file path")
    parent = path.parent
    if not parent.is_dir():
        raise ValueError(f"{path}: output directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{path}: output directory {parent} is not writable")
    return path


def _movie_writer(kind: str, fps: float) -> animation.AbstractMovieWriter:
    """Pillow writer for GIF, ffmpeg (imageio_ffmpeg's binary) H.264 for MP4."""
    if kind == "gif":
        return animation.PillowWriter(fps=fps)
    return animation.FFMpegWriter(fps=fps, codec="h264",
                                  extra_args=["-pix_fmt", "yuv420p"])


def _write_animation(fig: Figure, panels: list[_Panel], frames: Sequence[int],
                     path: Path, kind: str, fps: float, dpi: int) -> None:
    """Draw ``frames`` (source indices) into an animation file at ``path``."""
    rc = {}
    if kind == "mp4":
        import imageio_ffmpeg  # lazy: only MP4 needs it

        rc["animation.ffmpeg_path"] = imageio_ffmpeg.get_ffmpeg_exe()
    with matplotlib.rc_context(rc):
        writer = _movie_writer(kind, fps)
        with writer.saving(fig, str(path), dpi=dpi):
            for f in frames:
                for panel in panels:
                    panel.show(f)
                writer.grab_frame()


def _sheet_frames(n_frames: int, count: int) -> list[int]:
    """Up to ``count`` distinct, evenly spaced frame indices in [0, n_frames)."""
    return sorted(set(np.linspace(0, n_frames - 1, count).round().astype(int).tolist()))


def _write_sheet(motions: list[np.ndarray], titles: list[str], path: Path,
                 config: RenderConfig) -> None:
    """PNG contact sheet: one row per motion, one column per sampled time."""
    frames = _sheet_frames(max(m.shape[0] for m in motions), config.sheet_frames)
    rows, cols = len(motions), len(frames)
    fig = _new_figure(rows, cols, config)
    for r, (motion, title) in enumerate(zip(motions, titles)):
        for c, f in enumerate(frames):
            _add_panel(fig, r, c, rows, cols, motion, title if c == 0 else "",
                       config).show(f)
    fig.savefig(str(path), format="png", dpi=config.dpi, facecolor=config.background)


def _temp_path(path: Path) -> Path:
    """Hidden sibling of ``path`` (same extension) for an atomic write."""
    return path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix.lower()}")


def render_motions(motions: Sequence[np.ndarray], out_path: str | os.PathLike,
                   titles: Sequence[str] | None = None,
                   config: RenderConfig = RenderConfig()) -> Path:
    """Render several motions side by side with a shared time axis.

    motions: sequence of (T_i, 22, 3) arrays in metres (Y up); shorter motions
    hold their last frame.  out_path: .gif, .mp4 (animations, one panel per
    motion) or .png (contact sheet, one row per motion).  Written atomically:
    on any error no (partial) file is left at ``out_path``.
    Returns ``out_path`` as a Path.  Raises ValueError for bad inputs/paths.
    """
    path = _check_out_path(out_path)
    if len(motions) == 0:
        raise ValueError(f"{path}: no motions to render")
    arrays = [_check_positions(m, f"motion {i}") for i, m in enumerate(motions)]
    titles = [""] * len(arrays) if titles is None else [str(t) for t in titles]
    if len(titles) != len(arrays):
        raise ValueError(f"{path}: {len(titles)} titles for {len(arrays)} motions")
    kind = FORMATS[path.suffix.lower()]
    tmp = _temp_path(path)
    try:
        if kind == "png":
            _write_sheet(arrays, titles, tmp, config)
        else:
            _render_animation(arrays, titles, tmp, kind, config)
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise RuntimeError(f"{path}: the {kind} writer produced no data")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _render_animation(arrays: list[np.ndarray], titles: list[str], path: Path,
                      kind: str, config: RenderConfig) -> None:
    """Side-by-side animation; subsampled to at most ``config.max_frames``."""
    n_frames = max(a.shape[0] for a in arrays)
    stride = math.ceil(n_frames / config.max_frames)
    fig = _new_figure(1, len(arrays), config)
    panels = [_add_panel(fig, 0, i, 1, len(arrays), a, t, config)
              for i, (a, t) in enumerate(zip(arrays, titles))]
    _write_animation(fig, panels, range(0, n_frames, stride), path, kind,
                     config.fps / stride, config.dpi)


def render_motion(positions: np.ndarray, out_path: str | os.PathLike, title: str = "",
                  config: RenderConfig = RenderConfig()) -> Path:
    """Render one motion (T, 22, 3) metres to ``out_path`` (.gif, .mp4 or .png).

    See :func:`render_motions`.  Returns ``out_path`` as a Path.
    """
    return render_motions([positions], out_path, [title], config)


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def load_motion_file(path: str | os.PathLike) -> np.ndarray:
    """Load a motion from a .npy file as joint positions (T, 22, 3) float64, metres.

    Accepted contents:

    * joints, shape (T, 22, 3), metres, Y up;
    * HumanML3D features, shape (T, 263), **un-normalised** (raw features, as
      written by the HumanML3D pipeline's ``new_joint_vecs``), converted with
      ``realign_core.motion.features.features_to_joints``.  Normalised features
      ((x - mean) / std) are NOT supported: they have the same shape and cannot
      be told apart reliably, so de-normalise them first.

    Raises ValueError naming the file (and the shape, when one was read) for
    a missing, unreadable or corrupt file, a non-numeric or empty array, NaN
    or inf values, or any other shape.
    """
    p = Path(path)
    arr = _read_npy(p)
    if arr.ndim == 3 and arr.shape[1:] == (NUM_JOINTS, 3):
        return arr.astype(np.float64)
    if arr.ndim == 2 and arr.shape[1] == FEATURE_DIM:
        return _features_file_to_joints(arr, p)
    raise ValueError(f"{p}: unsupported array shape {arr.shape}; expected joints "
                     f"(T, {NUM_JOINTS}, 3) or HumanML3D features (T, {FEATURE_DIM})")


def _read_npy(p: Path) -> np.ndarray:
    """Read a plain numeric, non-empty, finite array from a .npy file."""
    if p.suffix.lower() != ".npy":
        raise ValueError(f"{p}: expected a .npy file")
    if not p.is_file():
        raise ValueError(f"{p}: no such file")
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{p}: cannot read as a .npy array ({exc})") from exc
    if not isinstance(arr, np.ndarray):  # e.g. an .npz archive renamed to .npy
        getattr(arr, "close", lambda: None)()
        raise ValueError(f"{p}: not a single .npy array ({type(arr).__name__})")
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{p}: non-numeric dtype {arr.dtype} with shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{p}: empty array of shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{p}: array of shape {arr.shape} contains NaN or inf")
    return np.asarray(arr)


def _features_file_to_joints(features: np.ndarray, p: Path) -> np.ndarray:
    """(T, 263) raw HumanML3D features -> validated joints (T, 22, 3) float64."""
    from realign_core.motion.features import features_to_joints  # lazy: written separately

    joints = np.asarray(features_to_joints(features.astype(np.float64)), dtype=np.float64)
    expected = (features.shape[0], NUM_JOINTS, 3)
    if joints.shape != expected or not np.isfinite(joints).all():
        raise ValueError(f"{p}: features of shape {features.shape} converted to invalid "
                         f"joints (shape {joints.shape}, expected {expected}, or non-finite)")
    return joints
