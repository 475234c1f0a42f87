"""Guidance hooks the sampler calls after each reverse step.

* ``reward_guidance`` ReAlign's step-aware reward guidance (T2M + M2M rewards)
* ``reward_bank``     the training-motion embedding bank of the M2M reward

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
