"""Joint-name maps of known rigs (Bandai Namco, Mixamo, CMU) and rig detection.

Works on joint names only (no positions, no units):

* ``normalize_joint_name`` reduces a BVH joint name to a ``"<side>.<base>"``
  key, side in {L, R, C} (``mixamorig1:LeftUpLeg`` -> ``L.upleg``).
* ``RIGS`` holds one ``RigSpec`` per rig family: for each of our joints
  (``realign_core.motion.skeleton.JOINT_NAMES``) the normalised BVH names
  it may go by.
* ``detect_rig`` picks the rig whose aliases best match a file's names;
  ``map_joints`` returns our joint index (0..21) -> BVH joint name for the
  joints the rig has. Joints in ``SYNTHESISABLE`` (spine1-3, collars) may be
  missing; ``convert.py`` synthesises them. Any other missing joint is a
  ``BvhError``.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from realign_core.data.bvh.parse import BvhError
from realign_core.motion.skeleton import JOINT_NAMES

_SIDE_WORDS: dict[str, str] = {"l": "L", "left": "L", "r": "R", "right": "R"}
_IGNORED_PREFIX = re.compile(r"(mixamorig\d*|bip0*1|def)$")
_WORD = re.compile(r"[A-Z]+(?![a-z])\d*|[A-Z]?[a-z]+\d*|\d+")


def normalize_joint_name(name: str) -> str:
    """Canonical key ``"<side>.<base>"`` of a joint name, side in {L, R, C}.

    Drops any namespace before ':' and rig prefixes (``mixamorig_``), splits
    on ``_ . -`` / spaces and camelCase, removes one Left/Right/L/R word
    (prefix, suffix or middle) as the side, and lower-cases the rest:
    ``mixamorig1:LeftUpLeg`` -> ``L.upleg``, ``UpperLeg_L`` -> ``L.upperleg``,
    ``LHipJoint`` -> ``L.hipjoint``, ``Spine1`` -> ``C.spine1``.
    """
    bare = name.split(":")[-1]
    words = [w for part in re.split(r"[_.\-\s]+", bare) for w in _WORD.findall(part)]
    while len(words) > 1 and _IGNORED_PREFIX.match(words[0].lower()):
        words = words[1:]
    side = "C"
    for k, word in enumerate(words):
        if word.lower() in _SIDE_WORDS and len(words) > 1:
            side = _SIDE_WORDS[word.lower()]
            words = words[:k] + words[k + 1:]
            break
    base = "".join(words).lower()
    if side == "C":
        for word, letter in (("left", "L"), ("right", "R")):
            if base.startswith(word) and len(base) > len(word):
                side, base = letter, base[len(word):]
                break
    return f"{side}.{base}"


@dataclass(frozen=True)
class RigSpec:
    """Name aliases of one rig family.

    aliases: our joint (side-less for the sided ones: "hip", "knee", "ankle",
        "foot", "collar", "shoulder", "elbow", "wrist") -> candidate normalised
        base names, best first.
    signature: normalised keys ("L.hipjoint") typical of this rig; they break
        ties between rigs that share most names.
    raw_markers: lower-case substrings of raw names typical of this rig.
    """

    name: str
    aliases: dict[str, tuple[str, ...]]
    signature: tuple[str, ...] = ()
    raw_markers: tuple[str, ...] = ()


RIGS: dict[str, RigSpec] = {
    "bandai": RigSpec(
        name="bandai",
        aliases={
            "pelvis": ("hips",), "spine1": ("spine",), "spine3": ("chest",),
            "neck": ("neck",), "head": ("head",), "collar": ("shoulder",),
            "shoulder": ("upperarm",), "elbow": ("lowerarm",), "wrist": ("hand",),
            "hip": ("upperleg",), "knee": ("lowerleg",), "ankle": ("foot",),
            "foot": ("toes",),
        },
        signature=("C.chest", "L.upperarm", "L.lowerarm", "L.upperleg", "L.lowerleg",
                   "L.toes", "C.jointroot"),
    ),
    "mixamo": RigSpec(
        name="mixamo",
        aliases={
            "pelvis": ("hips",), "spine1": ("spine",), "spine2": ("spine1",),
            "spine3": ("spine2",), "neck": ("neck",), "head": ("head",),
            "collar": ("shoulder",), "shoulder": ("arm",), "elbow": ("forearm",),
            "wrist": ("hand",), "hip": ("upleg",), "knee": ("leg",), "ankle": ("foot",),
            "foot": ("toebase",),
        },
        signature=("C.spine2", "L.toeend", "C.headtopend", "L.handindex1"),
        raw_markers=("mixamorig",),
    ),
    "cmu": RigSpec(
        name="cmu",
        aliases={
            "pelvis": ("hips", "hip"), "spine1": ("spine", "abdomen"),
            "spine3": ("spine1", "chest"), "neck": ("neck1", "neck"), "head": ("head",),
            "collar": ("collar",), "shoulder": ("arm", "shldr"), "elbow": ("forearm",),
            "wrist": ("hand",), "hip": ("upleg", "thigh"), "knee": ("leg", "shin"),
            "ankle": ("foot",), "foot": ("toebase", "toe"),
        },
        signature=("L.hipjoint", "C.lowerback", "C.neck1", "L.handthumb", "L.fingerbase",
                   "L.shldr", "C.abdomen", "L.collar"),
    ),
}

# Joints a rig may lack (they are synthesised); every other joint is required.
SYNTHESISABLE: frozenset[str] = frozenset(
    {"spine1", "spine2", "spine3", "left_collar", "right_collar"})


def _alias_key(joint: str) -> tuple[str, str]:
    """Our joint name -> (side letter, side-less alias key)."""
    for prefix, side in (("left_", "L"), ("right_", "R")):
        if joint.startswith(prefix):
            return side, joint[len(prefix):]
    return "C", joint


def _map_with_rig(names: Sequence[str], spec: RigSpec) -> dict[int, str]:
    """Our joint index -> BVH name for every joint the rig's aliases find."""
    by_key: dict[str, str] = {}
    for name in names:
        by_key.setdefault(normalize_joint_name(name), name)
    mapping: dict[int, str] = {}
    for index, joint in enumerate(JOINT_NAMES):
        side, key = _alias_key(joint)
        for alias in spec.aliases.get(key, ()):
            found = by_key.get(f"{side}.{alias}")
            if found is not None:
                mapping[index] = found
                break
    return mapping


