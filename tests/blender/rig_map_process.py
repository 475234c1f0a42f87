"""Run by tests/blender/test_rig_maps.py in a NEW bpy process (same BLENDER_USER_RESOURCES, so the same installed
add-on and user folder): build the test's rig again as a new armature, bake a motion onto it and write which bone
map was used and the evaluated limb-direction errors to a JSON file.

    python rig_map_process.py OUT.json
"""
from __future__ import annotations

import importlib
import json
import sys

import bpy
import numpy as np

from tests import retarget_rigs
from tests.blender.conftest import MODULE
from tests.blender.motion import source_motion
from tests.blender.rig_measure import measure

# Two bones named so that no preset or alias finds them: the user has to map the hips by hand.
RENAMED = {"mixamorig:LeftUpLeg": "Oberschenkel_links", "mixamorig:RightUpLeg": "Oberschenkel_rechts"}


def odd_rig():
    """The Mixamo-like test rig with its thighs renamed (``RENAMED``): detection misses both hips."""
    rig, _ = retarget_rigs.mixamo_rig(np.random.default_rng(2))
    rig.names = [RENAMED.get(n, n) for n in rig.names]
    return rig


def main(out: str) -> int:
    import addon_utils  # importable once bpy is

    bpy.ops.wm.read_factory_settings(use_empty=True)
    if addon_utils.enable(MODULE, default_set=True) is None:
        raise SystemExit(f"{MODULE} could not be enabled in the new process")
    addon = importlib.import_module(MODULE)
    from tests.blender.helpers import armature_from_rig

    obj = armature_from_rig(odd_rig(), "Hero (new process)")
    assert addon.armature_io.MAP_PROP not in obj  # nothing on the new object: the map must come from the user folder
    name, joints = source_motion()
    options = addon.retarget.RetargetOptions(ground_snap=False, pin_feet=False)
    _, _, result = addon.armature_io.bake(obj, joints, {"prompt": name}, 1, options)
    mapping = json.loads(obj[addon.armature_io.MAP_PROP])
    m = measure(obj, mapping, result.placed, result.contacts, 1, obj.name, name)
    report = {"blender": bpy.app.version_string, "map": mapping, "limb_deg_max": float(m.limb_deg.max()),
              "pairs": int(m.limb_deg.shape[1]), "driven": [result.names[b] for b in np.flatnonzero(result.driven)]}
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(report, fh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
