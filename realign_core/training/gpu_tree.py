"""What a device call sends and brings back, and how to make the working tree small enough.

A device call sends the checkout's tracked files, its untracked files that git does not ignore,
a ``shared/`` folder inside it, and the ignored paths named in ``carry`` -- at most 64 MiB.  The
shipped checkpoints alone are ~54 MB, so for the call ``stash_models`` moves the model folders the
GPU run does not read to a stash beside the repository (a rename: same file system, instant), with
a manifest of every file's size and SHA-256; ``restore_models`` moves them back and checks every
file against the manifest, refusing to overwrite anything that differs.

``rehearse`` runs the device command on this machine in a copy of exactly the travelling files,
with ``OUT`` set, and checks what it leaves in OUT against the limits of what comes back.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from realign_core.guidance.reward_bank import file_sha256

TREE_LIMIT = 64 * 2 ** 20           # bytes that may travel
BACK_FILE_LIMIT = 16 * 2 ** 20      # per file brought back
BACK_FILES = 8
BACK_TOTAL = 64 * 2 ** 20
BACK_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
STASH_FORMAT = "realign_gpu_stash/1"
MANIFEST = "manifest.json"


def repo_root(path: str | Path = ".") -> Path:
    out = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=path, capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        raise ValueError(f"{path}: not inside a git checkout ({out.stderr.strip()})")
    return Path(out.stdout.strip())


def _walk(path: Path) -> list[Path]:
    if path.is_symlink() or path.is_file():
        return [path]
    return [p for p in sorted(path.rglob("*")) if p.is_symlink() or p.is_file()]


def travelling_files(repo: Path, carry: tuple[str, ...] | list[str] = ()) -> list[Path]:
    """Every file a device call would send from ``repo`` (tracked files that exist, untracked files git does
    not ignore, ``shared/``, and the carried paths), as paths relative to ``repo``."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                         capture_output=True, check=True)
    names = {Path(n) for n in out.stdout.decode().split("\0") if n}
    found = {n for n in names if (repo / n).is_symlink() or (repo / n).is_file()}
    for extra in ["shared", *carry]:
        path = repo / extra
        if extra in carry and not (path.exists() or path.is_symlink()):
            raise FileNotFoundError(f"carry path {extra!r}: not found under {repo}")
        if path.exists():
            found.update(p.relative_to(repo) for p in _walk(path))
    return sorted(found)


def without(files: list[Path], leave_out: tuple[str, ...] | list[str] | list[Path]) -> list[Path]:
    """``files`` minus those under the folders ``leave_out`` (relative paths)."""
    gone = [Path(d).parts for d in leave_out]
    return [f for f in files if not any(f.parts[:len(g)] == g for g in gone)]


def tree_bytes(repo: Path, files: list[Path]) -> int:
    return sum((repo / f).lstat().st_size for f in files)


def _part(f: Path, carry: tuple[str, ...] | list[str]) -> str:
    """The row of ``size_report`` a file counts in: its carried path, ``models/ROOT/KIND``, or its top folder."""
    for c in carry:
        if f.parts[:len(Path(c).parts)] == Path(c).parts:
            return c
    if f.parts[0] == "models" and len(f.parts) > 3:
        return "/".join(f.parts[:3])
    return f.parts[0]


def size_report(repo: Path, carry: tuple[str, ...] | list[str] = (), leave_out: tuple[str, ...] | list[str] = ()
                ) -> dict[str, Any]:
    """Bytes that travel, by part (carried paths, ``models/ROOT/KIND``, top folders), and the margin;
    ``leave_out``: folders (relative to the repo) counted as already stashed."""
    files = without(travelling_files(repo, carry), leave_out)
    parts: dict[str, int] = {}
    for f in files:
        parts[_part(f, carry)] = parts.get(_part(f, carry), 0) + (repo / f).lstat().st_size
    total = sum(parts.values())
    return {"repo": str(repo), "carry": list(carry), "files": len(files), "bytes": total,
            "mib": round(total / 2 ** 20, 2), "limit_mib": TREE_LIMIT / 2 ** 20,
            "margin_mib": round((TREE_LIMIT - total) / 2 ** 20, 2), "fits": total <= TREE_LIMIT,
            "parts_mib": {k: round(v / 2 ** 20, 2) for k, v in sorted(parts.items(), key=lambda kv: -kv[1])}}


# ---------------------------------------------------------------------------------------------- stash
def stash_plan(models: Path, keep: tuple[str, ...] | list[str]) -> list[Path]:
    """The sub-folders of ``models`` that ``stash_models`` would move (all but ``keep``)."""
    return [d for d in sorted(models.iterdir()) if d.is_dir() and d.name not in keep]


def default_stash(repo: Path) -> Path:
    """Outside the repository, on the same file system: ``../.<repo name>_gpu_stash``."""
    return repo.parent / f".{repo.name}_gpu_stash"


def _inventory(folder: Path) -> dict[str, list]:
    return {str(p.relative_to(folder)): [p.stat().st_size, file_sha256(p)] for p in _walk(folder) if p.is_file()}


