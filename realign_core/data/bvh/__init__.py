"""BVH motion-capture import: any rig's BVH -> our 22-joint skeleton, and BVH folders -> datasets.

Modules:

* ``parse.py``: the BVH text format. ``parse_bvh`` / ``parse_bvh_text`` ->
  ``BvhMotion`` (hierarchy, offsets ``(J, 3)`` and motion ``(F, C)`` in file
  units, rotations in degrees); ``forward_kinematics`` -> world positions
  ``(F, J, 3)`` in file units and axes; ``BvhError``; ``ImportConfig``.
* ``rigs.py``: joint-name maps of known rigs (Bandai Namco, Mixamo, CMU):
  ``normalize_joint_name``, ``RIGS``, ``detect_rig``, ``map_joints``.
* ``convert.py``: ``bvh_to_smpl22`` -> ``Smpl22Motion``, positions
  ``(T, 22, 3)`` metres, Y up, right-handed, 20 fps (missing spine joints and
  collars synthesised; up axis, unit and handedness detected).
* ``folder.py``: ``add_bvh_folder`` (``realign data add-bvh``), a BVH folder
  plus a captions CSV -> clips of a HumanML3D-layout dataset. Not re-exported
  here (it pulls in the dataset builder); import it from its module.
"""
from realign_core.data.bvh.convert import Smpl22Motion, bvh_to_smpl22
from realign_core.data.bvh.parse import (
    DEFAULT_CONFIG,
    BvhError,
    BvhMotion,
    ImportConfig,
    forward_kinematics,
    parse_bvh,
    parse_bvh_text,
)
from realign_core.data.bvh.rigs import RIGS, detect_rig, map_joints, normalize_joint_name

__all__ = [
    "DEFAULT_CONFIG", "RIGS", "BvhError", "BvhMotion", "ImportConfig", "Smpl22Motion",
    "bvh_to_smpl22", "detect_rig", "forward_kinematics", "map_joints", "normalize_joint_name",
    "parse_bvh", "parse_bvh_text",
]
