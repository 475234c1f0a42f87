"""Rig maps that stay: a bone map saved for a rig is found again for any armature with the same bone names.

Maps live as JSON files (``bone_maps.bone_map_document``) in a folder, one
per rig *fingerprint*: a hash of the armature's sorted bone names, so the same
rig in another .blend file, or an imported copy of it, finds its map. The
default folder is the add-on's user folder (``user_store``), which survives
Blender restarts and add-on updates. Stdlib only, except ``user_store``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from . import bone_maps

FOLDER = "rig_maps"


def fingerprint(bone_names: list[str]) -> str:
    """16 hex digits identifying a set of bone names (order and duplicates ignored)."""
    text = "\n".join(sorted(set(bone_names)))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class SavedMap:
    """A map found in a store: joint -> bone, the file, and the rig name it was saved from."""

    mapping: dict[str, str]
    path: Path
    rig: str


class MapStore:
    """A folder of saved bone maps, ``<fingerprint>.json`` each."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def path(self, bone_names: list[str]) -> Path:
        """The file a rig's map is saved in."""
        return self.folder / f"{fingerprint(bone_names)}.json"

    def save(self, bone_names: list[str], mapping: dict[str, str], rig: str) -> Path:
        """Save (replace) the map of the rig with these bone names; returns the file.

        Raises ValueError, writing nothing, when the map names bones the rig lacks.
        """
        absent = sorted({b for b in mapping.values() if b and b not in set(bone_names)})
        if absent:
            raise ValueError(f"not saved: the rig {rig!r} has no bones named {absent}")
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(bone_names)
        bone_maps.save_bone_map(path, mapping, rig, fingerprint(bone_names))
        return path

    def find(self, bone_names: list[str]) -> SavedMap | None:
        """The saved map of a rig with these bone names, None when there is none.

        Raises ValueError naming the file and field when the saved file is
        broken (hand-edited) or names bones the rig lacks.
        """
        path = self.path(bone_names)
        if not path.is_file():
            return None
        data = bone_maps.read_json(path)
        mapping = bone_maps.parse_bone_map(data, str(path))
        names = set(bone_names)
        for joint, bone in mapping.items():
            if bone not in names:
                raise ValueError(f"{path}: field 'joints.{joint}' names {bone!r}, which this rig does not have")
        rig = data.get("rig", "") if isinstance(data.get("rig", ""), str) else ""
        return SavedMap(mapping, path, rig)

    def forget(self, bone_names: list[str]) -> bool:
        """Delete the saved map of a rig; True if there was one."""
        path = self.path(bone_names)
        if path.is_file():
            path.unlink()
            return True
        return False


def user_store() -> MapStore:
    """The store in the add-on's user folder (``bpy.utils.extension_path_user``; Blender's config folder
    when the add-on runs as a legacy add-on)."""
    import bpy

    try:
        folder = bpy.utils.extension_path_user(__package__, path=FOLDER, create=True)
    except (ValueError, AttributeError):
        folder = bpy.utils.user_resource("CONFIG", path=f"realign_{FOLDER}", create=True)
    return MapStore(folder)
