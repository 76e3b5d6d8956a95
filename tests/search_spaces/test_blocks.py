"""The block registries and blocks of search_spaces.families._blocks, on CPU and tiny widths."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from search_spaces.families import _blocks as B

PLAIN = B.make_layers(spectral_norm=False, init="xavier_uniform")


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    # Tiny tensors on a shared machine: one thread beats two threads waiting on each other.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------------
# Registries: unknown names
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "known"),
    [
        (lambda: B.make_norm("group", 4), ["batch", "instance", "none"]),
        (lambda: B.make_activation("gelu"), ["relu", "leaky_relu", "elu", "silu"]),
        (lambda: B.make_downsample("stride", 4, PLAIN), ["avg_pool", "max_pool", "conv_stride"]),
        (
            lambda: B.up_stage(
                4,
                4,
                kernel_size=3,
                upsample="pixel_shuffle",
                norm="none",
                activation="relu",
                layers=PLAIN,
            ),
            ["deconv", "nearest", "bilinear"],
        ),
        (
            lambda: B.Cell(
                4, 4, order="middle", norm="none", upsample="nearest", shortcut=False, layers=PLAIN
            ),
            ["pre", "post"],
        ),
        (
            lambda: B.Cell(
                4, 4, order="pre", norm="none", upsample="bicubic", shortcut=False, layers=PLAIN
            ),
            ["nearest", "bilinear", "deconv"],
        ),
        (
            lambda: B.make_layers(spectral_norm=False, init="kaiming"),
            ["dcgan_normal", "xavier_uniform"],
        ),
    ],
)
def test_unknown_names_raise_value_error_listing_known_ones(build, known) -> None:
    with pytest.raises(ValueError, match="unknown") as info:
        build()
    for name in known:
        assert repr(name) in str(info.value)


# --------------------------------------------------------------------------------------------------
# Normalisations and activations
# --------------------------------------------------------------------------------------------------


def test_norms() -> None:
    instance = B.make_norm("instance", 6)
    assert isinstance(instance, nn.InstanceNorm2d) and instance.affine
    assert isinstance(B.make_norm("batch", 6), nn.BatchNorm2d)
    none = B.make_norm("none", 6)
    x = torch.randn(2, 6, 3, 3)
    assert list(none.parameters()) == [] and torch.equal(none(x), x)
    # instance norm normalises each sample and channel on its own
    y = instance(x)
    assert torch.allclose(y.mean(dim=(2, 3)), torch.zeros(2, 6), atol=1e-5)


@pytest.mark.parametrize("name", sorted(B.ACTIVATIONS))
def test_activations_match_torch_and_are_not_in_place(name: str) -> None:
    reference = {
        "relu": F.relu,
        "leaky_relu": lambda t: F.leaky_relu(t, 0.2),
        "elu": F.elu,
        "silu": F.silu,
    }[name]
    x = torch.linspace(-3, 3, 13)
    kept = x.clone()
    y = B.make_activation(name)(x)
    assert torch.allclose(y, reference(kept))
    assert torch.equal(x, kept), "a residual block's input must survive its activation"


# --------------------------------------------------------------------------------------------------
# Weighted layers
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spectral_norm", [True, False])
def test_layers_apply_spectral_norm_only_when_asked(spectral_norm: bool) -> None:
    layers = B.make_layers(spectral_norm=spectral_norm, init="dcgan_normal")
    for layer in (
        layers.conv2d(3, 4, 3),
        layers.conv_transpose2d(4, 3, 4, stride=2, padding=1),
        layers.linear(5, 1),
    ):
        assert parametrize.is_parametrized(layer, "weight") is spectral_norm


def test_spectral_norm_normalises_the_weight() -> None:
    torch.manual_seed(0)
    layer = B.make_layers(spectral_norm=True, init="xavier_uniform").linear(64, 1)
    raw = layer.parametrizations.weight.original
    assert torch.linalg.matrix_norm(raw, ord=2) > 1.05  # it really is rescaled below
    assert torch.linalg.matrix_norm(layer.weight, ord=2).item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("spectral_norm", [True, False])
def test_dcgan_init_is_applied_to_the_trained_weight(spectral_norm: bool) -> None:
    torch.manual_seed(0)
    layer = B.make_layers(spectral_norm=spectral_norm, init="dcgan_normal").conv2d(64, 64, 3)
    # with spectral norm the trained tensor is the parametrization's original, initialised first
    weight = layer.parametrizations.weight.original if spectral_norm else layer.weight
    assert weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert weight.mean().abs().item() < 0.002
    assert torch.count_nonzero(layer.bias) == 0


def test_xavier_init_bounds() -> None:
    torch.manual_seed(0)
    layer = PLAIN.conv2d(32, 16, 3)
    bound = math.sqrt(6.0 / (32 * 9 + 16 * 9))
    assert layer.weight.abs().max().item() <= bound
    assert layer.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert torch.count_nonzero(layer.bias) == 0


def test_init_norm_affine() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(B.make_norm("batch", 512), B.make_norm("instance", 512))
    B.init_norm_affine(net, std=0.02)
    for norm in net:
        assert norm.weight.mean().item() == pytest.approx(1.0, abs=0.005)
        assert norm.weight.std().item() == pytest.approx(0.02, rel=0.15)
        assert torch.count_nonzero(norm.bias) == 0


# --------------------------------------------------------------------------------------------------
# Resampling: exact x2 and /2 for every mode and kernel
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("upsample", sorted(B.UP_CONVS))
@pytest.mark.parametrize("kernel_size", [2, 3, 4, 5, 6, 7])
def test_up_convs_give_exact_x2(upsample: str, kernel_size: int) -> None:
    up = B.UP_CONVS[upsample](3, 5, kernel_size, PLAIN)
    for size in (1, 2, 5, 8):
        assert up(torch.randn(2, 3, size, size)).shape == (2, 5, 2 * size, 2 * size)


@pytest.mark.parametrize("kernel_size", range(1, 8))
def test_same_conv_keeps_the_size(kernel_size: int) -> None:
    conv = B.same_conv(3, 4, kernel_size, PLAIN)
    assert conv(torch.randn(1, 3, 7, 6)).shape == (1, 4, 7, 6)


def test_same_conv_pads_even_kernels_asymmetrically_with_zeros() -> None:
    conv = B.same_conv(1, 1, 2, PLAIN)
    pad, inner = conv
    assert isinstance(pad, nn.ZeroPad2d) and pad.padding == (0, 1, 0, 1)
    assert inner.padding == (0, 0)


@pytest.mark.parametrize("name", sorted(B.UPSAMPLERS))
def test_upsamplers_double_and_keep_channels(name: str) -> None:
    up = B.UPSAMPLERS[name].make(6, PLAIN)
    assert up(torch.randn(2, 6, 3, 3)).shape == (2, 6, 6, 6)
    # the skip-resize keywords are valid F.interpolate arguments to any size
    resized = F.interpolate(torch.randn(1, 6, 2, 2), size=(8, 8), **B.UPSAMPLERS[name].resize)
    assert resized.shape == (1, 6, 8, 8)


@pytest.mark.parametrize("name", sorted(B.DOWNSAMPLERS))
def test_downsamplers_halve_and_keep_channels(name: str) -> None:
    down = B.make_downsample(name, 6, PLAIN)
    assert down(torch.randn(2, 6, 8, 8)).shape == (2, 6, 4, 4)
    assert isinstance(B.make_downsample(None, 6, PLAIN), nn.Identity)


def test_stages() -> None:
    up = B.up_stage(
        8, 4, kernel_size=4, upsample="nearest", norm="instance", activation="relu", layers=PLAIN
    )
    assert up(torch.randn(2, 8, 4, 4)).shape == (2, 4, 8, 8)
    down = B.down_stage(3, 8, activation="leaky_relu", layers=PLAIN)
    assert down(torch.randn(2, 3, 8, 8)).shape == (2, 8, 4, 4)


# --------------------------------------------------------------------------------------------------
# AutoGAN cell
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", sorted(B.CELL_ORDERS))
@pytest.mark.parametrize("upsample", sorted(B.UPSAMPLERS))
def test_cell_shapes_and_skip_inputs(order: str, upsample: str) -> None:
    torch.manual_seed(0)
    cell = B.Cell(
        6,
        4,
        order=order,
        norm="batch",
        upsample=upsample,
        shortcut=True,
        skip_channels=[5, 4],
        layers=PLAIN,
    )
    x = torch.randn(2, 6, 4, 4)
    skips = [torch.randn(2, 5, 2, 2), torch.randn(2, 4, 4, 4)]  # x4 and x2 below the output
    skip_out, out = cell(x, skips)
    assert skip_out.shape == out.shape == (2, 4, 8, 8)
    with pytest.raises(ValueError, match="takes 2 skip input"):
        cell(x, skips[:1])


def test_cell_skip_inputs_are_added_through_their_convolution() -> None:
    torch.manual_seed(0)
    cell = B.Cell(
        4,
        4,
        order="pre",
        norm="none",
        upsample="bilinear",
        shortcut=False,
        skip_channels=[4],
        layers=PLAIN,
    )
    x, skip = torch.randn(1, 4, 4, 4), torch.randn(1, 4, 2, 2)
    _, with_skip = cell(x, [skip])
    _, other_skip = cell(x, [skip + 1.0])
    assert not torch.allclose(with_skip, other_skip)
    with torch.no_grad():
        for p in cell.skip_in.parameters():
            p.zero_()
    _, zero_a = cell(x, [skip])
    _, zero_b = cell(x, [skip + 1.0])
    assert torch.equal(zero_a, zero_b)


def test_cell_shortcut_and_orders() -> None:
    plain = B.Cell(
        4, 4, order="post", norm="batch", upsample="nearest", shortcut=False, layers=PLAIN
    )
    assert plain.shortcut is None
    # post-activation ends with the activation, so (ReLU) its output is non-negative
    _, out = plain(torch.randn(2, 4, 3, 3))
    assert out.min() >= 0
    pre = B.Cell(4, 4, order="pre", norm="batch", upsample="nearest", shortcut=False, layers=PLAIN)
    assert isinstance(pre.first[0], nn.BatchNorm2d) and isinstance(pre.second[-1], nn.Conv2d)
    _, out = pre(torch.randn(2, 4, 3, 3))
    assert out.min() < 0


def test_skip_cell_stack_validates_sources() -> None:
    cells = [
        B.Cell(4, 4, order="pre", norm="none", upsample="nearest", shortcut=False, layers=PLAIN)
        for _ in range(2)
    ]
    with pytest.raises(ValueError, match="earlier cells"):
        B.SkipCellStack(cells, [(), (1,)])
    with pytest.raises(ValueError, match="2 cells but 1"):
        B.SkipCellStack(cells, [()])


# --------------------------------------------------------------------------------------------------
# Discriminator blocks and shells
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("downsample", [None, *sorted(B.DOWNSAMPLERS)])
def test_dis_blocks(downsample: str | None) -> None:
    first = B.OptimizedDisBlock(3, 8, downsample=downsample, activation="relu", layers=PLAIN)
    block = B.DisBlock(8, 8, downsample=downsample, activation="leaky_relu", layers=PLAIN)
    size = 4 if downsample else 8
    h = first(torch.randn(2, 3, 8, 8))
    assert h.shape == (2, 8, size, size)
    assert block(h).shape == (
        2,
        8,
        size // 2 if downsample else size,
        size // 2 if downsample else size,
    )
    # the shortcut is learned exactly when the block changes the shape
    assert isinstance(block.shortcut, nn.Identity) is (downsample is None)


def test_sum_pool_and_shells() -> None:
    x = torch.randn(2, 3, 4, 4)
    assert torch.allclose(B.SumPool()(x), x.sum(dim=(2, 3)))
    generator = B.Generator(
        latent_dim=5, stem=nn.Linear(5, 3 * 2 * 2), body=nn.Unflatten(1, (3, 2, 2)), head=nn.Tanh()
    )
    assert generator(torch.randn(4, 5)).shape == (4, 3, 2, 2)
    with pytest.raises(ValueError, match=r"\(N, 5\), got \(4, 6\)"):
        generator(torch.randn(4, 6))
    discriminator = B.Discriminator(body=nn.Flatten(), head=nn.Linear(48, 1))
    assert discriminator(x).shape == (2,)
