"""Text -> motion: text encoder + base generator + sampler (+ ReAlign reward guidance).

``TextToMotionPipeline.from_checkpoints(root, generator="mld")`` loads the base
generator (``mld``: root/vae + root/denoiser; ``mdm``: root/mdm), and, when
present, the step-aware reward model root/reward/best.pt with its embedding
bank root/reward/bank.pt and the calibration root/guidance.toml; for ``mld`` also the latent reward
model root/latent_reward/best.pt (with root/latent_reward/bank.pt if built), which guidance uses when a
request asks for ``GuidanceSettings.reward_space = "latent"`` (no VAE decode in the guided steps).

``pipeline(captions, frames, seeds, sampling, guidance)`` returns a
``MotionOutput``: un-normalised 263-dim features (B, T, 263), their mask, the
guidance trace of the run and, with ``return_joints=True``, per-sample joints
(F, 22, 3) metres, Y up, 20 fps (``to_joints`` does the same afterwards).  Each sample draws its noise from its own
seeded generator, so a sample does not depend on what else is in the batch, and
changing only the guidance keeps the noise.  Guidance with strength 0 (or None)
runs the plain sampler, bit-identical to an unguided pipeline.

``control`` (a ``ControlSpec`` for every sample, or a list with one per sample, None = free) adds the
constraint hook of :mod:`realign_core.guidance.constraints` after the reward hook (``guidance.compose``);
the returned joints of a constrained sample are placed in the world frame of its targets
(``ControlSpec.placement``); features stay canonical.  No control (or strength 0) adds no hook.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from realign_core.diffusion.generators import MAX_FRAMES, BaseGenerator, load_generator
from realign_core.diffusion.sampling import NoiseSchedule, denoise_loop
from realign_core.diffusion.schedulers import LIBRARY_SAMPLERS, LibraryConfig, LibraryScheduler
from realign_core.guidance.compose import compose
from realign_core.guidance.constraints import ConstraintGuidance, ConstraintSchedule, ConstraintTrace
from realign_core.guidance.control_spec import ControlSpec
from realign_core.guidance.reward_bank import RewardBank
from realign_core.guidance.reward_guidance import GuidanceCalibration, GuidanceSettings, GuidanceTrace, RewardGuidance
from realign_core.models.latent_reward import check_matches_generator, load_latent_reward_checkpoint
from realign_core.models.layout import bank_path, checkpoint_path, guidance_path
from realign_core.models.reward_model import load_reward_checkpoint
from realign_core.motion.features import features_to_joints
from realign_core.motion.foot_lock import lock_features
from realign_core.text.encoder import TextEncoder, load_text_encoder

__all__ = ["MAX_FRAMES", "SAMPLERS", "MotionOutput", "SamplingConfig", "TextToMotionPipeline"]

SAMPLERS = LIBRARY_SAMPLERS   # all diffusers' schedulers (realign_core/diffusion/schedulers.py)
# Default timestep spacing: "leading" (MLD's) for the one-step samplers; the multistep solvers start at T-1
# ("trailing"), since a leading start (t = (n-1) T/n) moves their result more than their accuracy gains.
SPACING = {"ddim": "leading", "ddpm": "leading", "diffusers-ddim": "leading", "dpmsolver++": "trailing",
           "unipc": "trailing", "lcm": "leading"}   # lcm: its timesteps are the library's (schedulers.py)


@dataclass(frozen=True)
class SamplingConfig:
    sampler: str = "ddim"            # one of SAMPLERS
    steps: int = 50
    cfg_scale: float | None = None   # None = guidance.toml's cfg_scale, else the generator's (MLD 7.5, MDM 2.5)
    eta: float = 0.0                 # DDIM's eta (not the M2M reward weight)
    spacing: str | None = None       # timestep spacing "leading"/"trailing"; None = the sampler's (SPACING)
    foot_lock: bool | None = None    # remove sliding over planted feet (motion.foot_lock); None = guidance.toml's


@dataclass
class MotionOutput:
    """What one pipeline call returns.

    features: (B, T_max, 263) un-normalised HumanML3D features, zero on padding;
    mask: (B, T_max) bool, True on the real feature rows (20 fps);
    guidance: the trace of the reward-guidance hook (per guided step the mean rewards and the
    seconds spent), None when the run was unguided;
    joints: per sample (F_i, 22, 3) float32 metres, Y up, 20 fps, when asked for (else None).
    """

    features: Tensor
    mask: Tensor
    guidance: GuidanceTrace | None = None
    joints: list[np.ndarray] | None = None
    constraints: ConstraintTrace | None = None

    @property
    def lengths(self) -> list[int]:
        """Real frames per sample."""
        return [int(m) for m in self.mask.sum(1)]


@dataclass
class RewardParts:
    """The reward model with what guidance needs besides it."""

    model: object                  # RewardModel
    schedule: NoiseSchedule        # its training noise schedule
    bank: RewardBank | None


class TextToMotionPipeline:
    """Wires the frozen text encoder, a base generator, a sampler and (optionally) reward guidance."""

    def __init__(self, generator: BaseGenerator, text_encoder: TextEncoder | None = None,
                 reward: RewardParts | None = None, calibration: GuidanceCalibration = GuidanceCalibration(),
                 latent_reward: RewardParts | None = None):
        self.generator, self.reward, self.calibration = generator, reward, calibration
        self.latent_reward = latent_reward   # the reward on the generator's latents (reward_space "latent")
        self.device = generator.device
        self.text = text_encoder or load_text_encoder(self.device)
        self.max_frames = generator.max_frames
        self.normalizer = generator.normalizer

    @classmethod
    def from_checkpoints(cls, root: str | Path, device: str | torch.device = "cpu",
                         text_encoder: TextEncoder | None = None, generator: str = "mld",
                         reward_kind: str | None = "reward") -> "TextToMotionPipeline":
        """Load from a model root; ``reward_kind`` None (or a missing checkpoint) = no guidance available."""
        root = Path(root)
        gen = load_generator(root, generator, device)
        reward = load_reward_parts(root, reward_kind, device) if reward_kind else None
        latent = load_latent_reward_parts(root, gen, device) if reward_kind and generator == "mld" else None
        return cls(gen, text_encoder, reward, GuidanceCalibration.load(guidance_path(root), generator), latent)

    @property
    def has_reward(self) -> bool:
        return self.reward is not None

    @property
    def has_reference_bank(self) -> bool:
        """Whether the motion-to-motion reward (``GuidanceSettings.eta`` > 0) of the reward model that guides
        by default (guidance.toml's ``reward_space``) has its embedding bank."""
        parts = self.latent_reward if self.default_guidance.reward_space == "latent" else self.reward
        return parts is not None and parts.bank is not None

    @property
    def default_guidance(self) -> GuidanceSettings:
        return self.calibration.defaults

    @property
    def default_sampling(self) -> SamplingConfig:
        """The sampler, step count and CFG scale validated for these models (guidance.toml ``sampler`` /
        ``steps`` / ``cfg_scale``), else :class:`SamplingConfig`'s (DDIM, 50 steps) and the generator's CFG."""
        c = self.calibration
        return SamplingConfig(sampler=c.sampler or SamplingConfig.sampler, steps=c.steps or SamplingConfig.steps,
                              cfg_scale=self.default_cfg, foot_lock=self.default_foot_lock)

    @property
    def default_cfg(self) -> float:
        """The classifier-free guidance scale of requests that give none: guidance.toml's validated
        ``cfg_scale``, else the generator's default."""
        c = self.calibration.cfg_scale
        return self.generator.default_cfg if c is None else c

    @property
    def default_foot_lock(self) -> bool:
        """Whether takes without constraints are foot-locked when a request does not say: guidance.toml's
        ``foot_lock``, chosen on validation by ``realign choose-foot-lock`` (off without one)."""
        return bool(self.calibration.foot_lock)

    @property
    def control_sampling(self) -> SamplingConfig:
        """The default sampling of controlled takes (paths, keyed poses, loops, sequences): guidance.toml's
        ``control_steps``, else :attr:`default_sampling`."""
        default = self.default_sampling
        return replace(default, steps=self.calibration.control_steps or default.steps)

    @property
    def constraint_schedule(self) -> ConstraintSchedule:
        """The constraint hook's default schedule, with guidance.toml's ``control_path_iterations`` and
        ``control_path_weight``."""
        return ConstraintSchedule(path_iterations=self.calibration.control_path_iterations,
                                  path_weight=self.calibration.control_path_weight)

    def guidance_problem(self, settings: GuidanceSettings | None) -> tuple[str, str] | None:
        """Why these models cannot run ``settings``, as (field, reason), or None when they can."""
        if settings is None or not settings.active:
            return None
        if settings.reward_space == "latent":
            return self._latent_problem(settings)
        if self.reward is None:
            return ("strength", "guidance needs a reward model (reward/best.pt) in the model folder; these "
                                "models have none, so the strength must be 0")
        if settings.eta > 0 and self.reward.bank is None:
            return ("eta", "the motion-to-motion reward (eta > 0) needs the embedding bank reward/bank.pt "
                           "(`realign bank`); these models have none, so eta must be 0")
        return None

    def _latent_problem(self, settings: GuidanceSettings) -> tuple[str, str] | None:
        """``guidance_problem`` of a request for the latent reward."""
        if self.latent_reward is None:
            return ("reward_space", ("the latent reward needs latent_reward/best.pt (`realign train "
                                     "latent_reward`) beside an MLD generator; these models have none, so use "
                                     "reward_space 'motion'"))
        if settings.eta > 0 and self.latent_reward.bank is None:
            return ("eta", ("the motion-to-motion reward of the latent reward (eta > 0) needs "
                            "latent_reward/bank.pt; these models have none, so eta must be 0"))
        return None

    def make_sampler(self, cfg: SamplingConfig, guided: bool = False):
        """The sampler of ``cfg`` with its timesteps set; ``guided`` turns UniPC's corrector off (it would
        drop the guidance update, see realign_core/diffusion/schedulers.py)."""
        if cfg.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {cfg.sampler!r}")
        common = {"prediction_type": self.generator.prediction_type,
                  "timestep_spacing": cfg.spacing or SPACING[cfg.sampler]}
        if cfg.sampler == "lcm":
            settings = self._consistency(cfg)[1]
            common.update(original_steps=settings["original_steps"], timestep_scaling=settings["timestep_scaling"])
        sampler = LibraryScheduler(cfg.sampler, self.generator.schedule,
                                   LibraryConfig(eta=cfg.eta, corrector=not guided, **common))
        sampler.set_timesteps(cfg.steps)
        return sampler

    def _consistency(self, cfg: SamplingConfig) -> tuple:
        """The generator's consistency denoiser and settings for the 'lcm' sampler; ValueError when the
        generator has none or ``cfg.cfg_scale`` asks for another CFG scale than the one distilled into it."""
        if not hasattr(self.generator, "consistency"):
            raise ValueError(f"sampler 'lcm' needs a consistency-distilled latent denoiser; the "
                             f"{self.generator.name} generator has none")
        model, settings = self.generator.consistency()
        if cfg.cfg_scale is not None and abs(cfg.cfg_scale - settings["cfg_scale"]) > 1e-6:
            raise ValueError(f"cfg_scale: the 'lcm' sampler's denoiser has CFG {settings['cfg_scale']:g} distilled "
                             f"in; got {cfg.cfg_scale:g} (leave it unset, or use another sampler)")
        return model, settings

    @property
    def consistency_cfg(self) -> float | None:
        """The CFG scale distilled into the generator's consistency denoiser (the 'lcm' sampler's only scale, which
        may differ from ``default_cfg``, the other samplers'), or None without one; the model itself is built on
        the sampler's first use."""
        return getattr(self.generator, "consistency_cfg", None)

    def sampler_problem(self, sampler: str, cfg_scale: float | None = None) -> tuple[str, str] | None:
        """(field, reason) when these models cannot run ``sampler`` at ``cfg_scale`` (the 'lcm' sampler without a
        consistency denoiser, or at another CFG scale than the one distilled into it), else None."""
        if sampler != "lcm":
            return None
        try:
            self._consistency(SamplingConfig("lcm", 1, cfg_scale=cfg_scale))
        except FileNotFoundError as err:
            return "sampler", str(err)
        except ValueError as err:
            return ("cfg" if str(err).startswith("cfg_scale") else "sampler"), str(err)
        return None

    def make_guidance(self, captions: list[str], lengths: Tensor, settings: GuidanceSettings | None,
                      timesteps: list[int]) -> RewardGuidance | None:
        """The reward-guidance hook for these prompts, or None when guidance is off."""
        if settings is None or not settings.active:
            return None
        problem = self.guidance_problem(settings)
        if problem is not None:
            raise ValueError(f"guidance.{problem[0]}: {problem[1]}")
        parts = self.latent_reward if settings.reward_space == "latent" else self.reward
        reward = parts.model
        text_emb = reward.encode_text(captions)
        ref_emb = parts.bank.retrieve(text_emb)[0] if settings.eta > 0 else None
        return RewardGuidance(self.generator, reward, lengths, text_emb, ref_emb, settings,
                              self.calibration.scale, timesteps, parts.schedule)

    def make_constraints(self, lengths: Tensor, control: ControlSpec | list[ControlSpec | None] | None,
                         timesteps: list[int], schedule: ConstraintSchedule | None = None
                         ) -> ConstraintGuidance | None:
        """The constraint hook of these samples' ControlSpecs, or None when none is active."""
        specs = control_list(control, len(lengths))
        if not any(s is not None and s.active for s in specs):
            return None
        return ConstraintGuidance(self.generator, lengths, specs, timesteps, schedule or self.constraint_schedule)

    @torch.no_grad()
    def __call__(self, captions: list[str], frames: list[int], seeds: list[int],
                 cfg: SamplingConfig = SamplingConfig(), guidance: GuidanceSettings | None = None,
                 callback=None, return_joints: bool = False,
                 control: ControlSpec | list[ControlSpec | None] | None = None,
                 constraint_schedule: ConstraintSchedule | None = None) -> MotionOutput:
        """Generate one motion per caption; frames are feature rows at 20 fps (see ``MotionOutput``)."""
        if not (len(captions) == len(frames) == len(seeds)):
            raise ValueError("captions, frames and seeds must have the same length")
        bad = [f for f in frames if not 1 <= int(f) <= self.max_frames]
        if bad:
            raise ValueError(f"frames must be in [1, {self.max_frames}], got {bad}")
        gen = self.generator
        text_emb = self.text.encode_sentences(captions).to(self.device)
        seeded = [torch.Generator().manual_seed(int(s)) for s in seeds]
        sampler = self.make_sampler(cfg, guided=guidance is not None and guidance.active)
        lengths = torch.tensor([int(f) for f in frames], device=self.device)
        hook = self.make_guidance(list(captions), lengths, guidance, sampler.timesteps)
        constraint = self.make_constraints(lengths, control, sampler.timesteps, constraint_schedule)
        cfg_scale = self.default_cfg if cfg.cfg_scale is None else cfg.cfg_scale
        model_fn = gen.consistency_fn(text_emb, lengths) if cfg.sampler == "lcm" else gen.model_fn(text_emb, lengths)
        x = denoise_loop(model_fn, sampler, gen.state_shape(len(captions)), seeded,
                         cfg_scale, guidance=compose([hook, constraint]), callback=callback, device=self.device)
        feats = self.normalizer.denormalize(gen.to_features(x, lengths))
        mask = torch.arange(feats.shape[1], device=self.device)[None] < lengths[:, None]
        feats = feats * mask[..., None]
        if self.default_foot_lock if cfg.foot_lock is None else cfg.foot_lock:
            feats = self._lock_feet(feats, lengths, control_list(control, len(captions)))
        joints = None
        if return_joints:
            joints = self.to_joints(feats, mask)
            specs = control_list(control, len(joints))
            joints = [j if s is None else s.placement().to_world(j).astype(np.float32) for j, s in zip(joints, specs)]
        return MotionOutput(feats, mask, hook.trace if hook is not None else None, joints,
                            constraint.trace if constraint is not None else None)

    @staticmethod
    def _lock_feet(feats: Tensor, lengths: Tensor, specs: list[ControlSpec | None]) -> Tensor:
        """``lock_features`` on each sample's real rows, except samples with active constraints (a path, keyed
        poses or a loop pin the root; the lock would move it off them)."""
        out = feats.clone()
        for i, (n, spec) in enumerate(zip(lengths.tolist(), specs)):
            if spec is None or not spec.active:
                out[i, :n] = lock_features(feats[i, :n])
        return out

    @staticmethod
    def to_joints(features: Tensor, mask: Tensor) -> list[np.ndarray]:
        """Per sample (F_i, 22, 3) float32 joints in metres, Y up, 20 fps."""
        return [features_to_joints(features[i, :int(mask[i].sum())].cpu().numpy()) for i in range(len(features))]


def control_list(control: ControlSpec | list[ControlSpec | None] | None, batch: int) -> list[ControlSpec | None]:
    """One ControlSpec (or None) per sample: a single spec applies to every sample."""
    if control is None or isinstance(control, ControlSpec):
        return [control] * batch
    specs = list(control)
    if len(specs) != batch:
        raise ValueError(f"control: got {len(specs)} specs for {batch} motions")
    return specs


def load_reward_parts(root: Path, kind: str, device: str | torch.device) -> RewardParts | None:
    """Reward model root/KIND/best.pt with its bank (if built); None when the checkpoint is absent."""
    path = checkpoint_path(root, kind)
    if not path.is_file():
        return None
    model, ckpt = load_reward_checkpoint(path, device)
    for p in model.parameters():
        p.requires_grad_(False)
    bank_file = bank_path(root, kind)
    bank = RewardBank.load(bank_file, path) if bank_file.is_file() else None
    cfg = ckpt["config"]   # the reward's training noise schedule, which guidance matches by noise level
    return RewardParts(model, NoiseSchedule.make(cfg.get("schedule", "scaled_linear"),
                                                 cfg.get("num_train_steps", 1000)), bank)


def load_latent_reward_parts(root: Path, generator: BaseGenerator, device: str | torch.device) -> RewardParts | None:
    """Latent reward model root/latent_reward/best.pt (with its bank if built) for this MLD generator;
    None when absent.  A checkpoint trained on another VAE / latent scale is an error naming the file."""
    path = checkpoint_path(root, "latent_reward")
    if not path.is_file():
        return None
    model, ckpt = load_latent_reward_checkpoint(path, device)
    cfg = ckpt["config"]
    check_matches_generator(cfg, generator.latent_scale, generator.state_shape(1)[1:], path)
    model.requires_grad_(False)
    bank_file = bank_path(root, "latent_reward")
    bank = RewardBank.load(bank_file, path) if bank_file.is_file() else None
    return RewardParts(model, NoiseSchedule.make(cfg["schedule"], cfg["num_train_steps"]), bank)
