"""The model-folder layout, torch-free: which kinds live where under a model root.

A model root (``models/default``, or the ``--out`` of ``realign train``) holds one folder
per kind, ``ROOT/KIND/best.pt`` (selected by validation; fp16 when exported), the training
``last.pt``, ``log.jsonl`` and ``curves.png``, plus for reward kinds the embedding bank
``ROOT/KIND/bank.pt`` and, at the root, the guidance calibration ``guidance.toml``.  ``latent_reward``
(the reward model that reads the MLD generator's latents) is trained after ``vae`` and ``denoiser``, and
so is ``denoiser_lcm`` (a low-rank adapter that turns that denoiser into a few-step consistency model).
"""
from __future__ import annotations

from pathlib import Path

KINDS = ("vae", "denoiser", "reward", "reward_plain", "evaluator", "evaluator_words", "mdm", "latent_reward",
         "denoiser_lcm")
GENERATOR_PARTS: dict[str, tuple[str, ...]] = {"mld": ("vae", "denoiser"), "mdm": ("mdm",)}
# Submodules only training uses (the reward models' reconstruction decoders): ``realign export`` leaves
# them out of the shipped checkpoint; training from that checkpoint starts them afresh.
TRAINING_ONLY_MODULES: dict[str, tuple[str, ...]] = {kind: ("decoder",)
                                                     for kind in ("reward", "reward_plain", "latent_reward")}
BEST_FILE = "best.pt"
LAST_FILE = "last.pt"
BANK_FILE = "bank.pt"
GUIDANCE_FILE = "guidance.toml"


def checkpoint_path(root: str | Path, kind: str) -> Path:
    """ROOT/KIND/best.pt: the checkpoint every loader reads."""
    return Path(root) / kind / BEST_FILE


def bank_path(root: str | Path, kind: str = "reward") -> Path:
    """ROOT/KIND/bank.pt: the training-motion embedding bank of reward model KIND."""
    return Path(root) / kind / BANK_FILE


def guidance_path(root: str | Path) -> Path:
    """ROOT/guidance.toml: the guidance settings chosen on the validation split."""
    return Path(root) / GUIDANCE_FILE


def generator_present(root: str | Path, generator: str) -> bool:
    """Whether ROOT holds every checkpoint of base generator ``generator`` ('mld': vae + denoiser; 'mdm')."""
    if generator not in GENERATOR_PARTS:
        raise ValueError(f"generator must be one of {tuple(GENERATOR_PARTS)}, got {generator!r}")
    return all(checkpoint_path(root, kind).is_file() for kind in GENERATOR_PARTS[generator])
