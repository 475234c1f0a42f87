"""Print what a saved .blend holds as JSON (armatures, their ReAlign Actions, NLA strips and body meshes).

Run in a bpy environment by tests/test_main_job.py:

    .venv-bpy50/bin/python tests/blender/inspect_blend.py out/demo/walk_wave.blend
"""
from __future__ import annotations

import json
import sys

import bpy


def armature_facts(obj) -> dict:
    anim = obj.animation_data
    strips = [s for t in (anim.nla_tracks if anim else []) for s in t.strips]
    bodies = [c for c in obj.children if c.type == "MESH" and c.get("realign_body")]
    return {
        "bones": len(obj.data.bones),
        "strips": [{"action": s.action.name if s.action else None, "start": s.frame_start, "end": s.frame_end}
                   for s in strips],
        "bodies": [{"name": b.name, "kind": b["realign_body"], "vertices": len(b.data.vertices),
                    "groups": len(b.vertex_groups), "armature_modifier": any(m.type == "ARMATURE" and m.object == obj
                                                                              for m in b.modifiers)}
                   for b in bodies],
    }


def main(path: str) -> None:
    bpy.ops.wm.open_mainfile(filepath=path)
    actions = {a.name: {"prompt": a.get("prompt"), "seed": a.get("seed"), "fake_user": a.use_fake_user,
                        "frame_range": list(a.frame_range)} for a in bpy.data.actions}
    armatures = {o.name: armature_facts(o) for o in bpy.data.objects if o.type == "ARMATURE"}
    print("INSPECT " + json.dumps({"blender": bpy.app.version_string, "actions": actions, "armatures": armatures}))


if __name__ == "__main__":
    main(sys.argv[-1])
