#!/usr/bin/env python3
"""Set up, run and test the project (stdlib only, so it runs before anything is installed).

    python3.11 build.py all     # set up .venv, then run the main job (dataset build + render)
    python3.11 build.py test    # set up .venv if needed, then run the whole test suite
    python3.11 build.py setup   # only create/refresh .venv
    python3.11 build.py demo    # only the main job

The environment pins torch==2.13.0 (a CPU wheel on machines without a GPU;
an unpinned torch would pull gigabytes of CUDA packages).  The code itself is
device-agnostic and uses CUDA when torch sees a GPU.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
SHARED_DATA = ROOT.parent / "shared" / "data"
DEMO_DATA = ROOT / "data" / "cmu_h3d"
DEMO_OUT = ROOT / "out"
TORCH_PIN = "torch==2.13.0"
STAMP = VENV / ".realign-setup"


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def run(cmd: list[str | Path], **kw) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kw)


def setup() -> None:
    """Create .venv and install the project with its test extras (idempotent)."""
    if sys.version_info[:2] < (3, 11):
        raise SystemExit(f"Python >= 3.11 is required, this is {sys.version.split()[0]}")
    if not venv_python().exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    inputs = (ROOT / "pyproject.toml").read_text() + TORCH_PIN
    if STAMP.exists() and STAMP.read_text() == inputs:
        print(f"{VENV} is up to date")
        return
    pip = [venv_python(), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    run(pip + [TORCH_PIN])
    run(pip + ["-e", ".[test]", TORCH_PIN])
    STAMP.write_text(inputs)


def demo() -> None:
    """Main job: build the training set from ../shared/data and render a clip of it."""
    realign = [venv_python(), "-m", "realign_core.cli"]
    if not SHARED_DATA.is_dir():
        raise SystemExit(f"{SHARED_DATA} is missing: the dataset build needs the shared data folder beside the repo")
    run(realign + ["data", "build", "--cmu", SHARED_DATA / "cmu_mocap", "--kitml", SHARED_DATA / "kitml",
                   "--humanml3d-index", SHARED_DATA / "humanml3d_index", "--out", DEMO_DATA])
    DEMO_OUT.mkdir(exist_ok=True)
    clip = DEMO_DATA / "new_joints" / "cmu_02_01_00.npy"
    run(realign + ["render", clip, "-o", DEMO_OUT / "cmu_02_01_00.gif"])


def test(pytest_args: list[str]) -> int:
    setup()
    return subprocess.call([str(venv_python()), "-m", "pytest", "-q", *pytest_args], cwd=ROOT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=["all", "setup", "demo", "test"])
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra arguments for pytest (test only)")
    args = parser.parse_args()
    if args.task == "test":
        return test(args.pytest_args)
    if args.task in ("all", "setup"):
        setup()
    if args.task in ("all", "demo"):
        demo()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
