"""ReAlign for Blender: text to motion on your own armature.

Generation runs in a separate local server (no torch inside Blender); this
extension sends prompts, retargets the returned 22-joint motions onto the
active armature (numpy only) and keys them as new Actions and NLA strips.
"""
from __future__ import annotations

import bpy

from . import batch_import, body_operators, control_ops, jobs, map_operators, operators, props, server_launch, ui

_CLASSES = (operators.CLASSES + body_operators.CLASSES + map_operators.CLASSES + batch_import.CLASSES
            + control_ops.CLASSES + ui.CLASSES)


def register() -> None:
    props.register()
    for cls in _CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    jobs.cancel_all()
    for process in operators.SERVER_PROCESS:  # servers started by Start server end with the add-on
        server_launch.stop(process)
    operators.SERVER_PROCESS.clear()
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
    props.unregister()
