"""Generate a rig with the bundled Rigify in a bpy process of its own and save it (run by target_rigs.py).

    python generate_rigify.py OUT.blend [METARIG_OPERATOR]

Prints one JSON line {"seconds", "bones", "blender"}. The process ends with ``os._exit`` after saving: bpy 4.5.15
hangs at interpreter exit once ``pose.rigify_generate`` has run (its sound module's delayed-close thread waits on
a condition variable that a static destructor destroys), so the tests never generate in their own process.
"""
from __future__ import annotations

import json
import os
import sys
import time

import bpy


def main(out: str, metarig: str) -> None:
    import addon_utils  # importable once bpy is

    bpy.ops.wm.read_factory_settings(use_empty=True)
    if addon_utils.enable("rigify", default_set=True) is None:
        raise SystemExit("the bundled Rigify add-on could not be enabled (addon_utils.enable('rigify'))")
    start = time.perf_counter()
    getattr(bpy.ops.object, metarig)()
    metarig_obj = bpy.context.active_object
    if bpy.ops.pose.rigify_generate() != {"FINISHED"}:
        raise SystemExit("pose.rigify_generate did not finish")
    took = time.perf_counter() - start
    rig = bpy.context.active_object
    if rig is metarig_obj or "rig_id" not in rig.data:
        raise SystemExit("pose.rigify_generate made no rig")
    metarig_obj.hide_set(True)
    bpy.ops.wm.save_as_mainfile(filepath=out)
    print(json.dumps({"seconds": took, "bones": len(rig.data.bones), "blender": bpy.app.version_string}))


if __name__ == "__main__":
    try:
        main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "armature_human_metarig_add")
        code = 0
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
