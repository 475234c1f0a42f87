"""Constraint guidance: differentiable costs on the decoded motion, as a ``denoise_loop`` hook.

Costs (per sample, (B,), on the canonical motion decoded from a state x; targets from
:class:`~realign_core.guidance.control_spec.ControlSpec`, brought into the canonical frame):

* ``path``      mean over the path's frames of |root_xz(t) - target(t)|^2 (m^2); root_xz is integrated
                from the root angular and linear velocity features (``motion.features.recover_root``,
                differentiable);
* ``keyframes`` mean over keyed frames and 22 joints of |joint - target|^2 (m^2), joints recovered by
                ``features_to_joints_torch``;
* ``part``      mean over frames and the layered part's joints of |(joint - anchor)(t) - offset(t)|^2 (m^2),
                both in the body's facing frame (the ric features; ``control_spec.PartLayer``): the part
                moves as in the layer wherever the body goes.  Weighted by the ControlSpec's
                ``part_weight`` (0 = off, the default: the layer is then only set after sampling);
* ``loop``      mean over the 263 normalised features of (x[L-1] - x[0])^2: the clip's extra last frame
                must be its first again.  HumanML3D features are all relative to the root (velocities in
                the facing frame, root-relative positions, rotations, contacts), so this matches pose,
                velocities and foot contacts while leaving the per-cycle root displacement free;
* ``foot``      planted feet do not slide: over the 4 foot joints (ankles, toes) and frame pairs (t, t+1),
                sum of c * |xz(t+1) - xz(t)|^2 / sum of c (m^2 per frame), c the soft contact weight of
                :class:`FootContact` (low above the clip's floor and slow; no gradient through c).  Weighted
                by the ControlSpec's ``foot_weight`` (0 = off).

The hook (``ConstraintGuidance``), at reverse step i with new sample x_prev and its x0 estimate:

1. decodes the x0 estimate (``generator.to_features``; the VAE decoder for MLD, a crop for MDM), evaluates
   each active cost C_k and its gradient g_k = dC_k/dx0 per sample (the decoder never mixes samples);
2. takes a Polyak step for each cost, delta = -w_i C_k / |g_k|^2 g_k: with a locally linear decoder it
   removes the fraction w_i of C_k, so the step needs no per-model calibration (unlike the reward's scale);
   each sample's step is clipped to an RMS of ``max_rms`` per state element;
3. moves x_prev by sqrt(abar_prev) * delta (x_prev = sqrt(abar_prev) x0 + ..., so this is the same change
   of its clean part).  After the last step abar_prev = 1 and the clean sample itself moves; there the
   hook repeats the step ``final_iterations`` times on the clean sample.

w_i = strength * base_weight * ramp(i) (times ``foot_weight`` for the foot cost), ramp rising linearly from
``start_fraction`` at the first step to 1 at the last.  The step-aware part is the sqrt(abar_prev) factor (a noisy state moves by its signal share)
and the refinement of the clean sample; a weight above 1 over-relaxes the Polyak step, which the costs'
curvature (the heading integrates into every later position) makes too short.  The defaults (weight 2, no
ramp, 24 refinement iterations) were chosen on the shipped MLD models with three path cases (walk on an
L-turn, run on an S-curve, jog on a circle, seeds 0-1, DDIM 50 steps): mean root deviation 4 / 22 / 7 cm
against 9 / 65 / 15 cm with weight 0.5, ramp from 0.25 and 8 iterations (docs/control.md).
Samples without a constraint of a kind get C_k = 0 and an exactly zero step.

Inpainting (motion-space generators, i.e. MDM, with a path): before the Polyak steps of a reverse step the
x0 estimate's root XZ velocity features are replaced by the ones that make the integrated root follow the
path under the sample's own heading (``inpaint_root``); the denoiser then fits the body and the heading to
them on the next step.  The gradient alone moves MDM's root poorly (its state is the features themselves,
so the heading's long lever arm dominates the path gradient).  ``inpaint_final`` repeats it on the clean
sample: the path is then met exactly (on by default: on three path cases it added 0-1 cm/frame of foot
skating to what the in-step inpainting costs, and removed 12-47 cm of mean deviation).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from realign_core.diffusion.generators import frame_mask
from realign_core.guidance.control_spec import ControlSpec, PartLayer, part_joints
from realign_core.motion.features import features_to_joints_torch, recover_root
from realign_core.motion.skeleton import FPS, LEFT_FOOT, NUM_JOINTS, RIGHT_FOOT

FOOT_JOINTS = LEFT_FOOT + RIGHT_FOOT   # ankles and toes

COST_KINDS = ("path", "keyframes", "part", "loop", "foot")
EPS = 1e-12


@dataclass(frozen=True)
class FootContact:
    """The foot cost's soft contact weight of a foot joint between frames t and t+1:
    c = sigmoid((height_m - h) / height_soft_m) * sigmoid((speed_m_s - v) / speed_soft_m_s), with h the
    higher of its two heights above the clip's floor (the ``floor_percentile`` of the lowest foot joint per
    frame, as ``realign control-bench`` measures skating) and v its 3-D speed.  5 cm is the skating
    measure's contact height; 0.9 m/s (4.5 cm per frame) is HumanML3D's contact-label threshold
    (``skeleton.FOOT_CONTACT_THRESHOLD``, 0.002 m^2 per frame).  Not ``kinematics.planted_feet``'s 0.25 m/s:
    that rule finds clean contacts and would miss the sliding feet this cost is for."""

    height_m: float = 0.05
    height_soft_m: float = 0.01
    speed_m_s: float = 0.9
    speed_soft_m_s: float = 0.2
    floor_percentile: float = 5.0


@dataclass(frozen=True)
class ConstraintSchedule:
    """How hard the constraints pull (see the module docstring); ``strength`` comes from the ControlSpec."""

    base_weight: float = 2.0
    start_fraction: float = 1.0
    final_iterations: int = 24
    path_iterations: int | None = None   # the refinement's iterations when a sample has a path (None =
                                         # final_iterations; guidance.toml's control_path_iterations)
    path_weight: float | None = None     # the path cost's base weight (None = base_weight; guidance.toml's
                                         # control_path_weight); the other kinds keep base_weight
    refine_regrow: float = 1.0      # refinement: a kept step's weight is multiplied by this (capped at the
                                    # step's weight); 1 = a halved weight never grows back
    max_rms: float = 0.5
    inpaint_root: bool = True       # motion-space generators (MDM): root velocities set from the path each step
    inpaint_final: bool = True      # ... and once more on the clean sample, before the refinement
    contact: FootContact = FootContact()   # the foot cost's contact weight

    def weight(self, step_index: int, total: int) -> float:
        ramp = 1.0 if total <= 1 else self.start_fraction + (1 - self.start_fraction) * step_index / (total - 1)
        return self.base_weight * ramp


@dataclass
class ConstraintTrace:
    """Per guided step, the mean cost of each kind before the update; seconds spent."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


