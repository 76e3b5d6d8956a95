"""End to end over the built-in spaces: sample, build G and D, check shapes, one D and one G step.

Every categorical choice of a space is exercised: the suggester below walks the choices of each
categorical parameter in turn (from a fixed offset per parameter), so the samples of a resolution
cover all of them; other numbers are drawn at random. To keep the test fast on a shared CPU the
widths are pinned to their low end, and one case per space builds the widest configuration.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from search_spaces import (
    ArchConfig,
    CategoricalParam,
    FloatParam,
    IntParam,
    RandomSuggester,
    build_discriminator,
    build_generator,
    builtin_space_names,
    count_parameters,
    resolve_space,
    sample_config,
    space_from_text,
)

BATCH = 2
SAMPLES = {16: 6, 32: 6, 64: 2}  # per (space, resolution, channels); 64x64 steps cost the most


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    # Tiny convolutions gain nothing from a second thread, and on a shared box they lose a lot.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class CoveringSuggester(RandomSuggester):
    """Sample ``index`` of a covering sequence: categorical choice ``(index + offset) % n``."""

    def __init__(self, seed: int, index: int, *, widths: str | None = None) -> None:
        super().__init__(seed)
        self._index = index
        self._widths = widths  # None: random; "low" / "high": pin every *width to that end

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        if name not in self.params:
            offset = random.Random(name).randrange(len(choices))  # fixed per parameter
            self.params[name] = list(choices)[(self._index + offset) % len(choices)]
        return self.params[name]

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        if self._widths is not None and name.endswith("width") and name not in self.params:
            self.params[name] = low if self._widths == "low" else high
        return super().suggest_int(name, low, high, step=step, log=log)


def one_round(cfg: ArchConfig) -> None:
    """Build G and D from ``cfg``, check the contract's shapes, then one D and one G Adam step."""
    generator = build_generator(cfg)
    discriminator = build_discriminator(cfg)
    assert generator.latent_dim == cfg.generator["latent_dim"]
    assert count_parameters(generator) > 0 and count_parameters(discriminator) > 0
    r, c = cfg.resolution, cfg.channels

    z = torch.randn(BATCH, cfg.generator["latent_dim"])
    fake = generator(z)
    assert fake.shape == (BATCH, c, r, r)
    assert torch.isfinite(fake).all() and fake.abs().max() <= 1.0
    real = torch.rand(BATCH, c, r, r) * 2 - 1
    scores = discriminator(real)
    assert scores.shape == (BATCH,) and torch.isfinite(scores).all()

    opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-3, betas=(0.0, 0.9))
    opt_g = torch.optim.Adam(generator.parameters(), lr=1e-3, betas=(0.0, 0.9))

    before_d = [p.detach().clone() for p in discriminator.parameters()]
    loss_d = (
        F.softplus(-discriminator(real)).mean() + F.softplus(discriminator(fake.detach())).mean()
    )
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    assert torch.isfinite(loss_d)
    assert any(
        not torch.equal(b, p) for b, p in zip(before_d, discriminator.parameters(), strict=True)
    )

    before_g = [p.detach().clone() for p in generator.parameters()]
    loss_g = F.softplus(-discriminator(generator(z))).mean()
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    assert torch.isfinite(loss_g)
    changed = [not torch.equal(b, p) for b, p in zip(before_g, generator.parameters(), strict=True)]
    assert sum(changed) >= len(changed) // 2, "most generator tensors must move in one step"


CASES = [
    (name, resolution, channels)
    for name in builtin_space_names()
    for resolution in SAMPLES
    for channels in (1, 3)
]


@pytest.mark.parametrize(("name", "resolution", "channels"), CASES)
def test_builtin_space_samples_build_and_train(name: str, resolution: int, channels: int) -> None:
    torch.manual_seed(0)
    space = resolve_space(name)
    for index in range(SAMPLES[resolution]):
        seed = 1000 * resolution + 10 * channels + index
        index += SAMPLES[resolution] if channels == 3 else 0  # both cases together: 2n steps
        suggester = CoveringSuggester(seed, index, widths="low")
        cfg = sample_config(space, suggester, resolution=resolution, channels=channels)
        assert cfg.family == space.family
        one_round(cfg)


@pytest.mark.parametrize("name", builtin_space_names())
def test_widest_configuration_builds(name: str) -> None:
    torch.manual_seed(0)
    space = resolve_space(name)
    cfg = sample_config(space, CoveringSuggester(0, 0, widths="high"), resolution=16, channels=3)
    for p in space.parameters():
        if isinstance(p.param, IntParam) and p.name.endswith("width"):
            assert getattr(cfg, p.section)[p.name] == p.param.high
    one_round(cfg)


@pytest.mark.parametrize("name", builtin_space_names())
def test_builtin_space_shape(name: str) -> None:
    space = resolve_space(name)
    assert space.name == name and space.description
    assert (space.search.sampler, space.search.pruner) == ("tpe", "hyperband")
    training = space.training
    loss, lr_g, lr_d = training["loss"], training["lr_g"], training["lr_d"]
    assert isinstance(loss, CategoricalParam)
    assert set(loss.choices) == {"bce", "hinge", "wgan_gp"}
    assert isinstance(lr_g, FloatParam) and isinstance(lr_d, FloatParam)
    assert lr_g.log and lr_d.log
    assert training["gp_weight"].when == {"loss": ("wgan_gp",)}
    for key in ("beta1", "beta2", "d_steps", "batch_size"):
        assert key in training
    # Printing and re-reading a built-in space gives the same space.
    assert space_from_text(space.to_yaml()) == space


def test_every_categorical_choice_is_covered() -> None:
    # The covering suggester's promise, checked: the samples of one case list every choice.
    for name in builtin_space_names():
        space = resolve_space(name)
        seen: dict[str, set[Any]] = {}
        for index in range(2 * SAMPLES[16]):
            suggester = CoveringSuggester(index, index)
            sample_config(space, suggester, resolution=16, channels=3)
            for key, value in suggester.params.items():
                seen.setdefault(key, set()).add(value)
        for p in space.parameters():
            if isinstance(p.param, CategoricalParam) and p.param.when is None:
                assert seen[p.qualname] == set(p.param.choices), p.qualname
