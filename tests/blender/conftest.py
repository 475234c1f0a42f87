"""Blender tests: the built extension zip installed into real bpy (5.0.1 / 4.5.15).

Run through ``python build.py blender-test`` (or ``build.py test``), which
builds the zip, points REALIGN_ADDON_ZIP at it and runs this folder in each
bpy environment. Without bpy the tests skip with the reason.
"""
from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path

import pytest

# Isolated user resources (extensions repo, config) before bpy is imported.
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="realign-blender-user-"))
REPO = Path(__file__).resolve().parents[2]
MODULE = "bl_ext.user_default.realign_blender"
NO_BPY = ("bpy is not installed here: the Blender tests run in .venv-bpy50 and .venv-bpy45 via "
          "'python build.py blender-test' (part of 'python build.py test')")


def addon_zip() -> Path:
    """The zip under test: $REALIGN_ADDON_ZIP, else the newest dist/realign_blender-*.zip."""
    env = os.environ.get("REALIGN_ADDON_ZIP")
    if env:
        return Path(env)
    zips = sorted((REPO / "dist").glob("realign_blender-*.zip"), key=lambda p: p.stat().st_mtime)
    if not zips:
        pytest.skip("no dist/realign_blender-*.zip: run 'python build.py addon' first")
    return zips[-1]


@pytest.fixture(scope="session")
def installed():
    """Install and enable the built zip once; returns the add-on package module."""
    bpy = pytest.importorskip("bpy", reason=NO_BPY)
    result = bpy.ops.extensions.package_install_files(repo="user_default", filepath=str(addon_zip()),
                                                      enable_on_install=True)
    assert result == {"FINISHED"}
    return importlib.import_module(MODULE)


@pytest.fixture()
def addon(installed):
    """A fresh empty scene with the add-on enabled; returns the add-on package module."""
    import addon_utils
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable(MODULE, default_set=True)
    assert hasattr(bpy.types.Scene, "realign"), "the add-on did not register"
    yield installed
    installed.jobs.cancel_all()
