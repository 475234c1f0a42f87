"""Load the add-on's pure-Python modules without Blender (its __init__ needs bpy)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ADDON_DIR = Path(__file__).resolve().parents[1] / "blender_addon" / "realign_blender"
SCRIPTS_DIR = ADDON_DIR.parent / "scripts"


def load(name: str, folder: Path = ADDON_DIR) -> ModuleType:
    """Import ``blender_addon/realign_blender/<name>.py`` (or ``folder/<name>.py``) as a stand-alone module
    ``realign_addon_<name>``."""
    key = f"realign_addon_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module
