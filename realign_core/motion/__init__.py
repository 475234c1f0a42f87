"""Motion maths on the 22-joint SMPL/HumanML3D skeleton (numpy, plus torch twins where training needs them).

* ``skeleton``      joint names, parents, chains, reference offsets, mirror permutation (numpy only;
                    vendored into the Blender add-on by build.py)
* ``quaternion``    the quaternion helpers the feature extraction uses
* ``features``      (T, 22, 3) joints <-> (T-1, 263) HumanML3D features
* ``normalization`` per-dimension Mean/Std
* ``kinematics``    facing yaw, smoothing and run finding measured on joints
* ``resample``, ``conformance``

``from realign_core.motion import joints_to_features`` keeps working: the feature
functions are re-exported here.
"""
from realign_core.motion.features import (
                                          FEATURE_DIM,
                                          ProcessedMotion,
                                          canonicalize,
                                          features_to_joints,
                                          features_to_joints_torch,
                                          foot_contacts,
                                          joints_to_features,
                                          mirror_joints,
                                          process_motion,
                                          recover_root,
                                          uniform_skeleton,
)

__all__ = ["FEATURE_DIM", "ProcessedMotion", "canonicalize", "features_to_joints", "features_to_joints_torch",
           "foot_contacts", "joints_to_features", "mirror_joints", "process_motion", "recover_root",
           "uniform_skeleton"]
