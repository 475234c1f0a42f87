"""One training task per model kind (``vae``, ``denoiser``, ``motion_denoiser`` (mdm), ``reward``
(+ reward_plain), ``evaluator``): losses, validation and the selection metric, run by
``realign_core.training.trainer.Trainer``."""
