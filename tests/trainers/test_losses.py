from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainers import LOSSES, gradient_penalty

REAL = [1.0, -0.5]
FAKE = [0.2, -2.0]


def _softplus(x: float) -> float:
    return math.log(1.0 + math.exp(x))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


EXPECTED_D = {
    # -log(sigmoid(r)) = softplus(-r); -log(1 - sigmoid(f)) = softplus(f)
    "bce": _mean([_softplus(-r) for r in REAL]) + _mean([_softplus(f) for f in FAKE]),
    "hinge": _mean([max(0.0, 1 - r) for r in REAL]) + _mean([max(0.0, 1 + f) for f in FAKE]),
    "wgan_gp": _mean(FAKE) - _mean(REAL),
}
EXPECTED_G = {
    "bce": _mean([-math.log(1 / (1 + math.exp(-f))) for f in FAKE]),
    "hinge": -_mean(FAKE),
    "wgan_gp": -_mean(FAKE),
}


def test_registry_matches_training_config_choices() -> None:
    from typing import get_args

    from search_spaces.config import TrainingConfig

    choices = get_args(TrainingConfig.model_fields["loss"].annotation)
    assert set(LOSSES) == set(choices)
    assert all(LOSSES[name].name == name for name in LOSSES)


@pytest.mark.parametrize("name", sorted(EXPECTED_D))
def test_losses_against_hand_computed_values(name: str) -> None:
    real, fake = torch.tensor(REAL), torch.tensor(FAKE)
    loss = LOSSES[name]
    assert loss.discriminator(real, fake).item() == pytest.approx(EXPECTED_D[name], rel=1e-6)
    assert loss.generator(fake).item() == pytest.approx(EXPECTED_G[name], rel=1e-6)


def test_bce_is_stable_for_extreme_scores() -> None:
    d = LOSSES["bce"].discriminator(torch.tensor([200.0]), torch.tensor([-200.0]))
    g = LOSSES["bce"].generator(torch.tensor([-200.0]))
    assert d.item() == pytest.approx(0.0, abs=1e-30)
    assert g.item() == pytest.approx(200.0)


def test_gradient_penalty_linear_critic_closed_form() -> None:
    critic = nn.Sequential(nn.Flatten(), nn.Linear(12, 1))
    with torch.no_grad():
        w = torch.zeros(12)
        w[0], w[1] = 2.0, math.sqrt(5.0)  # ||w|| = 3
        critic[1].weight.copy_(w.unsqueeze(0))
    real, fake = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    penalty = gradient_penalty(
        lambda x: critic(x).squeeze(1), real, fake, generator=torch.Generator().manual_seed(0)
    )
    assert penalty.item() == pytest.approx((3.0 - 1.0) ** 2, rel=1e-6)
    # The graph reaches D's weights: d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||.
    penalty.backward()
    assert torch.allclose(critic[1].weight.grad[0], 2 * (3.0 - 1.0) * w / 3.0, atol=1e-6)


def test_gradient_penalty_uses_seeded_interpolation() -> None:
    # D(x) = sum(x^2) / 2 has gradient x, so the penalty is mean((||mix_i|| - 1)^2).
    def critic(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (x**2).flatten(1).sum(1)

    real, fake = torch.randn(5, 1, 3, 3), torch.randn(5, 1, 3, 3)
    alpha = torch.rand((5, 1, 1, 1), generator=torch.Generator().manual_seed(7))
    mix = alpha * real + (1 - alpha) * fake
    expected = ((mix.flatten(1).norm(dim=1) - 1) ** 2).mean()
    got = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(7))
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    other = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(8))
    assert other.item() != pytest.approx(expected.item(), rel=1e-5)


def test_gradient_penalty_shape_mismatch() -> None:
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(3, 3\)"):
        gradient_penalty(lambda x: x.sum(1), torch.zeros(2, 3), torch.zeros(3, 3), generator=None)
