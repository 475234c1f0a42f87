"""Time Generate click -> keyed Action against a running server, in the ``bpy`` module (``build.py blender-bench``).

    .venv-bpy50/bin/python blender_addon/scripts/bench_generate.py --zip dist/realign_blender-0.1.0.zip --port P

Installs and enables the zip in a temporary user folder (``bake_demo.py``'s
functions), creates the ReAlign skeleton and the Mixamo-style rig, sets the
prompt and a 9.8 s duration (196 frames at 20 fps, the model's maximum) on the
add-on's scene settings and clicks Generate (the operator) on each rig, for 1
and for 3 takes, ``--repeats`` times, after one untimed warm-up click.  Each
click is split with the add-on's ``jobs.LAST_TIMING``: server (the result's
``timing.total_s``), transfer (client receive time minus server time),
decode, retarget (numpy), keying (``foreach_set``), NLA strip; "other" is the
rest of the wall time (queue hand-off, progress events, operator).  Prints a
table of medians and one JSON line.  Blender's Python only: stdlib + numpy.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# bake_demo first: it points BLENDER_USER_RESOURCES at a temporary folder before bpy is imported.
import bake_demo
import bpy

PARTS = ("server_s", "transfer_s", "decode_s", "retarget_s", "keying_s", "nla_s", "other_s", "total_s")
SECONDS = 9.8  # 196 frames at 20 fps: the longest motion the models generate
PROMPT = "a person walks forward and waves with the right hand."


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--zip", required=True, help="the built extension zip")
    p.add_argument("--port", type=int, required=True, help="port of the running server (127.0.0.1)")
    p.add_argument("--steps", type=int, default=0, help="sampler steps (0 = the server's default)")
    p.add_argument("--takes", default="1,3", help="takes per click, comma-separated")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds one click may take")
    p.add_argument("--report", help="also write the JSON here")
    return p.parse_args(argv)


def configure(addon, args: argparse.Namespace) -> dict:
    """Point the add-on at the server, set prompt, duration and steps; returns the server's identity."""
    bpy.context.preferences.addons[addon.__name__].preferences.port = args.port
    s = bpy.context.scene.realign
    s.prompt, s.seconds, s.seed, s.steps = PROMPT, SECONDS, 0, args.steps
    bpy.ops.realign.check_server()
    end = time.monotonic() + 30
    while s.status in ("unknown", "checking…") and time.monotonic() < end:
        addon.jobs.drain(bpy.context, block_s=0.2)
    if s.status != "connected":
        raise SystemExit(f"server not reachable on port {args.port}: {s.message}")
    return {"model": s.model, "device": s.device, "server_version": s.server_version, "max_frames": s.max_frames,
            "strength": round(s.strength, 3), "cfg": round(s.cfg, 3)}


def click(addon, obj: bpy.types.Object, takes: int, timeout: float) -> dict:
    """One timed Generate on ``obj``; checks the Actions and NLA strips, then removes them (same state each time)."""
    bpy.context.view_layer.objects.active = obj
    s = bpy.context.scene.realign
    s.takes = takes
    before = set(bpy.data.actions)
    start = time.perf_counter()
    if bpy.ops.realign.generate() != {"FINISHED"}:
        raise SystemExit("the Generate operator did not run")
    addon.jobs.wait(bpy.context, timeout=timeout)
    wall = time.perf_counter() - start
    new = [a for a in bpy.data.actions if a not in before]
    tracks = [t for t in obj.animation_data.nla_tracks if any(st.action in new for st in t.strips)]
    if len(new) != takes or len(tracks) != takes:
        raise SystemExit(f"expected {takes} Action(s) with NLA strips on {obj.name}, got {len(new)}: {s.message}")
    keys = {len(fc.keyframe_points) for a in new for fc in addon.keying.action_channels(a, obj)[0]}
    if keys != {min(round(s.seconds * 20), s.max_frames)}:
        raise SystemExit(f"expected {s.seconds} s of keys on every F-curve, got {sorted(keys)} keys")
    timing = dict(addon.jobs.LAST_TIMING, total_s=wall)
    timing["other_s"] = wall - sum(timing.get(k, 0.0) for k in PARTS[:-2])
    for track in tracks:
        obj.animation_data.nla_tracks.remove(track)
    for action in new:
        bpy.data.actions.remove(action)
    return {k: timing.get(k, 0.0) for k in PARTS}


def bench(addon, rigs: list, takes_list: list[int], repeats: int, timeout: float) -> dict:
    """Median seconds per part for every (rig, takes), clicks interleaved across repeats."""
    click(addon, rigs[-1], 1, timeout)  # warm-up: first-request costs of server and add-on
    runs: dict[tuple[str, int], list[dict]] = {}
    for _ in range(repeats):
        for takes in takes_list:
            for obj in rigs:
                runs.setdefault((obj.name, takes), []).append(click(addon, obj, takes, timeout))
    return {key: {k: statistics.median(r[k] for r in rs) for k in PARTS} for key, rs in runs.items()}


def print_table(medians: dict, repeats: int) -> None:
    names = [k.removesuffix("_s") for k in PARTS]
    print(f"\nGenerate click -> keyed Action, {SECONDS} s motion, median of {repeats} (seconds):")
    print(f"{'rig':<20} {'takes':>5} " + " ".join(f"{n:>9}" for n in names))
    for (rig, takes), m in medians.items():
        print(f"{rig:<20} {takes:>5} " + " ".join(f"{m[k]:>9.3f}" for k in PARTS))


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    addon = bake_demo.load_addon(args.zip)
    bake_demo.empty_scene()
    server = configure(addon, args)
    frames = min(round(SECONDS * 20), server["max_frames"] or 196)
    print(f"server: {server}; {SECONDS} s = {frames} frames at 20 fps; steps {args.steps or 'server default'}")
    rigs = [obj for obj, _ in bake_demo.create_rigs()]
    takes_list = [int(t) for t in args.takes.split(",")]
    medians = bench(addon, rigs, takes_list, args.repeats, args.timeout)
    print_table(medians, args.repeats)
    report = {"bench": "blender_generate", "blender": bpy.app.version_string, "seconds": SECONDS, "frames": frames,
              "steps": args.steps, "repeats": args.repeats, **server,
              "median_s": [{"rig": rig, "takes": takes, **{k: round(v, 4) for k, v in m.items()}}
                           for (rig, takes), m in medians.items()]}
    line = json.dumps(report)
    print(line)
    if args.report:
        Path(args.report).write_text(line + "\n")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main(sys.argv[1:]))
    finally:
        bake_demo._cleanup()
