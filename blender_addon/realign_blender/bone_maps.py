"""Bone maps: which target bone each of the 22 generated joints drives (stdlib + the vendored skeleton).

A bone map is a ``dict`` from a source joint name (SMPL order, see
``skeleton.JOINT_NAMES``) to a bone name of the target armature. Joints
left out drive nothing, and bones that no joint names stay untouched.

Presets cover SMPL/SMPL-X, Mixamo (any ``mixamorig*:`` / ``mixamorig_``
prefix), Rigify (metarig, DEF bones, FK controls), the UE4/UE5 mannequin and
CMU/Bandai-style BVH rigs; ``detect_bone_map`` picks the best preset or falls
back to alias matching on normalised names (case, separators, namespaces,
``Left``/``.L``/``_l``/``L_`` sides). Spine bones need no entry: every bone
between the pelvis bone and the neck bone follows the generated spine.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .skeleton import JOINT_NAMES as JOINTS

# Joints a usable map must have (the rest is optional).
CORE_JOINTS: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "neck", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
)
SIDED: tuple[str, ...] = ("hip", "knee", "ankle", "foot", "collar", "shoulder", "elbow", "wrist")


def _sided(fmt: str, names: dict[str, str], left: str = "Left", right: str = "Right") -> dict[str, str]:
    """Expand {side-less joint: bone base} into left/right entries with ``fmt`` (e.g. "{side}{base}")."""
    out = {}
    for joint, base in names.items():
        out[f"left_{joint}"] = fmt.format(side=left, base=base)
        out[f"right_{joint}"] = fmt.format(side=right, base=base)
    return out


def _preset(center: dict[str, str], fmt: str, limbs: dict[str, str], left: str = "Left",
            right: str = "Right") -> dict[str, str]:
    return {**center, **_sided(fmt, limbs, left, right)}


_MIXAMO_LIMBS = {"hip": "UpLeg", "knee": "Leg", "ankle": "Foot", "foot": "ToeBase", "collar": "Shoulder",
                 "shoulder": "Arm", "elbow": "ForeArm", "wrist": "Hand"}
_RIGIFY_LIMBS = {"hip": "thigh", "knee": "shin", "ankle": "foot", "foot": "toe", "collar": "shoulder",
                 "shoulder": "upper_arm", "elbow": "forearm", "wrist": "hand"}
_UE_LIMBS = {"hip": "thigh", "knee": "calf", "ankle": "foot", "foot": "ball", "collar": "clavicle",
             "shoulder": "upperarm", "elbow": "lowerarm", "wrist": "hand"}
_SMPL_LIMBS = {"hip": "Hip", "knee": "Knee", "ankle": "Ankle", "foot": "Foot", "collar": "Collar",
               "shoulder": "Shoulder", "elbow": "Elbow", "wrist": "Wrist"}
_BANDAI_LIMBS = {"hip": "UpperLeg", "knee": "LowerLeg", "ankle": "Foot", "foot": "Toes", "collar": "Shoulder",
                 "shoulder": "UpperArm", "elbow": "LowerArm", "wrist": "Hand"}

PRESETS: dict[str, dict[str, str]] = {
    "realign": {j: j for j in JOINTS},
    "smpl": _preset({"pelvis": "Pelvis", "spine1": "Spine1", "spine2": "Spine2", "spine3": "Spine3",
                     "neck": "Neck", "head": "Head"}, "{side}_{base}", _SMPL_LIMBS, "L", "R"),
    "smplx": _preset({"pelvis": "pelvis", "spine1": "spine1", "spine2": "spine2", "spine3": "spine3",
                      "neck": "neck", "head": "head"}, "{side}_{base}",
                     {k: v.lower() for k, v in _SMPL_LIMBS.items()}, "left", "right"),
    "mixamo": _preset({"pelvis": "Hips", "spine1": "Spine", "spine2": "Spine1", "spine3": "Spine2",
                       "neck": "Neck", "head": "Head"}, "{side}{base}", _MIXAMO_LIMBS),
    "rigify_metarig": _preset({"pelvis": "spine", "spine1": "spine.001", "spine2": "spine.002",
                               "spine3": "spine.003", "neck": "spine.004", "head": "spine.006"},
                              "{base}.{side}", _RIGIFY_LIMBS, "L", "R"),
    "rigify_def": _preset({"pelvis": "DEF-spine", "spine1": "DEF-spine.001", "spine2": "DEF-spine.002",
                           "spine3": "DEF-spine.003", "neck": "DEF-spine.004", "head": "DEF-spine.006"},
                          "DEF-{base}.{side}", _RIGIFY_LIMBS, "L", "R"),
    "rigify_fk": _preset({"pelvis": "torso", "spine1": "spine_fk.001", "spine2": "spine_fk.002",
                          "spine3": "spine_fk.003", "neck": "neck", "head": "head"}, "{base}.{side}",
                         {"hip": "thigh_fk", "knee": "shin_fk", "ankle": "foot_fk", "foot": "toe_fk",
                          "collar": "shoulder", "shoulder": "upper_arm_fk", "elbow": "forearm_fk",
                          "wrist": "hand_fk"}, "L", "R"),
    "ue4_mannequin": _preset({"pelvis": "pelvis", "spine1": "spine_01", "spine2": "spine_02",
                              "spine3": "spine_03", "neck": "neck_01", "head": "head"}, "{base}_{side}",
                             _UE_LIMBS, "l", "r"),
    "ue5_mannequin": _preset({"pelvis": "pelvis", "spine1": "spine_01", "spine2": "spine_03",
                              "spine3": "spine_05", "neck": "neck_01", "head": "head"}, "{base}_{side}",
                             _UE_LIMBS, "l", "r"),
    "cmu_bvh": _preset({"pelvis": "Hips", "spine1": "LowerBack", "spine2": "Spine", "spine3": "Spine1",
                        "neck": "Neck", "head": "Head"}, "{side}{base}", _MIXAMO_LIMBS),
    "bandai_bvh": _preset({"pelvis": "Hips", "spine1": "Spine", "spine3": "Chest", "neck": "Neck",
                           "head": "Head"}, "{base}_{side}", _BANDAI_LIMBS, "L", "R"),
}

# Bones only one of several similar presets has (tie-breakers).
SIGNATURES: dict[str, tuple[str, ...]] = {
    "ue5_mannequin": ("spine_04", "spine_05", "neck_02"),
    "cmu_bvh": ("LowerBack", "LHipJoint", "Neck1"),
    "rigify_fk": ("torso", "hips", "chest"),
}

# Side-less aliases (normalised: lower case, no separators) for generic detection.
ALIASES: dict[str, tuple[str, ...]] = {
    "pelvis": ("hips", "pelvis", "hip", "root", "cog"),
    "spine1": ("spine", "spine1", "spine01", "lowerback", "abdomen", "waist"),
    "spine2": ("spine2", "spine02", "spine1", "chest", "torso"),
    "spine3": ("spine3", "spine03", "spine2", "upperchest", "chest"),
    "neck": ("neck", "neck1", "neck01"),
    "head": ("head",),
    "hip": ("upleg", "upperleg", "thigh", "hip", "femur", "leg1"),
    "knee": ("leg", "lowerleg", "shin", "calf", "knee", "lowleg", "leg2"),
    "ankle": ("foot", "ankle"),
    "foot": ("toebase", "toe", "toes", "ball", "foot"),
    "collar": ("shoulder", "clavicle", "collar", "collarbone"),
    "shoulder": ("arm", "upperarm", "uparm", "shoulder", "humerus", "arm1"),
    "elbow": ("forearm", "lowerarm", "elbow", "loarm", "arm2"),
    "wrist": ("hand", "wrist"),
}
_SKIP = re.compile(r"^(mch|org|vis|wgt|ctrl|tweak|ik|pole)[-_.]|(_ik|_ik\.[lr]|twist|roll|pole|target|nub|"
                   r"end|site|_parent|socket|prop|weapon)", re.IGNORECASE)
_NAMESPACE = re.compile(r"^.*:")
_PREFIX = re.compile(r"^(mixamorig\d*_|def-|bip0*1[ _]?|b_|j_|jnt_|joint_|character\d*_)", re.IGNORECASE)
_SIDE_PATTERNS: tuple[tuple[re.Pattern, int], ...] = (
    (re.compile(r"^(left|right)[ _.-]?", re.IGNORECASE), 1),
    (re.compile(r"[ _.-]?(left|right)$", re.IGNORECASE), 1),
    (re.compile(r"^(l|r)[ _.-]", re.IGNORECASE), 1),
    (re.compile(r"[ _.-](l|r)$", re.IGNORECASE), 1),
    (re.compile(r"[ _.-](l|r)(?=[ _.-]\d+$)", re.IGNORECASE), 1),
    (re.compile(r"^([LR])(?=[A-Z][a-z])"), 1),
)


def split_side(name: str) -> tuple[str, str | None]:
    """Bone name -> (name without side, "L"/"R"/None). ``mixamorig:LeftArm`` -> ("Arm", "L")."""
    stem = _PREFIX.sub("", _NAMESPACE.sub("", name))
    for pattern, group in _SIDE_PATTERNS:
        m = pattern.search(stem)
        if m:
            side = m.group(group)[0].upper()
            return stem[:m.start()] + stem[m.end():], side
    return stem, None


def normalize(name: str) -> tuple[str, str | None]:
    """Bone name -> (lower-case alphanumeric base, side). ``DEF-upper_arm.L`` -> ("upperarm", "L")."""
    base, side = split_side(name)
    return re.sub(r"[^a-z0-9]", "", base.lower()), side


def _key(name: str) -> str:
    """Comparison key of a bone name: namespace dropped, lower case."""
    return _NAMESPACE.sub("", name).lower()


def match_preset(preset: dict[str, str], bone_names: list[str]) -> dict[str, str]:
    """The part of a preset whose bones exist (names compared without namespace, case-insensitive)."""
    by_key = {}
    for name in bone_names:
        by_key.setdefault(_key(name), name)
        by_key.setdefault(_key(re.sub(r"^mixamorig\d*_", "", name, flags=re.IGNORECASE)), name)
    return {j: by_key[_key(b)] for j, b in preset.items() if _key(b) in by_key}


def alias_map(bone_names: list[str]) -> dict[str, str]:
    """Generic detection: joint -> bone by alias lists, first alias wins, ambiguous names resolved.

    "foot" is the toe when an "ankle" bone exists on that side; "shoulder" is the
    collar when an upper-arm bone ("arm", "upperarm") exists on that side.
    """
    table: dict[tuple[str, str | None], str] = {}
    for name in bone_names:
        if _SKIP.search(name):
            continue
        table.setdefault(normalize(name), name)
    out: dict[str, str] = {}
    for joint in JOINTS:
        side = None
        base = joint
        if joint.startswith(("left_", "right_")):
            side, base = ("L" if joint.startswith("left_") else "R"), joint.split("_", 1)[1]
        aliases = _resolve_aliases(base, side, table)
        hit = next((table[(a, side)] for a in aliases if (a, side) in table), None)
        if hit is not None and hit not in out.values():
            out[joint] = hit
    return out


def _resolve_aliases(base: str, side: str | None, table: dict) -> tuple[str, ...]:
    """Alias list of a side-less joint, with the foot/ankle and shoulder/collar ambiguities settled."""
    aliases = ALIASES[base]
    has = lambda *names: any((n, side) in table for n in names)
    if base == "ankle" and has("ankle"):
        aliases = ("ankle",)
    if base == "foot" and not has("ankle"):
        aliases = tuple(a for a in aliases if a != "foot")
    if base == "collar" and not has("arm", "upperarm", "uparm"):
        aliases = tuple(a for a in aliases if a != "shoulder")
    if base == "shoulder" and has("arm", "upperarm", "uparm"):
        aliases = tuple(a for a in aliases if a != "shoulder")
    return aliases


def detect_bone_map(bone_names: list[str]) -> tuple[str, dict[str, str]]:
    """Best bone map for an armature: (preset name or "auto", joint -> bone name).

    The preset covering the most core joints wins (ties: most joints, then
    its signature bones, then preset order). When no preset covers every core
    joint, alias matching decides and the best preset fills what it lacks.
    """
    best_name, best, best_score = "auto", {}, (-1, -1, -1)
    keys = {_key(n) for n in bone_names}
    for name, preset in PRESETS.items():
        found = match_preset(preset, bone_names)
        signature = sum(_key(b) in keys for b in SIGNATURES.get(name, ()))
        score = (sum(j in found for j in CORE_JOINTS), len(found), signature)
        if score > best_score:
            best_name, best, best_score = name, found, score
    if best_score[0] == len(CORE_JOINTS):
        return best_name, best
    return "auto", _dedupe({**best, **alias_map(bone_names)})


def _dedupe(mapping: dict[str, str]) -> dict[str, str]:
    """Drop later joints that name a bone already used (one bone, one joint)."""
    seen, out = set(), {}
    for joint in JOINTS:
        bone = mapping.get(joint)
        if bone and bone not in seen:
            out[joint] = bone
            seen.add(bone)
    return out


def missing_core(mapping: dict[str, str]) -> list[str]:
    """Core joints a map lacks."""
    return [j for j in CORE_JOINTS if j not in mapping]


def validate(mapping: dict[str, str], bone_names: list[str]) -> list[str]:
    """Human-readable problems of a map: unknown joints, absent bones, missing core joints, duplicates."""
    problems = [f"unknown joint {j!r}" for j in mapping if j not in JOINTS]
    problems += [f"{j}: no bone named {b!r}" for j, b in mapping.items() if b and b not in bone_names]
    problems += [f"{j} is not mapped" for j in missing_core(mapping)]
    used: dict[str, str] = {}
    for j, b in mapping.items():
        if b in used:
            problems.append(f"{j} and {used[b]} both use {b!r}")
        used.setdefault(b, j)
    return problems


FORMAT = "realign-bone-map"
VERSION = 1


def bone_map_document(mapping: dict[str, str], rig: str = "custom", fingerprint: str | None = None) -> dict:
    """The JSON object of a bone map: {"format", "version", "rig", ["fingerprint"], "joints"} (joints in SMPL order)."""
    data = {"format": FORMAT, "version": VERSION, "rig": rig}
    if fingerprint:
        data["fingerprint"] = fingerprint
    data["joints"] = {j: mapping[j] for j in JOINTS if mapping.get(j)}
    return data


def write_json(path: str | Path, data: dict) -> None:
    """Write JSON atomically (a temporary file renamed over ``path``): a failed write leaves the old file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def save_bone_map(path: str | Path, mapping: dict[str, str], rig: str = "custom",
                  fingerprint: str | None = None) -> None:
    """Write a user-editable JSON bone map (``bone_map_document``)."""
    write_json(path, bone_map_document(mapping, rig, fingerprint))


