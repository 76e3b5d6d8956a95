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
  We measured ``torch.jit.freeze``/``optimize_for_inference`` and ``torch.compile`` too; see
  ``benchmarks/results/fid_speed.md`` for the numbers behind this choice.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["build_unloaded_inception", "build_inception", "optimize_for_cpu_inference"]


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
