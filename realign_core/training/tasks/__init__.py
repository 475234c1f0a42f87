"""One training task per model kind (``vae``, ``denoiser``, ``motion_denoiser`` (mdm), ``reward``
(+ reward_plain), ``latent_reward`` (the reward on the generator's latents), ``evaluator``): losses, validation and the selection metric, run by
``realign_core.training.trainer.Trainer``."""