def parse_bone_map(data: object, source: str) -> dict[str, str]:
    """joint -> bone of a bone-map JSON object (``bone_map_document`` or a plain {joint: bone} object).

    Raises ValueError naming ``source`` and the offending field.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a JSON object (a bone map), got {type(data).__name__}")  # noqa: TRY004
    field = ""
    joints = data
    if "joints" in data or "format" in data:
        if data.get("format", FORMAT) != FORMAT:
            raise ValueError(f"{source}: field 'format' is {data['format']!r}, expected {FORMAT!r}")
        if data.get("version", VERSION) != VERSION:
            raise ValueError(f"{source}: field 'version' is {data['version']!r}; this add-on reads version {VERSION}")
        if "joints" not in data:
            raise ValueError(f"{source}: field 'joints' is missing")
        joints, field = data["joints"], "joints."
        if not isinstance(joints, dict):
            raise ValueError(f"{source}: field 'joints' must be an object of joint -> bone name, "
                             f"not {type(joints).__name__}")
    unknown = [j for j in joints if j not in JOINTS]
    if unknown:
        raise ValueError(f"{source}: unknown joints {unknown} (field '{field}{unknown[0]}'); "
                         f"allowed: {', '.join(JOINTS)}")
    for joint, bone in joints.items():
        if bone is not None and not isinstance(bone, str):
            raise ValueError(f"{source}: field '{field}{joint}' must be a bone name (a string), not {bone!r}")
    return {j: b for j, b in joints.items() if b}


def read_json(path: str | Path) -> object:
    """Parsed JSON of a file; ValueError naming the file, line and column when it is not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a UTF-8 text file ({exc.reason})") from None


def load_bone_map(path: str | Path) -> dict[str, str]:
    """Read a JSON bone map written by ``save_bone_map`` (or a plain {joint: bone} object)."""
    return parse_bone_map(read_json(path), str(path))
