#!/usr/bin/env python3
"""Set up, run and test the project (stdlib only, so it runs before anything is installed).

    python3.11 build.py all     # set up .venv, then run the main job (dataset build + render, generate a motion
                                # with the shipped models, build the add-on, bake it in bpy onto two rigs + picture)
    python3.11 build.py test    # set up .venv if needed, run the whole test suite, then the Blender tests
                                # in bpy 5.0.1 and 4.5.15 (each in its own venv)
    python3.11 build.py setup   # only create/refresh .venv
    python3.11 build.py demo    # only the main job
    python3.11 build.py         # = addon: build and validate dist/realign_blender-<version>.zip
    python3.11 build.py blender-test [pytest args]   # only the Blender tests, in both bpy versions
    python3.11 build.py blender-bench [--models DIR] [--steps N] [--bpy 50|45]
                                # time Generate click -> keyed Action (9.8 s motion) against a real server

The environment pins torch==2.13.0 (a CPU wheel on machines without a GPU;
an unpinned torch would pull gigabytes of CUDA packages).  The code itself is
device-agnostic and uses CUDA when torch sees a GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
SHARED_DATA = ROOT.parent / "shared" / "data"
DEMO_DATA = ROOT / "data" / "cmu_h3d"
DEMO_OUT = ROOT / "out"
TORCH_PIN = "torch==2.13.0"
STAMP = VENV / ".realign-setup"
ADDON_SRC = ROOT / "blender_addon" / "realign_blender"
ADDON_STAGE = ROOT / "build" / "addon" / "realign_blender"
CLIENT_SRC = ROOT / "server" / "client.py"
# Files the add-on vendors (one source each, never committed under blender_addon/): staged name -> source.
# The protocol client; the 22-joint skeleton and the kinematic measures (numpy only, relative imports).
ADDON_VENDORED = {
    "client.py": CLIENT_SRC,
    "skeleton.py": ROOT / "realign_core" / "motion" / "skeleton.py",
    "kinematics.py": ROOT / "realign_core" / "motion" / "kinematics.py",
}
DIST = ROOT / "dist"
# bpy from PyPI pins numpy<2, so each Blender version gets its own environment.
BPY_VENVS = {"5.0.1": ROOT / ".venv-bpy50", "4.5.15": ROOT / ".venv-bpy45"}
BLENDER_TESTS = ROOT / "tests" / "blender"
DEMO_PROMPT = "a person walks forward and waves with the right hand."
DEMO_MOTION = DEMO_OUT / "demo" / "walk_wave"     # prefix of realign generate's files
DEMO_MODELS = "models/default"
BAKE_SCRIPT = ROOT / "blender_addon" / "scripts" / "bake_demo.py"
BENCH_SCRIPT = ROOT / "blender_addon" / "scripts" / "bench_generate.py"
BENCH_BPY = {"50": "5.0.1", "45": "4.5.15"}
DEMO_PICTURE = ROOT / "docs" / "img" / "retarget_demo.png"


def venv_python(venv_dir: Path = VENV) -> Path:
    return venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


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
    """Main job: build the training set from ../shared/data, render a clip of it, generate a motion with the
    shipped models, build the add-on and bake the motion headlessly in bpy onto two rigs (+ a picture)."""
    realign = [venv_python(), "-m", "realign_core.cli"]
    if not SHARED_DATA.is_dir():
        raise SystemExit(f"{SHARED_DATA} is missing: the dataset build needs the shared data folder beside the repo")
    times = {}
    start = time.monotonic()
    run(realign + ["data", "build", "--cmu", SHARED_DATA / "cmu_mocap", "--kitml", SHARED_DATA / "kitml",
                   "--humanml3d-index", SHARED_DATA / "humanml3d_index", "--out", DEMO_DATA])
    DEMO_OUT.mkdir(exist_ok=True)
    clip = DEMO_DATA / "new_joints" / "cmu_02_01_00.npy"
    run(realign + ["render", clip, "-o", DEMO_OUT / "cmu_02_01_00.gif"])
    times["dataset build + clip render"] = time.monotonic() - start
    start = time.monotonic()
    DEMO_MOTION.parent.mkdir(parents=True, exist_ok=True)
    run(realign + ["generate", DEMO_PROMPT, "--models", DEMO_MODELS, "--seconds", "6", "--seed", "0", "--gif",
                   "-o", DEMO_MOTION])
    times["generate (default strength)"] = time.monotonic() - start
    report = bake_demo(build_addon(), times)
    print_demo_summary(report, times)


def bake_demo(zip_path: Path, times: dict[str, float]) -> dict:
    """Bake the generated motion onto the ReAlign skeleton and a Mixamo-style rig in bpy 5.0.1; copy the picture."""
    python = setup_blender("5.0.1")
    out = DEMO_MOTION.parent
    report_path = out / "walk_wave_bake.json"
    start = time.monotonic()
    run([python, BAKE_SCRIPT, "--zip", zip_path, "--motion", DEMO_MOTION.with_suffix(".npy"), "--prompt", DEMO_PROMPT,
         "--seed", "0", "--model", DEMO_MODELS, "--blend", out / "walk_wave.blend",
         "--png", out / "retarget_demo.png", "--report", report_path])
    times["bpy: install add-on, bake, save, Cycles render"] = time.monotonic() - start
    DEMO_PICTURE.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(out / "retarget_demo.png", DEMO_PICTURE)
    return json.loads(report_path.read_text())


def print_demo_summary(report: dict, times: dict[str, float]) -> None:
    """What the main job wrote and how long each part took."""
    rel = lambda p: Path(p).resolve().relative_to(ROOT)
    frames = report["frames"]
    print("\nmain job done:")
    print(f"  training set       {rel(DEMO_DATA)}/  (clip GIF {rel(DEMO_OUT / 'cmu_02_01_00.gif')})")
    print(f"  generated motion   {rel(DEMO_MOTION)}.npy / _features.npy / .bvh / .gif: {frames} frames "
          f"({frames / 20:.1f} s at 20 fps), \"{DEMO_PROMPT}\" seed 0")
    for rig in report["rigs"]:
        print(f"  baked              {rig['armature']}: Action \"{rig['action']}\" + NLA strip, frames "
              f"{rig['frame_start']:.0f}-{rig['frame_end']:.0f}, {rig['bones_driven']} bones driven")
    print(f"  .blend             {rel(report['blend'])} (Blender {report['blender']}; bake {report['bake_s']:.2f} s)")
    print(f"  picture            {rel(report['png'])} -> {rel(DEMO_PICTURE)} (Cycles CPU, {report['render_s']:.0f} s)")
    for what, seconds in times.items():
        print(f"  time               {what}: {seconds:.1f} s")


def setup_blender(version: str) -> Path:
    """Create the venv with bpy==version and pytest (idempotent); returns its python."""
    venv_dir = BPY_VENVS[version]
    stamp = venv_dir / ".realign-setup"
    if not venv_python(venv_dir).exists():
        venv.EnvBuilder(with_pip=True).create(venv_dir)
    wanted = f"bpy=={version} pytest"
    if not (stamp.exists() and stamp.read_text() == wanted):
        run([venv_python(venv_dir), "-m", "pip", "install", "--disable-pip-version-check", "-q", *wanted.split()])
        stamp.write_text(wanted)
    return venv_python(venv_dir)


def find_extension_tool() -> Path | None:
    """blender_ext.py, Blender's extension builder/validator shipped inside the bpy wheel."""
    for venv_dir in BPY_VENVS.values():
        hits = sorted(venv_dir.glob("lib*/python3*/site-packages/bpy/*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        hits += sorted(venv_dir.glob("Lib/site-packages/bpy/*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if hits:
            return hits[-1]
    return None


def addon_version() -> str:
    return tomllib.loads((ADDON_SRC / "blender_manifest.toml").read_text())["version"]


def stage_addon(stage: Path = ADDON_STAGE) -> Path:
    """Copy the add-on to ``stage`` (build/addon/realign_blender), adding the ``ADDON_VENDORED`` files:
    server/client.py as client.py, realign_core/motion/skeleton.py and kinematics.py (one source each)."""
    for name, src in ADDON_VENDORED.items():
        if not src.exists():
            raise SystemExit(f"{src} is missing: the add-on vendors it as {name}")
        if (ADDON_SRC / name).exists():
            raise SystemExit(f"{ADDON_SRC / name} must not exist: build.py vendors {src.relative_to(ROOT)} as {name}")
    shutil.rmtree(stage, ignore_errors=True)
    shutil.copytree(ADDON_SRC, stage, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name, src in ADDON_VENDORED.items():
        shutil.copy2(src, stage / name)
    return stage


def build_addon(install_tool: bool = True) -> Path:
    """Build dist/realign_blender-<version>.zip and validate it with Blender's extension tool."""
    stage = stage_addon()
    DIST.mkdir(exist_ok=True)
    out = DIST / f"realign_blender-{addon_version()}.zip"
    out.unlink(missing_ok=True)
    tool = find_extension_tool()
    if tool is None and install_tool:
        setup_blender("5.0.1")
        tool = find_extension_tool()
    if tool is None:
        print("warning: Blender's extension tool (inside the bpy wheel) is unavailable; zip built unvalidated")
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(stage.rglob("*")):
                if path.is_file():
                    zf.write(path, path.relative_to(stage).as_posix())
        return out
    run([sys.executable, tool, "build", "--source-dir", stage, "--output-filepath", out])
    run([sys.executable, tool, "validate", out])
    print(f"built and validated {out.relative_to(ROOT)}")
    return out


def prepare_blender() -> Path:
    """Both bpy environments and the validated zip (the tests of either suite need them)."""
    for version in BPY_VENVS:
        setup_blender(version)
    return build_addon()


def blender_test(pytest_args: list[str], zip_path: Path | None = None) -> int:
    """Run tests/blender in every bpy version against the built zip; prints each version's time."""
    zip_path = zip_path or prepare_blender()
    status = 0
    for version in BPY_VENVS:
        python = setup_blender(version)
        env = {**os.environ, "REALIGN_ADDON_ZIP": str(zip_path), "PYTHONPATH": str(ROOT)}
        start = time.monotonic()
        rc = subprocess.call([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--confcutdir",
                              str(BLENDER_TESTS), str(BLENDER_TESTS), *pytest_args], cwd=ROOT, env=env)
        print(f"Blender {version} tests: exit {rc} in {time.monotonic() - start:.1f} s", flush=True)
        status = status or rc
    return status


def parse_bench_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="build.py blender-bench")
    parser.add_argument("--models", default=DEMO_MODELS, help=f"model folder of the server (default {DEMO_MODELS})")
    parser.add_argument("--steps", type=int, default=50, help="sampler steps per motion (default 50)")
    parser.add_argument("--bpy", choices=sorted(BENCH_BPY), default="50", help="bpy 5.0.1 (50) or 4.5.15 (45)")
    return parser.parse_args(argv)


def blender_bench(argv: list[str]) -> int:
    """Start a real server on --models, time Generate click -> keyed Action in bpy (bench_generate.py), stop it."""
    args = parse_bench_args(argv)
    setup()
    python = setup_blender(BENCH_BPY[args.bpy])
    zip_path = build_addon()
    sys.path.insert(0, str(ROOT))  # server.launch is stdlib only; the server itself runs in .venv
    from server.launch import start_server

    print(f"starting the server on {args.models} …", flush=True)
    server = start_server(ROOT / args.models, python=str(venv_python()))
    try:
        print(f"server on port {server.port} ({server.device})", flush=True)
        return subprocess.call([str(python), str(BENCH_SCRIPT), "--zip", str(zip_path), "--port", str(server.port),
                                "--steps", str(args.steps)], cwd=ROOT)
    finally:
        server.stop()


def test(pytest_args: list[str]) -> int:
    """Main suite in .venv (its real-server Blender test drives the bpy venvs), then tests/blender per version."""
    setup()
    zip_path = prepare_blender()
    rc = subprocess.call([str(venv_python()), "-m", "pytest", "-q", *pytest_args], cwd=ROOT)
    return rc or blender_test([], zip_path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", nargs="?", default="addon",
                        choices=["all", "setup", "demo", "test", "addon", "blender-test", "blender-bench"])
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER,
                        help="extra arguments for pytest (test and blender-test), or blender-bench's options")
    args = parser.parse_args()
    if args.task == "test":
        return test(args.pytest_args)
    if args.task == "blender-test":
        return blender_test(args.pytest_args)
    if args.task == "blender-bench":
        return blender_bench(args.pytest_args)
    if args.task in ("all", "setup"):
        setup()
    if args.task in ("all", "demo"):
        demo()  # builds the add-on too
    if args.task == "addon":
        build_addon()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
