"""Conformance of our HumanML3D representation against the reference test vectors.

``realign check-representation --vectors humanml3d_reference_vectors.npz``
prints the maximum absolute error of every quantity over all clips, next to
the acceptance tolerance of the vectors' README.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from realign_core.motion import features as M

CONTINUOUS_TOLERANCE = 1e-5      # metres or radians
ROT6D_TOLERANCE = 1e-4
CONTACT_BORDERLINE = 1e-5        # |squared displacement - threshold| below this may flip
FEATURE_TOLERANCES = {f"features.{name}": (ROT6D_TOLERANCE if name == "rot6d" else CONTINUOUS_TOLERANCE)
                      for name in M.FEATURE_GROUPS if name != "foot_contact"}
INTERMEDIATES = {  # vectors key -> (ProcessedMotion attribute or None for uniform_skeleton, tolerance)
    "uniform_skeleton_positions": (None, CONTINUOUS_TOLERANCE),
    "ground_positions": ("ground_positions", CONTINUOUS_TOLERANCE),
    "ric_positions": ("ric_positions", CONTINUOUS_TOLERANCE),
    "root_rot_quat": ("root_rotation", CONTINUOUS_TOLERANCE),
    "cont6d_params": ("cont6d", ROT6D_TOLERANCE),
}


@dataclass
class ConformanceResult:
    max_error: dict[str, float]      # quantity -> max abs error over all clips
    tolerance: dict[str, float]      # quantity -> acceptance tolerance
    contact_flips: int               # foot-contact mismatches outside borderline frames
    borderline_flips: int            # mismatches on legitimately borderline frames

    @property
    def passed(self) -> bool:
        return self.contact_flips == 0 and all(self.max_error[k] <= self.tolerance[k] for k in self.max_error)

    def format(self) -> str:
        lines = [f"{'quantity':34s} {'max abs error':>14s} {'tolerance':>10s}"]
        for key, err in self.max_error.items():
            ok = "ok" if err <= self.tolerance[key] else "FAIL"
            lines.append(f"{key:34s} {err:14.2e} {self.tolerance[key]:10.0e}  {ok}")
        lines.append(f"{'foot contact flips':34s} {self.contact_flips:14d} {0:10d}  "
                     f"{'ok' if self.contact_flips == 0 else 'FAIL'} ({self.borderline_flips} on borderline frames)")
        return "\n".join(lines)


def check_vectors(path: str | Path) -> ConformanceResult:
    """Run our extraction and recovery on every clip of the vectors file and compare."""
    vec = np.load(path, allow_pickle=False)
    errors: dict[str, float] = {}
    tolerance = {**FEATURE_TOLERANCES, **{k: t for k, (_, t) in INTERMEDIATES.items()},
                 "recovered_joints": CONTINUOUS_TOLERANCE}
    flips = borderline = 0

    def record(key: str, ours: np.ndarray, ref: np.ndarray) -> None:
        if ours.shape != ref.shape:
            raise ValueError(f"{path}: {key} shape {ours.shape} != reference {ref.shape}")
        errors[key] = max(errors.get(key, 0.0), float(np.abs(ours - ref).max()))

    for i in range(int(vec["num_clips"])):
        x = vec[f"clip{i}_input_positions"]
        out = M.process_motion(x, vec["tgt_offsets"])
        ref = vec[f"clip{i}_features"]
        for key in FEATURE_TOLERANCES:
            sl = M.FEATURE_GROUPS[key.removeprefix("features.")]
            record(key, out.features[:, sl], ref[:, sl])
        for key, (attr, _) in INTERMEDIATES.items():
            ours = M.uniform_skeleton(x, vec["tgt_offsets"]) if attr is None else getattr(out, attr)
            record(key, ours, vec[f"clip{i}_{key}"])
        record("recovered_joints", M.features_to_joints(ref), vec[f"clip{i}_recovered_joints"])
        mismatch = out.foot_contacts != ref[:, M.FEATURE_GROUPS["foot_contact"]]
        near = np.abs(vec[f"clip{i}_foot_sqdisp"] - M.FOOT_CONTACT_THRESHOLD) < CONTACT_BORDERLINE
        flips += int((mismatch & ~near).sum())
        borderline += int((mismatch & near).sum())
    return ConformanceResult(errors, tolerance, flips, borderline)