def stash_models(models: Path, keep: tuple[str, ...], stash: Path) -> dict[str, Any]:
    """Move every sub-folder of ``models`` not in ``keep`` into ``stash`` (manifest written first)."""
    models, stash = models.resolve(), stash.resolve()
    if (stash / MANIFEST).exists():
        raise ValueError(f"{stash / MANIFEST}: a stash is already in place; run `realign gpu restore` first")
    missing = [k for k in keep if not (models / k).is_dir()]
    if missing:
        raise FileNotFoundError(f"{models}: folders to keep {missing} are missing")
    moving = stash_plan(models, keep)
    stash.mkdir(parents=True, exist_ok=True)
    if os.stat(stash).st_dev != os.stat(models).st_dev:
        raise ValueError(f"{stash}: on another file system than {models}; choose a stash beside the repository")
    manifest = {"format": STASH_FORMAT, "models": str(models), "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                "entries": {d.name: _inventory(d) for d in moving}}
    tmp = stash / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(stash / MANIFEST)
    for d in moving:
        os.rename(d, stash / d.name)
    return manifest


@dataclass
class RestoreReport:
    restored: list[str]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def _differences(folder: Path, expected: dict[str, list]) -> list[str]:
    found = _inventory(folder) if folder.is_dir() else {}
    diffs = [f"{folder / k}: missing" for k in expected if k not in found]
    diffs += [f"{folder / k}: content differs from the manifest" for k in expected
              if k in found and found[k] != expected[k]]
    diffs += [f"{folder / k}: not in the manifest" for k in found if k not in expected]
    return diffs


def restore_models(stash: Path) -> RestoreReport:
    """Move every stashed folder back, checking each file; a folder that would clash or differs stays put."""
    stash = stash.resolve()
    path = stash / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no stash manifest (nothing stashed here)")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != STASH_FORMAT:
        raise ValueError(f"{path}: not a {STASH_FORMAT} manifest")
    models = Path(manifest["models"])
    restored, problems = [], []
    for name, expected in manifest["entries"].items():
        src, dst = stash / name, models / name
        if dst.exists() or dst.is_symlink():
            if not src.exists() and not _differences(dst, expected):
                restored.append(name)            # moved back by an earlier, interrupted restore
                continue
            problems.append(f"{dst}: exists already; {src} left in the stash (compare and move it by hand)")
            continue
        diffs = _differences(src, expected)
        if diffs:
            problems += diffs
            continue
        os.rename(src, dst)
        diffs = _differences(dst, expected)
        problems += diffs
        if not diffs:
            restored.append(name)
    if not problems:
        path.unlink()
        if stash.is_dir() and not any(stash.iterdir()):
            stash.rmdir()
    return RestoreReport(restored, problems)


# ------------------------------------------------------------------------------------------- rehearse
def out_problems(out: Path) -> list[str]:
    """What a device call would not bring back from ``out`` (count, size, depth, names)."""
    files = [p for p in _walk(out) if p != out]
    problems = []
    if len(files) > BACK_FILES:
        problems.append(f"{len(files)} files, at most {BACK_FILES} come back")
    total = sum(p.lstat().st_size for p in files)
    if total > BACK_TOTAL:
        problems.append(f"{total / 2 ** 20:.1f} MiB in all, at most {BACK_TOTAL / 2 ** 20:g}")
    for p in files:
        rel = p.relative_to(out)
        if p.lstat().st_size > BACK_FILE_LIMIT:
            problems.append(f"{rel}: {p.lstat().st_size / 2 ** 20:.1f} MiB, at most {BACK_FILE_LIMIT / 2 ** 20:g}")
        if len(rel.parts) > 3 or not all(BACK_NAME.match(part) for part in rel.parts) or p.is_symlink():
            problems.append(f"{rel}: too deep, a link, or a name outside [A-Za-z0-9._-]")
    return problems


def rehearse(repo: Path, carry: list[str], command: str, timeout: float, keep: Path | None = None,
             leave_out: tuple[str, ...] | list[str] | list[Path] = ()) -> dict[str, Any]:
    """Run ``command`` with bash in a copy of the travelling files (less ``leave_out``, e.g. the folders
    ``stash_models`` would move), ``python3`` = this interpreter, ``$OUT`` an empty folder; returns rc,
    output tail, OUT's files and what would not come back."""
    files = without(travelling_files(repo, carry), leave_out)
    work = Path(tempfile.mkdtemp(prefix="realign_rehearse_"))
    tree, out, bin_dir = work / "tree", keep or work / "out", work / "bin"
    for f in files:
        dst = tree / f
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / f, dst, follow_symlinks=False)
    out.mkdir(parents=True, exist_ok=True)
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python3").chmod(0o755)
    env = {**os.environ, "OUT": str(out), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": ""}
    start = time.perf_counter()
    try:
        run = subprocess.run(["bash", "-c", command], check=False, cwd=tree, env=env, capture_output=True, text=True,
                             timeout=timeout)
        rc, text = run.returncode, run.stdout + run.stderr
    except subprocess.TimeoutExpired as exc:
        rc, text = 124, f"{exc.stdout or ''}{exc.stderr or ''}\n(timed out after {timeout:g} s)"
    result = {"rc": rc, "seconds": round(time.perf_counter() - start, 1), "output_tail": text[-4000:],
              "tree_mib": round(tree_bytes(repo, files) / 2 ** 20, 2), "out": str(out),
              "out_files": {str(p.relative_to(out)): p.stat().st_size for p in _walk(out) if p.is_file()},
              "out_problems": out_problems(out)}
    shutil.rmtree(tree, ignore_errors=True)
    return result
