"""The model families and the pure builders: many random architectures, shapes, one G and D step."""

from __future__ import annotations

import random
import subprocess
import sys
import typing
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from pydantic import BaseModel
from torch import nn
from torch.nn.utils import parametrize

from gannas.errors import GannasError, SpaceError
from search_spaces.builders import (
    build_discriminator,
    build_generator,
    count_parameters,
    validate_arch,
)
from search_spaces.config import ArchConfig
from search_spaces.families import FAMILIES
from search_spaces.families.autogan import AutoGANGeneratorParams, downsampling_plan

# Small integer ranges per (family, section, field) keep the random builds fast; every int field
# of a family must be listed, so a new field cannot silently escape the random tests.
INT_RANGES: dict[tuple[str, str], dict[str, tuple[int, int]]] = {
    ("dcgan", "generator"): {"latent_dim": (2, 16), "depth": (1, 5), "base_width": (4, 12)},
    ("dcgan", "discriminator"): {"depth": (1, 5), "width": (4, 12)},
    ("autogan", "generator"): {"latent_dim": (2, 16), "width": (8, 24)},
    ("autogan", "discriminator"): {"depth": (2, 5), "width": (8, 24)},
}


def draw(
    model: type[BaseModel],
    ranges: dict[str, tuple[int, int]],
    rng: random.Random,
    *,
    max_depth: int,
) -> dict[str, Any]:
    """One random value per field of ``model``: Literal choices, both bools, small int ranges."""
    values: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if typing.get_origin(annotation) is typing.Literal:
            values[name] = rng.choice(typing.get_args(annotation))
        elif annotation is bool:
            values[name] = rng.choice([True, False])
        elif annotation is int:
            low, high = ranges[name]
            if name == "depth":
                high = min(high, max_depth)
            values[name] = rng.randint(low, high)
        else:  # pragma: no cover - a new kind of field needs a sampling rule here
            raise AssertionError(f"no sampling rule for {model.__name__}.{name}: {annotation}")
    return values


def random_config(family: str, resolution: int, channels: int, rng: random.Random) -> ArchConfig:
    fam = FAMILIES[family]
    # DCGAN halves the image `depth` times exactly; AutoGAN's depths all build everywhere.
    max_depth = resolution.bit_length() - 1 if family == "dcgan" else 5
    return ArchConfig(
        family=family,
        resolution=resolution,
        channels=channels,
        generator=draw(
            fam.generator_params, INT_RANGES[family, "generator"], rng, max_depth=max_depth
        ),
        discriminator=draw(
            fam.discriminator_params, INT_RANGES[family, "discriminator"], rng, max_depth=max_depth
        ),
    )


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    # These tensors are tiny: on a shared 2-core machine, one thread is many times faster than two
    # threads waiting on each other.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def check_step(
    module: nn.Module, before: dict[str, torch.Tensor], what: str, *, expect_move: bool = True
) -> None:
    """Every parameter got a gradient (no dead branch); each with a nonzero one moved."""
    moved = 0
    for name, p in module.named_parameters():
        assert p.grad is not None, f"{what}: {name} is not in the graph"
        assert torch.isfinite(p.grad).all(), f"{what}: {name} has a non-finite gradient"
        changed = not torch.equal(p.detach(), before[name])
        if torch.count_nonzero(p.grad) > 0:
            assert changed, f"{what}: {name} has a gradient but did not change"
        moved += changed
    if expect_move:
        assert moved > 0, f"{what}: no parameter changed"


