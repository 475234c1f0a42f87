"""Load the add-on's pure-Python modules without Blender (its __init__ needs bpy).

The add-on is staged once per process with build.py's ``stage_addon`` into a temporary
folder -- the files the zip ships: blender_addon/realign_blender plus the vendored
server/client.py, realign_core/motion/skeleton.py and kinematics.py -- and its modules are
imported as submodules of the package ``realign_addon`` (whose __init__, which registers
the add-on with bpy, is not run), so their relative imports resolve as in Blender.
"""
from __future__ import annotations

import atexit
import importlib
import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[1]
ADDON_DIR = REPO_ROOT / "blender_addon" / "realign_blender"
SCRIPTS_DIR = ADDON_DIR.parent / "scripts"
PACKAGE = "realign_addon"


def _module_from_file(key: str, path: Path) -> ModuleType:
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


def staged_addon() -> Path:
    """The staged add-on folder, registered as the package ``realign_addon`` (staged on first use)."""
    package = sys.modules.get(PACKAGE)
    if package is not None:
        return Path(package.__path__[0])
    build = _module_from_file("realign_build_script", REPO_ROOT / "build.py")
    parent = Path(tempfile.mkdtemp(prefix="realign-addon-"))
    atexit.register(shutil.rmtree, parent, True)
    stage = build.stage_addon(parent / "realign_blender")
    package = ModuleType(PACKAGE, "the staged add-on, its __init__ not run (it needs bpy)")
    package.__path__ = [str(stage)]
    package.__package__ = PACKAGE
    sys.modules[PACKAGE] = package
    return stage


def load(name: str, folder: Path | None = None) -> ModuleType:
    """The staged add-on's module ``name`` (``realign_addon.<name>``), or ``folder/<name>.py`` as a
    stand-alone module ``realign_addon_<name>`` (the scripts in blender_addon/scripts)."""
    if folder is not None:
        return _module_from_file(f"realign_addon_{name}", folder / f"{name}.py")
    staged_addon()
    return importlib.import_module(f"{PACKAGE}.{name}")