class Targets:
    """The batch's targets as padded tensors (T = max length); built once per run."""

    def __init__(self, specs: list[ControlSpec | None], lengths: Tensor):
        b, frames, device = len(specs), int(lengths.max()), lengths.device
        self.lengths = lengths
        self.path = torch.zeros(b, frames, 2, device=device)
        self.path_mask = torch.zeros(b, frames, dtype=torch.bool, device=device)
        self.keys = torch.zeros(b, frames, NUM_JOINTS, 3, device=device)
        self.key_mask = torch.zeros(b, frames, dtype=torch.bool, device=device)
        self.part = torch.zeros(b, frames, NUM_JOINTS, 3, device=device)     # target offsets from the anchors
        self.part_joints = torch.zeros(b, NUM_JOINTS, dtype=torch.bool, device=device)
        self.part_anchor = torch.arange(NUM_JOINTS, device=device).repeat(b, 1)
        self.part_weight = torch.zeros(b, device=device)
        self.loop = torch.zeros(b, dtype=torch.bool, device=device)
        self.foot = torch.zeros(b, device=device)
        self.strength = torch.zeros(b, device=device)
        self.frame_mask = frame_mask(lengths, frames)
        for i, spec in enumerate(specs):
            if spec is None or not spec.active:
                continue
            spec.check_frames(int(lengths[i]))
            self.strength[i] = float(spec.strength)
            path = spec.canonical_path()
            if path is not None:
                path = path[:int(lengths[i])]
                self.path[i, :len(path)] = torch.as_tensor(path, dtype=torch.float32)
                self.path_mask[i, :len(path)] = True
            keys = spec.canonical_keyframes()
            if keys is not None:
                frames_k, joints = keys
                self.keys[i, list(frames_k)] = torch.as_tensor(joints, dtype=torch.float32)
                self.key_mask[i, list(frames_k)] = True
            if spec.part is not None and spec.part_weight > 0:
                self._add_part(i, spec.part, int(lengths[i]))
                self.part_weight[i] = float(spec.part_weight)
            self.loop[i] = bool(spec.loop)
            self.foot[i] = float(spec.foot_weight)

    def _add_part(self, i: int, layer: PartLayer, frames: int) -> None:
        joints, anchors = part_joints(layer.part)
        self.part[i, :frames, list(joints)] = torch.as_tensor(layer.offsets[:frames], dtype=torch.float32)
        self.part_joints[i, list(joints)] = True
        self.part_anchor[i, list(joints)] = torch.as_tensor(anchors, device=self.part_anchor.device)

    def kinds(self) -> list[str]:
        """The cost kinds some sample of the batch uses."""
        used = {"path": bool(self.path_mask.any()), "keyframes": bool(self.key_mask.any()),
                "part": bool(self.part_joints.any()),
                "loop": bool(self.loop.any()), "foot": bool((self.foot > 0).any())}
        return [k for k in COST_KINDS if used[k]]

    def kind_weight(self, kind: str) -> Tensor:
        """(B,) relative weight of a cost kind: ``foot_weight`` / ``part_weight`` for the foot / part cost, else 1."""
        if kind in ("foot", "part"):
            return self.foot if kind == "foot" else self.part_weight
        return torch.ones_like(self.strength)