def one_gan_step(cfg: ArchConfig) -> bool:
    """Build G and D, check shapes, take one D and one G step; return whether D's loss acted."""
    torch.manual_seed(0)
    generator = build_generator(cfg)
    discriminator = build_discriminator(cfg)
    n, r, c = 4, cfg.resolution, cfg.channels
    assert isinstance(generator.latent_dim, int)
    assert generator.latent_dim == cfg.generator["latent_dim"]

    z = torch.randn(n, generator.latent_dim)
    fake = generator(z)
    assert fake.shape == (n, c, r, r)
    assert torch.isfinite(fake).all() and fake.abs().max() <= 1.0
    assert fake.std() > 0, "the generator ignores its input"
    real = torch.rand(n, c, r, r) * 2 - 1
    scores = discriminator(real)
    assert scores.shape == (n,) and torch.isfinite(scores).all()

    # one discriminator step, hinge loss
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-3, betas=(0.0, 0.9))
    before_d, before_g = snapshot(discriminator), snapshot(generator)
    loss_d = (
        F.relu(1 - discriminator(real)).mean() + F.relu(1 + discriminator(fake.detach())).mean()
    )
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    assert torch.isfinite(loss_d)
    # An untrained D can already separate noise from G's images beyond the hinge margin (SNGAN's
    # sum-pooled D without spectral norm scores ~10 at init); then its gradient is exactly zero.
    d_active = loss_d.item() > 0
    check_step(
        discriminator,
        before_d,
        f"D step of {cfg.generator} / {cfg.discriminator}",
        expect_move=d_active,
    )
    assert all(torch.equal(p, before_g[k]) for k, p in generator.named_parameters())

    # one generator step
    opt_g = torch.optim.Adam(generator.parameters(), lr=1e-3, betas=(0.0, 0.9))
    before_g = snapshot(generator)
    loss_g = -discriminator(generator(z)).mean()
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    assert torch.isfinite(loss_g)
    check_step(generator, before_g, f"G step of {cfg.generator}")
    return d_active


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(("resolution", "samples"), [(16, 5), (32, 5), (64, 2)])
@pytest.mark.parametrize("family", ["dcgan", "autogan"])
def test_random_architectures_build_and_train(
    family: str, resolution: int, samples: int, channels: int
) -> None:
    rng = random.Random(f"{family}-{resolution}-{channels}")
    active = [
        one_gan_step(random_config(family, resolution, channels, rng)) for _ in range(samples)
    ]
    assert any(active), "every discriminator step was saturated: nothing checked D's update"


def test_every_choice_is_drawn() -> None:
    """The random test above covers every Literal and bool value of every family field."""
    for family in FAMILIES:
        seen: dict[str, set[Any]] = {}
        for resolution in (16, 32, 64):
            for channels in (1, 3):
                rng = random.Random(f"{family}-{resolution}-{channels}")
                for _ in range(2 if resolution == 64 else 5):
                    cfg = random_config(family, resolution, channels, rng)
                    for section in ("generator", "discriminator"):
                        for key, value in getattr(cfg, section).items():
                            seen.setdefault(f"{section}.{key}", set()).add(value)
        fam = FAMILIES[family]
        for section, model in (
            ("generator", fam.generator_params),
            ("discriminator", fam.discriminator_params),
        ):
            for name, field in model.model_fields.items():
                if field.annotation is bool:
                    assert seen[f"{section}.{name}"] == {True, False}, (family, section, name)
                elif typing.get_origin(field.annotation) is typing.Literal:
                    assert seen[f"{section}.{name}"] == set(typing.get_args(field.annotation)), (
                        family,
                        section,
                        name,
                    )


# --------------------------------------------------------------------------------------------------
# Structure
# --------------------------------------------------------------------------------------------------


def weighted_layers(module: nn.Module) -> list[nn.Module]:
    return [
        m for m in module.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear)
    ]


@pytest.mark.parametrize("family", ["dcgan", "autogan"])
@pytest.mark.parametrize("spectral_norm", [True, False])
def test_spectral_norm_on_every_d_layer_when_on_and_nowhere_else(
    family: str, spectral_norm: bool
) -> None:
    d_params: dict[str, Any] = {"width": 8, "spectral_norm": spectral_norm}
    if family == "autogan":
        d_params["downsample"] = "conv_stride"  # a learned downsampling layer must be wrapped too
    cfg = ArchConfig(
        family=family,
        resolution=16,
        channels=3,
        generator={"latent_dim": 4},
        discriminator=d_params,
    )
    discriminator = build_discriminator(cfg)
    layers = weighted_layers(discriminator)
    assert layers
    assert all(parametrize.is_parametrized(m, "weight") is spectral_norm for m in layers)
    assert not any(parametrize.is_parametrized(m) for m in build_generator(cfg).modules())
    if spectral_norm:
        # parameters are the originals, counted once; u and v are buffers
        plain = build_discriminator(
            cfg.model_copy(update={"discriminator": {**d_params, "spectral_norm": False}})
        )
        assert count_parameters(discriminator) == count_parameters(plain)


def autogan_cfg(**generator: Any) -> ArchConfig:
    base = {
        "latent_dim": 8,
        "width": 8,
        "cell2_skip_from1": False,
        "cell3_skip_from1": False,
        "cell3_skip_from2": False,
        "cell1_shortcut": False,
        "cell2_shortcut": False,
        "cell3_shortcut": False,
        "cell1_upsample": "nearest",
        "cell2_upsample": "nearest",
        "cell3_upsample": "nearest",
    }
    return ArchConfig(
        family="autogan",
        resolution=16,
        channels=3,
        generator={**base, **generator},
        discriminator={"width": 8},
    )


