"""Layered body parts: one motion's arm on another motion's body (e.g. "a person waves with the right hand"
on "a person walks forward").

The training data rarely holds two actions done at once (no clip of the CMU set walks and waves), so a
single prompt asking for both gets the walk only.  A layer composes them at sampling time instead:

1. ``part_layer(pipe, caption, part, frames, seed, ...)`` generates the part's own motion and reads the
   part's joints off it as offsets from their anchors (the shoulders) in the body's facing frame
   (``control_spec.PartLayer``);
2. the base prompt is generated with the layer as a constraint (``ControlSpec(part=layer)``; the ``part``
   cost of ``guidance.constraints`` pulls the decoded arm onto the layer while the denoiser keeps the rest
   of the body consistent with it);
3. ``layer_part`` then sets the part's joints exactly (as keyed poses are met exactly by the warp): each
   layered joint = its anchor in the base motion + the layer's offset, so the arm stays attached to the
   shoulder wherever the body walks or turns, with the layer's bone lengths (every motion shares the
   reference skeleton).

Only the root-relative joint positions (the ric features, from which the joints are recovered) are set;
the part's rot6d and velocity features keep the base motion's values.
"""
from __future__ import annotations

import numpy as np

from realign_core.guidance.control_spec import PartLayer, part_joints

RIC = slice(4, 67)


def layer_part(features: np.ndarray, layer: PartLayer) -> np.ndarray:
    """(F, 263) canonical features -> a copy whose layered joints sit at anchor + the layer's offsets."""
    out = np.array(features, dtype=np.float32, copy=True)
    frames = len(out)
    ric = out[:, RIC].reshape(frames, -1, 3)                 # joints 1..21; a view into out
    joints, anchors = part_joints(layer.part)
    for k, (j, a) in enumerate(zip(joints, anchors)):
        ric[:, j - 1] = ric[:, a - 1] + layer.offsets[:frames, k]
    return out


def part_layer(pipe, caption: str, part: str, frames: int, seed: int, cfg=None, guidance=None,
               callback=None, with_features: bool = False):
    """Generate ``caption`` (frames at 20 fps, ``seed``) and read ``part``'s layer off it; with
    ``with_features`` -> (layer, the part motion's features (frames, 263))."""
    from realign_core.pipeline import SamplingConfig

    if not caption.strip():
        raise ValueError("part prompt is empty")
    part_joints(part)   # an unknown part fails before generating
    out = pipe([caption], [frames], [seed], cfg or SamplingConfig(), guidance, callback=callback)
    features = out.features[0, :frames].cpu().numpy()
    layer = PartLayer.from_features(part, features)
    return (layer, features) if with_features else layer


__all__ = ["layer_part", "part_layer"]
