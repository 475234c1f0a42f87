"""Assemble rendered RGBA frames (``frame_0000.png`` ...) into a looping GIF on white (needs Pillow: the main .venv).

    .venv/bin/python blender_addon/scripts/frames_to_gif.py out/demo/gif_frames out/demo/walk_wave_blender.gif \\
        --fps 10

Run by ``build.py demo`` after ``bake_demo.py --gif-frames``: Blender's Python
has no GIF writer and no Pillow.  One shared adaptive palette for all frames
keeps the file small and the colours steady; prints frames, size and bytes.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image


def load_frames(folder: Path) -> list[Image.Image]:
    """The folder's frame_*.png in order, composited onto white, RGB."""
    paths = sorted(folder.glob("frame_*.png"))
    if not paths:
        raise SystemExit(f"{folder}: no frame_*.png to assemble")
    frames = []
    for path in paths:
        with Image.open(path) as img:
            rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        frames.append(Image.alpha_composite(white, rgba).convert("RGB"))
    return frames


def write_gif(frames: list[Image.Image], out: Path, fps: float, colours: int = 64) -> Path:
    """Quantise every frame to one palette taken from a montage of a few frames and save a looping GIF."""
    picks = frames[:: max(1, len(frames) // 6)][:6]
    w, h = picks[0].size
    montage = Image.new("RGB", (w * len(picks), h))
    for k, frame in enumerate(picks):
        montage.paste(frame, (k * w, 0))
    palette = montage.quantize(colours, method=Image.Quantize.MEDIANCUT)
    quantised = [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    out.parent.mkdir(parents=True, exist_ok=True)
    quantised[0].save(out, save_all=True, append_images=quantised[1:], duration=round(1000 / fps), loop=0,
                      optimize=True, disposal=1)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("frames", type=Path, help="folder of frame_*.png")
    parser.add_argument("out", type=Path, help="the GIF to write")
    parser.add_argument("--fps", type=float, default=10.0, help="playback frames per second")
    args = parser.parse_args(argv)
    frames = load_frames(args.frames)
    out = write_gif(frames, args.out, args.fps)
    print(f"wrote {out}: {len(frames)} frames {frames[0].size[0]}x{frames[0].size[1]} at {args.fps:g} fps, "
          f"{out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