def test_autogan_skip_and_shortcut_flags_add_their_convolutions() -> None:
    width = 8
    one_by_one = width * width + width  # a 1x1 convolution with bias
    base = count_parameters(build_generator(autogan_cfg()))
    for flags, extra in [
        ({"cell2_skip_from1": True}, 1),
        ({"cell3_skip_from1": True}, 1),
        ({"cell3_skip_from2": True}, 1),
        ({"cell2_skip_from1": True, "cell3_skip_from1": True, "cell3_skip_from2": True}, 3),
        ({"cell1_shortcut": True, "cell3_shortcut": True}, 2),
    ]:
        assert count_parameters(build_generator(autogan_cfg(**flags))) == base + extra * one_by_one
    # deconv upsampling adds a learned 2x2 transposed convolution (with bias) to the cell
    deconv = count_parameters(build_generator(autogan_cfg(cell2_upsample="deconv")))
    assert deconv == base + width * width * 4 + width


@pytest.mark.parametrize("skip", ["cell2_skip_from1", "cell3_skip_from1", "cell3_skip_from2"])
def test_autogan_skips_change_the_output_and_vanish_when_zeroed(skip: str) -> None:
    torch.manual_seed(0)
    with_skip = build_generator(autogan_cfg(**{skip: True}))
    without = build_generator(autogan_cfg())
    # share every weight but the skip's 1x1 convolution
    result = without.load_state_dict(with_skip.state_dict(), strict=False)
    assert result.missing_keys == []
    assert result.unexpected_keys and all(".skip_in." in key for key in result.unexpected_keys)
    z = torch.randn(4, 8)
    with torch.no_grad():
        assert not torch.allclose(with_skip(z), without(z))
        for name, p in with_skip.named_parameters():
            if ".skip_in." in name:
                p.zero_()
        assert torch.allclose(with_skip(z), without(z), atol=1e-6)


def test_autogan_skip_from() -> None:
    params = AutoGANGeneratorParams(
        cell2_skip_from1=False, cell3_skip_from1=True, cell3_skip_from2=False
    )
    assert params.skip_from() == ((), (), (0,))
    assert AutoGANGeneratorParams().skip_from() == ((), (0,), (0, 1))


