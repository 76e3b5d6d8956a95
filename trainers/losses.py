"""GAN losses as pure functions of discriminator scores, chosen by name from :data:`LOSSES`.

Scores are raw (pre-sigmoid) discriminator outputs of shape ``(N,)``; every loss is a batch mean.
``wgan_gp`` is only the Wasserstein critic/generator loss: the training loop adds
``gp_weight * gradient_penalty(...)`` to the discriminator loss itself, since the penalty needs the
discriminator and the images, not just scores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LOSSES", "GANLoss", "gradient_penalty"]


@dataclass(frozen=True)
class GANLoss:
    """A pair of loss functions; ``discriminator`` is minimised by D, ``generator`` by G."""

    name: str
    discriminator: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    """``(real_scores, fake_scores) -> scalar``."""
    generator: Callable[[torch.Tensor], torch.Tensor]
    """``(fake_scores) -> scalar``."""


def bce_discriminator(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """``-log sigmoid(real) - log(1 - sigmoid(fake))``, via softplus for numerical stability."""
    return F.softplus(-real_scores).mean() + F.softplus(fake_scores).mean()


def bce_generator(fake_scores: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss ``-log sigmoid(fake)``."""
    return F.softplus(-fake_scores).mean()


def hinge_discriminator(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()


def hinge_generator(fake_scores: torch.Tensor) -> torch.Tensor:
    return -fake_scores.mean()


def wasserstein_discriminator(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    return fake_scores.mean() - real_scores.mean()


def wasserstein_generator(fake_scores: torch.Tensor) -> torch.Tensor:
    return -fake_scores.mean()


def gradient_penalty(
    discriminator: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """WGAN-GP penalty ``mean((||grad_x D(x)||_2 - 1)^2)`` at random interpolates of real and fake.

    One interpolation weight per sample is drawn from ``U(0, 1)`` with ``generator`` (which must
    live on ``real``'s device). The result keeps the graph (``create_graph=True``) so it can be
    back-propagated into D's parameters.
    """
    if real.shape != fake.shape:
        raise ValueError(
            f"gradient_penalty needs real and fake batches of one shape, got {tuple(real.shape)} "
            f"and {tuple(fake.shape)}"
        )
    alpha_shape = (real.shape[0],) + (1,) * (real.ndim - 1)
    alpha = torch.rand(alpha_shape, generator=generator, device=real.device, dtype=real.dtype)
    mixed = (alpha * real.detach() + (1.0 - alpha) * fake.detach()).requires_grad_(True)
    scores = discriminator(mixed)
    (grads,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    norms = grads.flatten(start_dim=1).norm(2, dim=1)
    return ((norms - 1.0) ** 2).mean()


LOSSES: dict[str, GANLoss] = {
    "bce": GANLoss("bce", bce_discriminator, bce_generator),
    "hinge": GANLoss("hinge", hinge_discriminator, hinge_generator),
    "wgan_gp": GANLoss("wgan_gp", wasserstein_discriminator, wasserstein_generator),
}
"""Keys are the values of ``TrainingConfig.loss``."""
