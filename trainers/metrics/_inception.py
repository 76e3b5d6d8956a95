"""torch-fidelity's Inception-v3 (FID) module, loaded safely and made fast for inference.

We reuse torch-fidelity's module class, i.e. its exact layer structure, TF1-compatible bilinear
resize to 299x299 and ``(x - 128) / 128`` normalisation, rather than porting the network by hand.
Only two things differ:

* **Loading.** torch-fidelity's constructor unpickles its weights file with
  ``torch.load(weights_only=False)``. We never hand it a file: the constructor receives an in-memory
  serialisation of an *empty* dict we produced ourselves, and the real state dict, loaded beforehand
  with ``weights_only=True`` (see :func:`~trainers.metrics._weights.load_inception_state_dict`), is
  copied in afterwards with ``load_state_dict(strict=True)``.
* **Speed (CPU).** In eval mode every ``conv -> BatchNorm`` pair is an affine map, so each BN is folded
  into its conv's weights and bias (one kernel fewer per layer, no per-layer BN pass) and the weights are
  stored channels-last (NHWC), which oneDNN runs much faster on CPU. Folding changes float32 rounding
  only: features agree with torch-fidelity's to ~1e-6 relative and FID to far better than 1e-3 (tested).
  On CPU, :func:`pack_for_onednn` then turns every conv+ReLU into one oneDNN call on a weight
  reordered once into oneDNN's blocked layout, the two things ``torch.compile``'s freezing pass buys
  for a CNN, without its minutes of compilation. We measured ``torch.jit.freeze``/
  ``optimize_for_inference`` and ``torch.compile`` too; see ``benchmarks/results/fid_speed.md`` for
  the numbers behind this choice.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = [
    "build_unloaded_inception",
    "build_inception",
    "optimize_for_cpu_inference",
    "onednn_fusion_available",
    "pack_for_onednn",
]

# torch-fidelity's trunk always sees 299x299 images (it resizes first), so every conv's input shape is
# known up to the batch size before any image arrives.
_TRUNK_INPUT = 299


def _inception_class() -> type[nn.Module]:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _SafelyLoadedInceptionV3(FeatureExtractorInceptionV3):  # type: ignore[misc]
        """torch-fidelity's module whose constructor loads nothing (see module docstring)."""

        def load_state_dict(self, state_dict, strict=True, assign=False):  # type: ignore[no-untyped-def]
            if len(state_dict) == 0:
                # The empty dict we gave the constructor: the real weights come later.
                return None
            return super().load_state_dict(state_dict, strict=strict, assign=assign)

    return _SafelyLoadedInceptionV3


def _empty_state_bytes() -> io.BytesIO:
    buffer = io.BytesIO()
    torch.save({}, buffer)
    buffer.seek(0)
    return buffer


def build_unloaded_inception(features: Sequence[str]) -> nn.Module:
    """torch-fidelity's Inception-v3 with uninitialised parameters (use under ``torch.device('meta')`` for shapes)."""
    cls = _inception_class()
    return cls(
        "inception-v3-compat",
        list(features),
        feature_extractor_weights_path=_empty_state_bytes(),
    )


def build_inception(state_dict: dict[str, torch.Tensor], features: Sequence[str]) -> nn.Module:
    """torch-fidelity's Inception-v3 holding ``state_dict`` (strict), in eval mode, no grad."""
    module = build_unloaded_inception(features)
    module.load_state_dict(state_dict, strict=True)
    module.requires_grad_(False)
    return module.eval()


def optimize_for_cpu_inference(module: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm into its conv and store weights channels-last (in place)."""
    from torch_fidelity.feature_extractor_inceptionv3 import BasicConv2d

    for block in module.modules():
        if isinstance(block, BasicConv2d) and isinstance(block.bn, nn.BatchNorm2d):
            block.conv = fuse_conv_bn_eval(block.conv.eval(), block.bn.eval())
            # BasicConv2d.forward is conv -> bn -> relu; with the BN folded the middle step is a no-op.
            block.bn = nn.Identity()
    module.requires_grad_(False)
    # A channels-last weight makes oneDNN choose NHWC kernels; the activations follow.
    return module.to(memory_format=torch.channels_last).eval()


def onednn_fusion_available() -> bool:
    """Whether this torch build has oneDNN with the fused conv+pointwise op inductor uses on CPU."""
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
        and hasattr(torch.ops.mkldnn, "_reorder_convolution_weight")
    )


class _FusedConvReLU(nn.Module):
    """A BN-folded ``BasicConv2d`` as one oneDNN call: conv + bias + ReLU with a prepacked weight.

    This is what ``torch.compile``'s CPU freezing pass produces for a conv->relu pair, done eagerly:
    the weight is reordered once into oneDNN's blocked layout (instead of on every call) and the ReLU
    runs as a post-op on the conv's output tile while it is still in cache (instead of another pass
    over the activation). The arithmetic is the same float32 conv, so values move by rounding only.
    """

    def __init__(self, conv: nn.Conv2d, input_size: Sequence[int]) -> None:
        super().__init__()
        if conv.bias is None or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("expected a BN-folded Conv2d with a bias and numeric zero padding")
        self.padding = list(conv.padding)
        self.stride = list(conv.stride)
        self.dilation = list(conv.dilation)
        self.groups = conv.groups
        weight = torch.ops.mkldnn._reorder_convolution_weight(
            conv.weight.detach().contiguous(), self.padding, self.stride, self.dilation, self.groups, list(input_size)
        )
        self.register_buffer("weight", weight)
        self.register_buffer("bias", conv.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(
            x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups, "relu", [], ""
        )


def _conv_input_sizes(features: Sequence[str], trunk: Sequence[str], batch_size: int) -> dict[str, list[int]]:
    # Shapes only: run the trunk on the meta device (no memory, no arithmetic) and record what each
    # BasicConv2d receives.
    from torch_fidelity.feature_extractor_inceptionv3 import BasicConv2d

    sizes: dict[str, list[int]] = {}
    with torch.device("meta"):
        module = build_unloaded_inception(features)
        for name, block in module.named_modules():
            if isinstance(block, BasicConv2d):
                block.register_forward_pre_hook(lambda _m, args, n=name: sizes.__setitem__(n, list(args[0].shape)))
        x = torch.empty(batch_size, 3, _TRUNK_INPUT, _TRUNK_INPUT)
        for name in trunk:
            x = getattr(module, name)(x)
    return sizes


def pack_for_onednn(
    module: nn.Module, *, features: Sequence[str], trunk: Sequence[str], batch_size: int = 64
) -> nn.Module:
    """Replace every (BN-folded, see :func:`optimize_for_cpu_inference`) ``BasicConv2d`` by a fused,
    prepacked oneDNN conv+ReLU (in place). CPU only; torch-fidelity's block ``forward``s run unchanged.

    ``batch_size`` only picks the shape oneDNN tunes the weight layout for; other batch sizes work.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import BasicConv2d

    sizes = _conv_input_sizes(features, trunk, batch_size)
    for name, block in list(module.named_modules()):
        if not isinstance(block, BasicConv2d):
            continue
        if not isinstance(block.bn, nn.Identity):
            raise ValueError(f"{name}: fold BatchNorm (optimize_for_cpu_inference) before packing")
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, attr, _FusedConvReLU(block.conv, sizes[name]))
    return module.eval()