def _missing_required(mapping: dict[int, str]) -> list[str]:
    """Names of required joints (not synthesisable) absent from ``mapping``."""
    return [j for i, j in enumerate(JOINT_NAMES) if i not in mapping and j not in SYNTHESISABLE]


def _rig_score(names: Sequence[str], spec: RigSpec) -> tuple[bool, int, int]:
    """(complete, signature hits, mapped joints): larger is a better match."""
    keys = {normalize_joint_name(n) for n in names}
    raw = " ".join(names).lower()
    hits = sum(k in keys for k in spec.signature) + sum(m in raw for m in spec.raw_markers)
    mapping = _map_with_rig(names, spec)
    return not _missing_required(mapping), hits, len(mapping)


def detect_rig(names: Sequence[str]) -> str:
    """Name of the rig in ``RIGS`` whose aliases best match ``names``."""
    return max(RIGS, key=lambda rig: _rig_score(names, RIGS[rig]))


def map_joints(names: Sequence[str], rig: str | None = None,
               source: str = "<joint names>") -> dict[int, str]:
    """Map our 22 joints onto BVH joint names.

    names: BVH joint names; rig: one of ``RIGS`` ("bandai", "mixamo", "cmu")
    or None to auto-detect (the rig with all required joints, then the most
    signature names, then the most mapped joints wins). Names are compared
    after ``normalize_joint_name`` (case, namespaces, separators and
    Left/L/l prefix or suffix variants do not matter).

    Returns our joint index -> BVH name for the joints the rig has. The
    others are synthesised by ``bvh_to_smpl22``:

    * spine3 (the bone where the arms branch) when absent: the nearest common
      ancestor of the two upper-arm joints (if that is the pelvis, a point
      2/3 of the way from the pelvis to the neck along the bone chain);
    * spine1 / spine2 when absent: points on the BVH bone chain between the
      nearest mapped spine anchors below and above (pelvis ... spine3),
      evenly spaced by arc length (e.g. Bandai: spine2 is half-way along
      Spine -> Chest; one missing joint between two anchors sits at 1/2, two
      at 1/3 and 2/3);
    * a collar when absent: the point ``collar_fraction`` (0.5) of the way
      from the neck joint to that side's upper-arm root. CMU's LeftShoulder
      sits at the chest centre with a zero offset, so CMU collars are always
      synthesised.

    Raises BvhError naming ``source`` and the missing joints when any
    required joint (pelvis, legs down to the toes, neck, head, arms down to
    the wrists) cannot be found, or when ``rig`` is not a known rig.
    """
    if rig is not None and rig not in RIGS:
        raise BvhError(f"{source}: unknown rig '{rig}' (known: {', '.join(RIGS)})")
    chosen = rig if rig is not None else detect_rig(names)
    mapping = _map_with_rig(names, RIGS[chosen])
    missing = _missing_required(mapping)
    if missing:
        raise BvhError(f"{source}: cannot map joint names to the 22-joint skeleton "
                       f"(best rig '{chosen}'); missing joints: {', '.join(missing)}")
    return mapping
