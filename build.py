#!/usr/bin/env python3
"""Set up, run and test the project (stdlib only, so it runs before anything is installed).

    python3.11 build.py all     # set up .venv, then run the main job from this checkout alone (generate a motion
                                # with the shipped models, build the add-on, bake it in bpy onto two rigs with
                                # mannequin bodies, save the .blend, render a strip of frames and a GIF)
    python3.11 build.py test    # set up .venv if needed, run the whole test suite, then the Blender tests
                                # in bpy 5.0.1 and 4.5.15 (each in its own venv)
    python3.11 build.py setup   # only create/refresh .venv
    python3.11 build.py demo [--out DIR] [--quick]   # only the main job
    python3.11 build.py data [--cmu DIR --kitml DIR --humanml3d-index DIR]
                                # build the training set (default: ../shared/data/...) and render one clip;
                                # only training and evaluation need it
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
# Written into the staged add-on: the checkout that built it, where Start server finds .venv and the server.
ADDON_LOCATION_FILE = "server_location.json"
DIST = ROOT / "dist"
# bpy from PyPI pins numpy<2, so each Blender version gets its own environment.
BPY_VENVS = {"5.0.1": ROOT / ".venv-bpy50", "4.5.15": ROOT / ".venv-bpy45"}
BLENDER_TESTS = ROOT / "tests" / "blender"
DEMO_PROMPT = "a person walks forward and waves with the right hand."
DEMO_CHECKS = "walk_forward,wave_right"   # what the demo prompt asks for (model-free kinematic checks)
DEMO_MOTION = DEMO_OUT / "demo" / "walk_wave"     # prefix of realign generate's files
DEMO_MODELS = "models/default"
BAKE_SCRIPT = ROOT / "blender_addon" / "scripts" / "bake_demo.py"
BENCH_SCRIPT = ROOT / "blender_addon" / "scripts" / "bench_generate.py"
BENCH_BPY = {"50": "5.0.1", "45": "4.5.15"}
DEMO_PICTURE = ROOT / "docs" / "img" / "retarget_demo.png"
DEMO_GIF = ROOT / "docs" / "img" / "retarget_demo.gif"
FRAMES_TO_GIF = ROOT / "blender_addon" / "scripts" / "frames_to_gif.py"


def venv_python(venv_dir: Path = VENV) -> Path:
    return venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def run(cmd: list[str | Path], **kw) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kw)


def setup() -> None:
    """Create .venv and install the project with its test and ray extras (idempotent)."""
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
    run(pip + ["-e", ".[test,ray]", TORCH_PIN])   # ray: the Ray tests of realign batch (docs/scale.md)
    STAMP.write_text(inputs)


def parse_demo_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="build.py demo", description="the main job (needs only this checkout)")
    parser.add_argument("--out", type=Path, default=DEMO_OUT, help="output folder (default out/; docs/img/ is "
                        "refreshed only for the default folder without --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="small pictures, a 2 fps GIF, no stick-figure GIF (tests/test_main_job.py)")
    return parser.parse_args(argv)


def demo(argv: list[str] | None = None) -> dict:
    """Main job, from this checkout alone (no training data): generate the demo prompt with the shipped models,
    build the add-on, bake the motion headlessly in bpy onto two rigs with mannequin bodies, save the .blend,
    render a strip of frames and an animated GIF. Returns the bake report (with the GIF's path)."""
    args = parse_demo_args(argv or [])
    out_dir = args.out.resolve()
    publish = out_dir == DEMO_OUT.resolve() and not args.quick
    motion = out_dir / DEMO_MOTION.relative_to(DEMO_OUT)
    times: dict[str, float] = {}
    start = time.monotonic()
    motion.parent.mkdir(parents=True, exist_ok=True)
    stick_gif = [] if args.quick else ["--gif"]
    run([venv_python(), "-m", "realign_core.cli", "generate", DEMO_PROMPT, "--models", DEMO_MODELS, "--seconds", "6",
         "--seed", "0", *stick_gif, "-o", motion])
    times["generate (default strength)" + (" + stick-figure GIF" if stick_gif else "")] = time.monotonic() - start
    checks = motion.with_name(motion.name + "_checks.json")
    run([venv_python(), "-m", "realign_core.cli", "check-motion", motion.with_suffix(".npy"), "--checks",
         DEMO_CHECKS, "--json", checks])
    report = bake_demo(build_addon(), motion, times, args.quick)
    report["checks"] = json.loads(checks.read_text())
    start = time.monotonic()
    gif = motion.with_name(motion.name + "_blender.gif")
    run([venv_python(), FRAMES_TO_GIF, report["gif_frames_dir"], gif, "--fps", str(report["gif_fps"])])
    shutil.rmtree(report["gif_frames_dir"], ignore_errors=True)
    report["gif"] = str(gif)
    (motion.parent / f"{motion.name}_bake.json").write_text(json.dumps(report, indent=2) + "\n")
    times["GIF from the rendered frames"] = time.monotonic() - start
    if publish:
        DEMO_PICTURE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(report["png"], DEMO_PICTURE)
        shutil.copy2(gif, DEMO_GIF)
    print_demo_summary(report, times, motion, publish)
    return report


def bake_demo(zip_path: Path, motion: Path, times: dict[str, float], quick: bool = False) -> dict:
    """Bake the generated motion onto the ReAlign skeleton and a Mixamo-style rig (both with mannequins) in
    bpy 5.0.1, save the .blend, render the strip and the GIF's frames with Workbench; returns the report."""
    python = setup_blender("5.0.1")
    out = motion.parent
    report_path = out / f"{motion.name}_bake.json"
    size = ["--width", "480", "--columns", "4", "--gif-width", "240", "--gif-fps", "2"] if quick else \
        ["--width", "1200", "--columns", "6", "--gif-width", "400", "--gif-fps", "10"]
    start = time.monotonic()
    run([python, BAKE_SCRIPT, "--zip", zip_path, "--motion", motion.with_suffix(".npy"), "--prompt", DEMO_PROMPT,
         "--seed", "0", "--model", DEMO_MODELS, "--blend", motion.with_suffix(".blend"),
         "--png", out / "retarget_demo.png", "--gif-frames", out / "gif_frames", "--report", report_path, *size])
    times["bpy: install add-on, bodies, bake, save, Workbench strip + GIF frames"] = time.monotonic() - start
    return json.loads(report_path.read_text())


def print_demo_summary(report: dict, times: dict[str, float], motion: Path, published: bool) -> None:
    """What the main job wrote and how long each part took."""
    def rel(p) -> str:
        p = Path(p).resolve()
        return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)

    frames = report["frames"]
    print("\nmain job done:")
    kinds = ", ".join(k for k in (".npy", "_features.npy", ".bvh", ".gif")
                      if motion.with_name(motion.name + k).exists())
    print(f"  generated motion   {rel(motion)}{{{kinds}}}: {frames} frames "
          f"({frames / 20:.1f} s at 20 fps), \"{DEMO_PROMPT}\" seed 0")
    checks = report["checks"]
    verdicts = ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in checks["checks"].items())
    print(f"  kinematic checks   {verdicts} (pelvis {checks['forward_m']:+.2f} m forward, "
          f"path {checks['path_length_m']:.2f} m; `realign check-motion`)")
    for rig, body in zip(report["rigs"], report["bodies"]):
        print(f"  baked              {rig['armature']}: Action \"{rig['action']}\" + NLA strip, frames "
              f"{rig['frame_start']:.0f}-{rig['frame_end']:.0f}, {rig['bones_driven']} bones driven; body "
              f"{body['mesh']} ({body['vertices']} vertices, {body['vertex_groups']} bones weighted)")
    print(f"  .blend             {rel(report['blend'])} (Blender {report['blender']}; bake {report['bake_s']:.2f} s)")
    print(f"  strip              {rel(report['png'])} ({report['engine']}, {report['render_s']:.0f} s)")
    print(f"  GIF                {rel(report['gif'])} ({report['gif_frames']} frames at {report['gif_fps']:g} fps, "
          f"rendered in {report['gif_render_s']:.0f} s)")
    if published:
        print(f"  README pictures    {rel(DEMO_PICTURE)}, {rel(DEMO_GIF)}")
    for what, seconds in times.items():
        print(f"  time               {what}: {seconds:.1f} s")
    if not SHARED_DATA.is_dir():
        print(f"  (no {SHARED_DATA}: training data is not needed here; 'build.py data --cmu ...' builds a dataset)")


