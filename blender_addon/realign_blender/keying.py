"""Writing keyframes into Actions across Blender 4.2-5.0 (one compatibility function).

4.2/4.3 key into ``action.fcurves``; 4.4+ actions are layered and slotted:
channels live in a channelbag of a keyframe strip for the slot of the ID
(5.0 removed ``Action.fcurves`` altogether).
"""
from __future__ import annotations

import bpy
import numpy as np


def action_channels(action: bpy.types.Action, obj: bpy.types.Object):
    """The F-curve collection of ``action`` for ``obj``: (fcurves, group factory, slot or None).

    The only place that knows the Blender version differences: 4.4+ gets
    (or makes) a slot for the object, a layer, a keyframe strip and its
    channelbag; 4.2/4.3 use ``action.fcurves``. ``group(name)`` returns an
    F-curve group of that name, created when missing.
    """
    if not hasattr(action, "slots"):  # 4.2 / 4.3
        def legacy_group(name: str):
            return action.groups.get(name) or action.groups.new(name)
        return action.fcurves, legacy_group, None
    slot = action.slots[0] if len(action.slots) else action.slots.new(id_type="OBJECT", name=obj.name)
    try:
        from bpy_extras.anim_utils import action_ensure_channelbag_for_slot
        bag = action_ensure_channelbag_for_slot(action, slot)
    except ImportError:  # 4.4 / 4.5
        layer = action.layers[0] if len(action.layers) else action.layers.new("Layer")
        strip = layer.strips[0] if len(layer.strips) else layer.strips.new(type="KEYFRAME")
        bag = strip.channelbag(slot, ensure=True)

    def group(name: str):
        return bag.groups.get(name) if name in bag.groups else bag.groups.new(name)
    return bag.fcurves, group, slot


def write_curves(action: bpy.types.Action, obj: bpy.types.Object, frames: np.ndarray,
                 channels: list[tuple[str, int, str, np.ndarray]]) -> int:
    """Key many channels at once with ``foreach_set``.

    frames: (F,) scene frame numbers; channels: (data_path, index, group
    name, values (F,)). Returns the number of keys written.
    """
    fcurves, group, _ = action_channels(action, obj)
    coords = np.empty((len(frames), 2), np.float32)
    coords[:, 0] = frames
    total = 0
    for path, index, group_name, values in channels:
        fc = fcurves.find(path, index=index) or fcurves.new(path, index=index)
        fc.group = group(group_name)
        fc.keyframe_points.clear()
        fc.keyframe_points.add(len(frames))
        coords[:, 1] = values
        fc.keyframe_points.foreach_set("co", coords.ravel())
        fc.keyframe_points.foreach_set("interpolation", np.full(len(frames), _LINEAR, np.int32))
        fc.update()
        total += len(frames)
    return total


_LINEAR = 1  # enum index of 'LINEAR' in Keyframe.interpolation ('CONSTANT', 'LINEAR', 'BEZIER', ...)


def assign_slot(anim_data, action: bpy.types.Action, target) -> None:
    """Point an NLA strip or AnimData at the action's first slot where the API has slots (4.4+)."""
    if hasattr(target, "action_slot") and hasattr(action, "slots") and len(action.slots):
        try:
            target.action_slot = action.slots[0]
        except (AttributeError, TypeError, RuntimeError):
            pass
