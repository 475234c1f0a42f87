"""Diffusion: noise schedules and the denoising loop (``sampling``), diffusers' samplers behind our
interface (``schedulers``) and the base generators (``generators``).

Models never import this package's generators; the pipeline composes them.
"""
from realign_core.diffusion.sampling import (
                                             PREDICTION_TYPES,
                                             SCHEDULE_KINDS,
                                             Cancelled,
                                             NoiseSchedule,
                                             Sampler,
                                             SamplerConfig,
                                             StepOutput,
                                             cfg_combine,
                                             denoise_loop,
                                             inference_timesteps,
                                             randn,
)
from realign_core.diffusion.schedulers import LIBRARY_SAMPLERS, LibraryConfig, LibraryScheduler

__all__ = ["LIBRARY_SAMPLERS", "PREDICTION_TYPES", "SCHEDULE_KINDS", "Cancelled", "LibraryConfig", "LibraryScheduler",
           "NoiseSchedule", "Sampler", "SamplerConfig", "StepOutput", "cfg_combine", "denoise_loop",
           "inference_timesteps", "randn"]
