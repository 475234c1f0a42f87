"""The networks: plain ``nn.Module`` s, each with the loader that rebuilds it from a checkpoint.

* ``motion_vae``       MLD-style temporal-latent motion VAE (``MotionVAE``, ``load_vae``)
* ``latent_denoiser``  epsilon-denoiser over VAE latents (``LatentDenoiser``, ``load_denoiser``)
* ``motion_denoiser``  MDM-style x0-denoiser on the features (``MotionDenoiser``, ``load_motion_denoiser``)
* ``reward_model``     ReAlign's step-aware reward model (``RewardModel``, ``load_reward_checkpoint``)
* ``evaluator``        the independent Guo et al.-style evaluator (scoring only)
* ``skip_transformer`` the shared transformer backbone
* ``checkpoint``       loading checkpoints (config + weights, no pickled classes) and fp16 export
* ``layout``           the model folder's layout (torch-free)

Models never import schedulers, samplers, guidance or training code.
"""
