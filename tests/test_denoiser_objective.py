"""The latent denoiser's objective: Min-SNR-gamma loss weights (training only) and its checked settings."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from realign_core.training.denoiser_objective import DenoiserObjective, DiffusionConfig


class _Zero(nn.Module):
    """Predicts zeros, so the loss is the mean square of the target."""

    def forward(self, z_t, t, text, use_cond, tokens):
        return torch.zeros_like(z_t)


def _snr(objective: DenoiserObjective, t: torch.Tensor) -> torch.Tensor:
    abar = objective.schedule.alphas_cumprod[t]
    return (abar / (1 - abar)).float()


@pytest.mark.parametrize("prediction", ["epsilon", "sample"])
def test_min_snr_weights_clip_the_signal_to_noise_ratio(prediction):
    objective = DenoiserObjective(DiffusionConfig(prediction_type=prediction, min_snr_gamma=5.0), 1.0)
    t = torch.tensor([0, 50, 300, 700, 999])
    snr = _snr(objective, t)
    assert snr[0] > 5 > snr[-1]                                   # both sides of gamma are covered
    expected = snr.clamp(max=5.0) / snr if prediction == "epsilon" else snr.clamp(max=5.0)
    assert torch.allclose(objective.snr_weights(t), expected)
    if prediction == "epsilon":                                   # noisy steps keep weight 1, clean ones less
        assert objective.snr_weights(t)[-1] == pytest.approx(1.0) and objective.snr_weights(t)[0] < 0.01
    plain = DenoiserObjective(DiffusionConfig(prediction_type=prediction), 1.0)
    assert torch.equal(plain.snr_weights(t), torch.ones(5))


def test_weighted_loss_is_per_sample_and_validation_stays_unweighted():
    objective = DenoiserObjective(DiffusionConfig(min_snr_gamma=5.0), 1.0)
    z0, noise = torch.randn(3, 6, 4), torch.randn(3, 6, 4)
    tokens = torch.ones(3, 6)
    tokens[2, 4:] = 0
    t, text, cond = torch.tensor([5, 400, 990]), torch.zeros(3, 384), torch.ones(3, dtype=torch.bool)
    per_token = noise.pow(2).mean(-1)
    unweighted = objective.loss(_Zero(), z0, tokens, text, t, noise, cond)
    assert unweighted == pytest.approx(float((per_token * tokens).sum() / tokens.sum()))
    weighted = objective.loss(_Zero(), z0, tokens, text, t, noise, cond, weighted=True)
    w = objective.snr_weights(t)[:, None]
    assert weighted == pytest.approx(float((per_token * w * tokens).sum() / tokens.sum()))
    assert weighted < unweighted                                  # the low-noise sample is down-weighted


def test_diffusion_config_names_bad_settings():
    with pytest.raises(ValueError, match="prediction_type = 'v'"):
        DiffusionConfig(prediction_type="v")
    with pytest.raises(ValueError, match="min_snr_gamma = -1"):
        DiffusionConfig(min_snr_gamma=-1)