def parse_data_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="build.py data", description="build the training set (needs the data)")
    parser.add_argument("--cmu", type=Path, default=SHARED_DATA / "cmu_mocap",
                        help="CMU mocap as 3D joints: joints/, descriptions.csv, action_classes.csv "
                             "(default ../shared/data/cmu_mocap)")
    parser.add_argument("--kitml", type=Path, default=SHARED_DATA / "kitml",
                        help="KIT-ML annotations.json folder (default ../shared/data/kitml)")
    parser.add_argument("--humanml3d-index", type=Path, default=SHARED_DATA / "humanml3d_index",
                        help="HumanML3D index.csv + split files (default ../shared/data/humanml3d_index)")
    parser.add_argument("--out", type=Path, default=DEMO_DATA, help="dataset folder (default data/cmu_h3d)")
    return parser.parse_args(argv)


def data(argv: list[str]) -> None:
    """Build the training set (HumanML3D layout) from CMU mocap + KIT-ML + the HumanML3D index, and render one
    clip of it. Only training and evaluation need it; the main job does not."""
    args = parse_data_args(argv)
    missing = [f"{flag} {path}" for flag, path in (("--cmu", args.cmu), ("--kitml", args.kitml),
                                                    ("--humanml3d-index", args.humanml3d_index)) if not path.is_dir()]
    if missing:
        raise SystemExit("build.py data: missing " + ", ".join(missing) + ". The training set is built from the CMU "
                         "mocap database as 3D joints, KIT-ML annotations and HumanML3D's index and split files; "
                         "pass their folders (the defaults are ../shared/data/...). The main job "
                         "('build.py demo') needs none of them.")
    realign = [venv_python(), "-m", "realign_core.cli"]
    start = time.monotonic()
    run(realign + ["data", "build", "--cmu", args.cmu, "--kitml", args.kitml, "--humanml3d-index",
                   args.humanml3d_index, "--out", args.out])
    clip = args.out / "new_joints" / "cmu_02_01_00.npy"
    if clip.exists():
        DEMO_OUT.mkdir(exist_ok=True)
        run(realign + ["render", clip, "-o", DEMO_OUT / "cmu_02_01_00.gif"])
    print(f"dataset {args.out} built in {time.monotonic() - start:.1f} s")


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
    server/client.py as client.py, realign_core/motion/skeleton.py and kinematics.py (one source each), and
    ``server_location.json`` (this checkout's path: *Start server* runs its .venv server from there)."""
    for name, src in ADDON_VENDORED.items():
        if not src.exists():
            raise SystemExit(f"{src} is missing: the add-on vendors it as {name}")
        if (ADDON_SRC / name).exists():
            raise SystemExit(f"{ADDON_SRC / name} must not exist: build.py vendors {src.relative_to(ROOT)} as {name}")
    shutil.rmtree(stage, ignore_errors=True)
    shutil.copytree(ADDON_SRC, stage, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name, src in ADDON_VENDORED.items():
        shutil.copy2(src, stage / name)
    if (ADDON_SRC / ADDON_LOCATION_FILE).exists():
        raise SystemExit(f"{ADDON_SRC / ADDON_LOCATION_FILE} must not exist: build.py writes it")
    location = {"repo": str(ROOT), "python": str(venv_python()), "written_by": "build.py stage_addon"}
    (stage / ADDON_LOCATION_FILE).write_text(json.dumps(location, indent=1) + "\n")
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
    parser.add_argument("--steps", type=int, default=0,
                        help="sampler steps per motion (default 0 = the server's: the models' validated setting)")
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
                        choices=["all", "setup", "demo", "data", "test", "addon", "blender-test", "blender-bench"])
    parser.add_argument("task_args", nargs=argparse.REMAINDER,
                        help="extra arguments for pytest (test and blender-test), or the options of demo, data and "
                             "blender-bench")
    args = parser.parse_args()
    if args.task == "test":
        return test(args.task_args)
    if args.task == "blender-test":
        return blender_test(args.task_args)
    if args.task == "blender-bench":
        return blender_bench(args.task_args)
    if args.task in ("all", "setup", "data"):
        setup()
    if args.task in ("all", "demo"):
        demo(args.task_args)  # builds the add-on too
    if args.task == "data":
        data(args.task_args)
    if args.task == "addon":
        build_addon()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
