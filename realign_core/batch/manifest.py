"""The output folder of a batch run: motion files and ``manifest.jsonl``, written so that a run can resume.

Per motion, files first (``export_motion``: ``NAME.npy`` joints (F, 22, 3) float32
metres, Y up, 20 fps; ``NAME.bvh``; ``NAME_smpl.npz``), then one JSON line in
``manifest.jsonl`` (flushed and fsynced).  A motion counts as done when its latest
manifest line has the same ``key`` (prompt, frames, seed, settings, model hash:
``plan.motion_key``) and all its files exist; a rerun skips those and redoes the rest.

A manifest line: ``row``, ``line`` (in the jobs CSV), ``name``, ``sample``, ``prompt``,
``frames``, ``seconds``, ``seed``, ``settings`` (sampler, steps, guidance strength/mu/eta/cfg),
``model`` (name, hash), ``armature``, ``start_frame``, ``files`` ({format: file name,
relative to the folder}), ``key``, ``timing`` (``batch``: index of the sampling run,
``batch_motions``, ``generate_s``: seconds of that run, ``worker``: host:pid, ``runner``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from realign_core.export.formats import FORMATS, export_motion

MANIFEST = "manifest.jsonl"


class Manifest:
    """``DIR/manifest.jsonl``: read what is done, append finished motions."""

    def __init__(self, out_dir: str | Path) -> None:
        self.dir = Path(out_dir)
        self.path = self.dir / MANIFEST
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            self._load()

    def _load(self) -> None:
        with self.path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    if fh.read().strip():   # only a torn last line (a killed run) is forgiven
                        raise ValueError(f"{self.path}, line {number}: not JSON; fix or delete the file") from None
                    break
                self.entries[entry["name"]] = entry

    def done(self, name: str, key: str, formats: tuple[str, ...]) -> bool:
        """Whether motion ``name`` is finished with this key and has every requested file."""
        entry = self.entries.get(name)
        if entry is None or entry.get("key") != key:
            return False
        files = entry.get("files", {})
        return all(fmt in files and (self.dir / files[fmt]).is_file() for fmt in formats)

    def append(self, entries: list[dict[str, Any]]) -> None:
        """Add lines (after their files are written); durable before this returns."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            for entry in entries:
                fh.write(json.dumps(entry, sort_keys=True) + "\n")
                self.entries[entry["name"]] = entry
            fh.flush()
            os.fsync(fh.fileno())


def check_formats(formats: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Requested formats (``npy`` always included, it is what Blender imports)."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"--formats: unknown format {unknown[0]!r}; choose from {', '.join(FORMATS)}")
    return tuple(dict.fromkeys(["npy", *formats]))


def write_motion(out_dir: Path, name: str, joints: np.ndarray, formats: tuple[str, ...]) -> dict[str, str]:
    """Write one motion's files -> {format: file name relative to ``out_dir``}."""
    paths = export_motion(np.asarray(joints, dtype=np.float32), out_dir / name, formats)
    return {fmt: path.name for fmt, path in paths.items()}


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """The latest entry per motion of a manifest file (or of ``DIR/manifest.jsonl``), in row order."""
    path = Path(path)
    manifest = Manifest(path if path.is_dir() else path.parent)
    if not manifest.path.is_file():
        raise FileNotFoundError(f"{manifest.path}: no manifest (run `realign batch` first)")
    return sorted(manifest.entries.values(), key=lambda e: (e["row"], e["sample"]))