@pytest.mark.parametrize("resolution", [16, 32, 64, 128])
@pytest.mark.parametrize("depth", [2, 3, 4, 5])
def test_autogan_discriminator_downsampling_rule(resolution: int, depth: int) -> None:
    plan = downsampling_plan(depth, resolution)
    assert len(plan) == depth and not plan[-1]
    # the first blocks halve, as many times as the map stays at least 4x4
    halvings = min(depth - 1, (resolution // 4).bit_length() - 1)
    assert plan == (True,) * halvings + (False,) * (depth - halvings)
    cfg = ArchConfig(
        family="autogan",
        resolution=resolution,
        channels=1,
        generator={},
        discriminator={"depth": depth, "width": 4},
    )
    discriminator = build_discriminator(cfg)
    features = discriminator.body(torch.randn(1, 1, resolution, resolution))
    assert features.shape[-1] == resolution // 2**halvings >= 4


def test_dcgan_shapes_follow_depth_and_width() -> None:
    cfg = ArchConfig(
        family="dcgan",
        resolution=32,
        channels=1,
        generator={"depth": 3, "base_width": 4, "latent_dim": 8},
        discriminator={"depth": 2, "width": 4},
    )
    generator, discriminator = build_generator(cfg), build_discriminator(cfg)
    h = generator.stem(torch.randn(2, 8))
    assert h.shape == (2, 32, 4, 4)  # 2 * base_width * 2**(depth-1) channels, 32 / 2**3 square
    sizes = []
    for stage in generator.body:
        h = stage(h)
        sizes.append(tuple(h.shape[1:]))
    assert sizes == [(16, 8, 8), (8, 16, 16), (4, 32, 32)]
    assert discriminator.body(torch.randn(2, 1, 32, 32)).shape == (2, 8, 8, 8)


def test_count_parameters_of_a_dcgan_generator() -> None:
    latent, depth, base, k, channels = 5, 2, 3, 3, 3
    cfg = ArchConfig(
        family="dcgan",
        resolution=16,
        channels=channels,
        generator={
            "latent_dim": latent,
            "depth": depth,
            "base_width": base,
            "kernel_size": k,
            "norm": "batch",
            "upsample": "deconv",
        },
        discriminator={},
    )
    generator = build_generator(cfg)
    start, widths = 16 // 2**depth, [6, 3]
    stem = latent * 12 * start**2 + 12 * start**2
    stages = sum(
        c_in * c_out * k * k + c_out + 2 * c_out
        for c_in, c_out in zip([12, 6], widths, strict=True)
    )
    head = widths[-1] * channels * 9 + channels
    assert count_parameters(generator) == stem + stages + head
    generator.head.requires_grad_(False)
    assert count_parameters(generator) == stem + stages


@pytest.mark.parametrize("family", ["dcgan", "autogan"])
def test_builds_are_deterministic_under_a_seed(family: str) -> None:
    cfg = random_config(family, 16, 3, random.Random(7))
    z = torch.randn(3, cfg.generator["latent_dim"])

    def build(seed: int) -> tuple[nn.Module, nn.Module]:
        torch.manual_seed(seed)
        return build_generator(cfg), build_discriminator(cfg)

    (g1, d1), (g2, d2), (g3, _) = build(11), build(11), build(12)
    for a, b in ((g1, g2), (d1, d2)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(g1(z), g2(z))
    assert not torch.equal(g1(z), g3(z))


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "resolution", "generator", "discriminator", "refused_by", "message"),
    [
        (
            "dcgan",
            16,
            {"depth": 5},
            {},
            "generator",
            r"generator depth 5 .*2\*\*5 = 32.*got resolution 16.*depth <= 4",
        ),
        (
            "dcgan",
            16,
            {},
            {"depth": 5},
            "discriminator",
            r"discriminator depth 5 .*got resolution 16.*depth <= 4",
        ),
        ("dcgan", 48, {"depth": 5}, {"depth": 4}, "generator", r"generator depth 5 .*depth <= 4"),
        ("autogan", 20, {}, {}, "generator", r"multiple of 8 and at least 16.*got resolution 20"),
        ("autogan", 8, {}, {}, "generator", r"multiple of 8 and at least 16.*got resolution 8"),
    ],
)
def test_check_resolution_errors(
    family: str,
    resolution: int,
    generator: dict,
    discriminator: dict,
    refused_by: str,
    message: str,
) -> None:
    fam = FAMILIES[family]
    params_g = fam.generator_params.model_validate(generator)
    params_d = fam.discriminator_params.model_validate(discriminator)
    with pytest.raises(ValueError, match=message):
        fam.check_resolution(params_g, params_d, resolution)
    # the family builders refuse too (they are usable without builders.py)
    build, params = {
        "generator": (fam.build_generator, params_g),
        "discriminator": (fam.build_discriminator, params_d),
    }[refused_by]
    with pytest.raises(ValueError, match=message):
        build(params, resolution, 3)
    cfg = ArchConfig(
        family=family,
        resolution=resolution,
        channels=3,
        generator=generator,
        discriminator=discriminator,
    )
    with pytest.raises(SpaceError, match=f"cannot be built at resolution {resolution}"):
        build_generator(cfg)


@pytest.mark.parametrize(
    ("family", "resolution", "generator", "discriminator"),
    [
        ("dcgan", 16, {"depth": 4, "norm": "instance"}, {"depth": 4}),  # starts from 1x1
        ("dcgan", 8, {"depth": 3}, {"depth": 3}),
        ("dcgan", 48, {"depth": 4}, {"depth": 4}),  # 48 = 3 * 2**4
        ("autogan", 48, {"cell1_norm": "instance"}, {"depth": 5}),  # 6x6 bottom
    ],
)
def test_edge_resolutions_build(
    family: str, resolution: int, generator: dict, discriminator: dict
) -> None:
    for key, value in (("width", 4), ("base_width", 2), ("latent_dim", 4)):
        if key in FAMILIES[family].generator_params.model_fields:
            generator = {key: value, **generator}
    cfg = ArchConfig(
        family=family,
        resolution=resolution,
        channels=1,
        generator=generator,
        discriminator={"width": 4, **discriminator},
    )
    validate_arch(cfg)
    z = torch.randn(2, 4)
    images = build_generator(cfg)(z)
    assert images.shape == (2, 1, resolution, resolution)
    assert build_discriminator(cfg)(images).shape == (2,)


def test_unknown_family_is_a_space_error_listing_the_known_ones() -> None:
    cfg = ArchConfig(family="stylegan", resolution=32, channels=3, generator={}, discriminator={})
    with pytest.raises(SpaceError, match="unknown model family 'stylegan'") as info:
        build_generator(cfg)
    assert "'dcgan'" in str(info.value) and "'autogan'" in str(info.value)
    with pytest.raises(SpaceError):
        build_discriminator(cfg)


@pytest.mark.parametrize(
    ("generator", "discriminator", "fragments"),
    [
        ({"depth": 9}, {}, ["generator.depth", "less than or equal to 5", "got 9"]),
        ({"depth": "3"}, {}, ["generator.depth", "valid integer", "got '3'"]),
        ({"latent_dim": True}, {}, ["generator.latent_dim", "got True"]),
        ({"norm": "group"}, {}, ["generator.norm", "'batch', 'instance' or 'none'", "got 'group'"]),
        ({}, {"spectral_norm": "yes"}, ["discriminator.spectral_norm", "got 'yes'"]),
        ({"widht": 8}, {}, ["generator.widht", "not a dcgan generator parameter", "base_width"]),
    ],
)
def test_invalid_params_are_space_errors_naming_field_and_value(
    generator: dict, discriminator: dict, fragments: list[str]
) -> None:
    cfg = ArchConfig(
        family="dcgan", resolution=32, channels=3, generator=generator, discriminator=discriminator
    )
    for build in (build_generator, build_discriminator, validate_arch):
        with pytest.raises(SpaceError) as info:
            build(cfg)
        assert isinstance(info.value, GannasError)
        for fragment in fragments:
            assert fragment in str(info.value)


def test_param_models_are_frozen_with_defaults() -> None:
    for family in FAMILIES.values():
        for model in (family.generator_params, family.discriminator_params):
            params = model()  # every field has a default
            assert model.model_config["frozen"] and model.model_config["extra"] == "forbid"
            name = next(iter(model.model_fields))
            with pytest.raises(ValueError):
                setattr(params, name, getattr(params, name))


def test_families_and_builders_import_without_torch() -> None:
    """Reading the registry and validating a config must not pay for importing torch."""
    code = (
        "import sys\n"
        "from search_spaces.builders import validate_arch\n"
        "from search_spaces.config import ArchConfig\n"
        "validate_arch(ArchConfig(family='autogan', resolution=32, channels=3, generator={}, "
        "discriminator={}))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("family", "section", "key"),
    [
        ("dcgan", "generator", "latent_dim"),
        ("dcgan", "generator", "base_width"),
        ("dcgan", "discriminator", "width"),
        ("autogan", "generator", "latent_dim"),
        ("autogan", "generator", "width"),
        ("autogan", "discriminator", "width"),
    ],
)
def test_widths_and_latent_sizes_are_bounded_when_the_space_is_validated(
    family: str, section: str, key: str
) -> None:
    from gannas.errors import SpaceError
    from search_spaces import space_from_text
    from search_spaces.families import MAX_CHANNELS

    def space(value: str) -> str:
        return f"name: w\nfamily: {family}\n{section}:\n  {key}: {value}\n"

    # A typo validated and then failed every trial (out of memory, a 50-line native stack).
    for value in ("99999999999999999999999", f"{{type: int, low: 64, high: {MAX_CHANNELS + 1}}}"):
        with pytest.raises(SpaceError, match=rf"{section}\.{key}(\.high)?: expected less than or equal to {MAX_CHANNELS}"):
            space_from_text(space(value))
    space_from_text(space(str(MAX_CHANNELS)))  # the bound itself is accepted


def test_builders_take_the_mapping_of_an_arch_json_too() -> None:
    import json

    from gannas.errors import SpaceError
    from search_spaces import RandomSuggester, build_discriminator, build_generator, count_parameters
    from search_spaces import resolve_space, sample_config

    cfg = sample_config(resolve_space("dcgan"), RandomSuggester(0), resolution=16, channels=1)
    data = json.loads(json.dumps(cfg.to_json_dict()))  # as json.load(open("arch.json")) gives it
    torch.manual_seed(0)
    from_mapping = build_generator(data)
    torch.manual_seed(0)
    from_config = build_generator(cfg)
    assert count_parameters(from_mapping) == count_parameters(from_config)
    assert all(torch.equal(a, b) for a, b in zip(from_mapping.state_dict().values(), from_config.state_dict().values(), strict=True))
    assert count_parameters(build_discriminator(data)) > 0
    # It was "AttributeError: 'dict' object has no attribute 'family'".
    with pytest.raises(SpaceError, match="invalid architecture: resolution"):
        build_generator({**data, "resolution": "sixteen"})
    with pytest.raises(SpaceError, match="expected an ArchConfig or the mapping of an arch.json, got int"):
        build_generator(3)  # type: ignore[arg-type]