def path_cost(features: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """features (B, T, 263) un-normalised, target (B, T, 2) canonical XZ, mask (B, T) -> (B,) m^2."""
    _, root = recover_root(features)
    err = ((root[..., [0, 2]] - target) ** 2).sum(-1) * mask
    return err.sum(-1) / mask.sum(-1).clamp(min=1)


def keyframe_cost(joints: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """joints (B, T, 22, 3), target (B, T, 22, 3) canonical, mask (B, T) -> (B,) mean squared joint error m^2."""
    err = ((joints - target) ** 2).sum(-1).mean(-1) * mask
    return err.sum(-1) / mask.sum(-1).clamp(min=1)


def part_cost(features: Tensor, target: Tensor, joints: Tensor, anchor: Tensor, mask: Tensor) -> Tensor:
    """features (B, T, 263) un-normalised; target (B, T, 22, 3) offsets from the anchors (facing frame, m);
    joints (B, 22) bool, the layered joints; anchor (B, 22) each joint's anchor index; mask (B, T) -> (B,) m^2."""
    b, t = features.shape[:2]
    ric = torch.cat([torch.zeros(b, t, 1, 3, dtype=features.dtype, device=features.device),
                     features[..., 4:67].reshape(b, t, NUM_JOINTS - 1, 3)], dim=2)
    anchors = torch.gather(ric, 2, anchor[:, None, :, None].expand(b, t, NUM_JOINTS, 3))
    err = ((ric - anchors - target) ** 2).sum(-1) * joints[:, None, :] * mask[..., None]
    return err.sum((1, 2)) / (joints.sum(-1)[:, None] * mask).sum(-1).clamp(min=1)


def loop_cost(normalised: Tensor, lengths: Tensor, loop: Tensor) -> Tensor:
    """normalised (B, T, 263), lengths (B,), loop (B,) bool -> (B,) mean squared gap of last vs first row."""
    last = normalised[torch.arange(len(lengths), device=lengths.device), lengths - 1]
    return ((last - normalised[:, 0]) ** 2).mean(-1) * loop


def contact_weights(feet: Tensor, mask: Tensor, contact: FootContact = FootContact()) -> Tensor:
    """feet (B, T, J, 3) metres, mask (B, T) valid frames -> (B, T-1, J) soft contact weight in [0, 1] of each
    joint between frames t and t+1 (see :class:`FootContact`); no gradient."""
    feet = feet.detach()
    lowest = feet[..., 1].amin(-1).masked_fill(~mask, float("nan"))          # (B, T)
    floor = torch.nanquantile(lowest, contact.floor_percentile / 100, dim=1)  # (B,)
    height = torch.maximum(feet[:, :-1, :, 1], feet[:, 1:, :, 1]) - floor[:, None, None]
    speed = (feet[:, 1:] - feet[:, :-1]).norm(dim=-1) * FPS
    low = torch.sigmoid((contact.height_m - height) / contact.height_soft_m)
    slow = torch.sigmoid((contact.speed_m_s - speed) / contact.speed_soft_m_s)
    return low * slow * (mask[:, 1:] & mask[:, :-1])[..., None]


def foot_contact_cost(joints: Tensor, mask: Tensor, contact: FootContact = FootContact()) -> Tensor:
    """joints (B, T, 22, 3) metres, Y up, 20 fps; mask (B, T) valid frames -> (B,) contact-weighted mean
    squared horizontal foot-joint displacement per frame (m^2)."""
    feet = joints[:, :, list(FOOT_JOINTS)]
    weight = contact_weights(feet, mask, contact)
    slide = (feet[:, 1:, :, [0, 2]] - feet[:, :-1, :, [0, 2]]).pow(2).sum(-1)
    return (weight * slide).sum((1, 2)) / weight.sum((1, 2)).clamp(min=EPS)


def costs(generator, x0: Tensor, targets: Targets, kinds: list[str],
          contact: FootContact = FootContact()) -> dict[str, Tensor]:
    """Each kind's (B,) cost of the states x0, differentiable w.r.t. x0."""
    normalised = generator.to_features(x0, targets.lengths)
    features = generator.normalizer.denormalize(normalised)
    joints = features_to_joints_torch(features) if {"keyframes", "foot"} & set(kinds) else None
    out = {}
    if "path" in kinds:
        out["path"] = path_cost(features, targets.path, targets.path_mask)
    if "keyframes" in kinds:
        out["keyframes"] = keyframe_cost(joints, targets.keys, targets.key_mask)
    if "part" in kinds:
        out["part"] = part_cost(features, targets.part, targets.part_joints, targets.part_anchor, targets.frame_mask)
    if "foot" in kinds:
        out["foot"] = foot_contact_cost(joints, targets.frame_mask, contact) * (targets.foot > 0)
    if "loop" in kinds:
        out["loop"] = loop_cost(normalised, targets.lengths, targets.loop)
    return out


def polyak_step(cost: Tensor, grad: Tensor, weight: Tensor, max_rms: float) -> Tensor:
    """-weight C / |g|^2 g per sample, clipped to an RMS of max_rms per element.  cost, weight (B,); grad (B, ...)."""
    flat = grad.flatten(1)
    scale = weight * cost / (flat.pow(2).sum(-1) + EPS)
    delta = -scale[:, None] * flat
    rms = delta.pow(2).mean(-1).sqrt()
    delta = delta * torch.clamp(max_rms / (rms + EPS), max=1.0)[:, None]
    return delta.view_as(grad)


class ConstraintGuidance:
    """The ``guidance(step_index, t, x_prev, pred_x0) -> x_prev`` hook for a batch's ControlSpecs."""

    def __init__(self, generator, lengths: Tensor, specs: list[ControlSpec | None], timesteps: list[int],
                 schedule: ConstraintSchedule = ConstraintSchedule()):
        if len(specs) != len(lengths):
            raise ValueError(f"got {len(specs)} control specs for {len(lengths)} motions")
        self.generator, self.schedule = generator, schedule
        self.targets = Targets(specs, lengths)
        self.kinds = self.targets.kinds()
        nxt = list(timesteps[1:]) + [-1]
        abar = generator.schedule.alphas_cumprod
        self.signal = [1.0 if t < 0 else float(abar[t]) ** 0.5 for t in nxt]
        self.total = len(timesteps)
        self.trace = ConstraintTrace()
        self.inpaints = schedule.inpaint_root and "path" in self.kinds and getattr(generator, "name", "") == "mdm"

    @property
    def active(self) -> bool:
        return bool(self.kinds)

    def correction(self, x0: Tensor, weight: float | Tensor) -> Tensor:
        """The summed Polyak steps of every cost kind for the clean estimate x0 (B, ...); weight: one or (B,)."""
        start = time.perf_counter()
        w = self.targets.strength.to(x0.dtype) * weight
        with torch.enable_grad():
            x0 = x0.detach().requires_grad_(True)
            values = costs(self.generator, x0, self.targets, self.kinds, self.schedule.contact)
            delta = torch.zeros_like(x0)
            for i, kind in enumerate(self.kinds):
                (grad,) = torch.autograd.grad(values[kind].sum(), x0, retain_graph=i < len(self.kinds) - 1)
                delta = delta + polyak_step(values[kind].detach(), torch.nan_to_num(grad),
                                            w * self.kind_weight(kind), self.schedule.max_rms)
        self.trace.steps.append({k: float(v.detach().mean()) for k, v in values.items()})
        self.trace.seconds += time.perf_counter() - start
        return delta

    def __call__(self, step_index: int, t: int, x_prev: Tensor, pred_x0: Tensor) -> Tensor:
        if not self.kinds:
            return x_prev
        weight = self.schedule.weight(step_index, self.total)
        last = step_index == self.total - 1
        if not last:
            x0 = self.inpaint_root(pred_x0)
            return x_prev + self.signal[step_index] * (x0 - pred_x0 + self.correction(x0, weight))
        if self.schedule.inpaint_final:
            x_prev = self.inpaint_root(x_prev)
        return self.refine(x_prev, weight)

    def inpaint_root(self, x0: Tensor) -> Tensor:
        """Motion-space states (MDM) with a path: the root XZ velocity features replaced by those that make the
        integrated root follow the path under the sample's own heading; other states are returned as they are."""
        if not self.inpaints:
            return x0
        t = self.targets
        frames = t.path.shape[1]
        norm = self.generator.normalizer
        feats = norm.denormalize(x0[:, :frames])
        yaw, _ = recover_root(feats)
        step = t.path[:, 1:] - t.path[:, :-1]                      # (B, T-1, 2) world-canonical displacement
        cos, sin = torch.cos(yaw[:, 1:]), torch.sin(yaw[:, 1:])     # root[t+1] - root[t] = R(yaw[t+1]) vel[t]
        vel = torch.stack([step[..., 0] * cos - step[..., 1] * sin, step[..., 1] * cos + step[..., 0] * sin], -1)
        valid = (t.path_mask[:, 1:] & t.path_mask[:, :-1])[..., None]
        new = feats.clone()
        new[:, :-1, 1:3] = vel.to(feats.dtype)
        out = x0.clone()   # only the path's frames change (bit for bit: a sample without a path is untouched)
        out[:, :frames - 1, 1:3] = torch.where(valid, norm.normalize(new)[:, :-1, 1:3], x0[:, :frames - 1, 1:3])
        return out

    def refine(self, x: Tensor, weight: float) -> Tensor:
        """The clean sample's steps: each sample keeps a step only if its total cost went down, else its
        weight halves (a backtracking line search; the costs are not linear in the state, e.g. the heading);
        a kept step's weight grows by ``refine_regrow``, at most back to ``weight``."""
        shape = (-1,) + (1,) * (x.ndim - 1)
        weights = torch.full((x.shape[0],), weight, device=x.device, dtype=x.dtype)
        current = self.total_cost(x)
        for _ in range(1 + self.refine_iterations):
            trial = x + self.correction(x, weights)
            cost = self.total_cost(trial)
            better = cost < current
            x = torch.where(better.reshape(shape), trial, x)
            current = torch.where(better, cost, current)
            weights = torch.where(better, (weights * self.schedule.refine_regrow).clamp(max=weight), weights / 2)
        return x

    @property
    def refine_iterations(self) -> int:
        """The clean sample's refinement steps: ``path_iterations`` when a sample has a path and it is set."""
        s = self.schedule
        return s.path_iterations if s.path_iterations is not None and "path" in self.kinds else s.final_iterations

    def total_cost(self, x: Tensor) -> Tensor:
        """(B,) sum of the cost kinds of states x, each times its ``kind_weight`` (no gradient)."""
        return sum(v * self.kind_weight(k) for k, v in self.final_costs(x).items())

    def kind_weight(self, kind: str) -> Tensor:
        """(B,) relative weight of a cost kind: the targets' (foot / part weights), times path_weight / base_weight
        for the path cost when the schedule sets a path weight."""
        rel = self.targets.kind_weight(kind)
        s = self.schedule
        return rel * (s.path_weight / s.base_weight) if kind == "path" and s.path_weight is not None else rel

    def final_costs(self, x: Tensor) -> dict[str, Tensor]:
        """Each kind's (B,) cost of final states x (no gradient)."""
        with torch.no_grad():
            return costs(self.generator, x, self.targets, self.kinds, self.schedule.contact)
