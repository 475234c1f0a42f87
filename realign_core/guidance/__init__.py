"""Guidance hooks the sampler calls after each reverse step.

* ``reward_guidance`` ReAlign's step-aware reward guidance (T2M + M2M rewards)
* ``reward_bank``     the training-motion embedding bank of the M2M reward
* ``control_spec``    validated paths, keyed poses and loops, and where a motion is placed (``ControlSpec``)
* ``constraints``     their differentiable costs on the decoded motion, as a hook (``ConstraintGuidance``)
* ``compose``         several hooks in order (reward guidance, then constraints)

``from realign_core.guidance import GuidanceSettings`` keeps working (re-exported here).
"""
from realign_core.guidance.reward_guidance import (
                                                   PLACEMENTS,
                                                   GuidanceCalibration,
                                                   GuidanceSettings,
                                                   GuidanceTrace,
                                                   RewardGuidance,
                                                   guided_step_indices,
                                                   matching_timesteps,
)

__all__ = ["PLACEMENTS", "GuidanceCalibration", "GuidanceSettings", "GuidanceTrace", "RewardGuidance",
           "guided_step_indices", "matching_timesteps"]
