"""Diffusion: noise schedules and samplers (``sampling``) and the base generators (``generators``).

Models never import this package's generators; the pipeline composes them.
``from realign_core.diffusion import DDIMSampler, denoise_loop`` keeps working: the
sampling names are re-exported here.
"""
from realign_core.diffusion.sampling import (
                                             PREDICTION_TYPES,
                                             SCHEDULE_KINDS,
                                             Cancelled,
                                             DDIMConfig,
                                             DDIMSampler,
                                             DDPMSampler,
                                             NoiseSchedule,
                                             Sampler,
                                             SamplerConfig,
                                             StepOutput,
                                             cfg_combine,
                                             denoise_loop,
                                             inference_timesteps,
                                             randn,
)

__all__ = ["PREDICTION_TYPES", "SCHEDULE_KINDS", "Cancelled", "DDIMConfig", "DDIMSampler", "DDPMSampler",
           "NoiseSchedule", "Sampler", "SamplerConfig", "StepOutput", "cfg_combine", "denoise_loop",
           "inference_timesteps", "randn"]
