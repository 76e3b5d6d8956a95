"""TorchScript and ONNX exports of real generators of both families reproduce the eager module."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from search_spaces import ArchConfig, build_generator
from storage.exporters import ExportError, export_onnx, export_torchscript

LATENT = 16

# torch.jit is deprecated upstream; loading the exported file is exactly what users will do.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    # Tiny models: with 2+ intra-op threads on a shared, loaded CPU, thread spin-waits make each
    # forward 100x slower than the work itself.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _arch(family: str, generator: dict[str, Any], *, channels: int = 3) -> ArchConfig:
    return ArchConfig(
        family=family, resolution=16, channels=channels, generator=generator, discriminator={}
    )


ARCHS = {
    "dcgan-deconv-batch": _arch(
        "dcgan",
        {"latent_dim": LATENT, "depth": 2, "base_width": 8, "norm": "batch", "upsample": "deconv"},
    ),
    "dcgan-bilinear-instance-gray": _arch(
        "dcgan",
        {
            "latent_dim": LATENT,
            "depth": 3,
            "base_width": 4,
            "kernel_size": 3,
            "norm": "instance",
            "activation": "silu",
            "upsample": "bilinear",
        },
        channels=1,
    ),
    "autogan-mixed-cells": _arch(
        "autogan",
        {
            "latent_dim": LATENT,
            "width": 8,
            "cell1_conv": "post",
            "cell1_norm": "batch",
            "cell1_upsample": "deconv",
            "cell2_norm": "instance",
            "cell2_upsample": "bilinear",
            "cell3_shortcut": True,
        },
    ),
}


def _trained_looking(cfg: ArchConfig) -> nn.Module:
    """A built generator whose batch-norm statistics are not the defaults, in train mode."""
    torch.manual_seed(0)
    g = build_generator(cfg)
    g.train()
    with torch.no_grad():
        for _ in range(3):
            g(torch.randn(8, g.latent_dim))
    return g


def _eager(g: nn.Module, z: torch.Tensor) -> torch.Tensor:
    was_training = g.training
    g.eval()
    with torch.no_grad():
        out = g(z)
    g.train(was_training)
    return out


@pytest.fixture(scope="module", params=sorted(ARCHS))
def generator(request: pytest.FixtureRequest) -> nn.Module:
    return _trained_looking(ARCHS[request.param])


def test_torchscript_reproduces_the_generator_at_any_batch(
    generator: nn.Module, tmp_path: Path
) -> None:
    path = export_torchscript(generator, tmp_path / "sub" / "g.pt", latent_dim=LATENT)
    assert path == tmp_path / "sub" / "g.pt"
    assert generator.training, "the caller's module must stay in train mode"
    extra = {"gannas.json": ""}
    loaded = torch.jit.load(str(path), _extra_files=extra)
    meta = json.loads(extra["gannas.json"])
    assert meta["output"]["range"] == [-1.0, 1.0] and meta["output"]["layout"] == "NCHW"
    z = torch.randn(7, LATENT, generator=torch.Generator().manual_seed(3))
    for n in (1, 2, 5, 7):
        with torch.no_grad():
            got = loaded(z[:n])
        want = _eager(generator, z[:n])
        assert got.shape == want.shape and got.shape[0] == n
        torch.testing.assert_close(got, want, rtol=0.0, atol=1e-6)
    assert got.abs().max() <= 1.0
    assert not list(tmp_path.glob("sub/.*"))  # no temp file left behind


def test_onnx_reproduces_the_generator_with_a_dynamic_batch(
    generator: nn.Module, tmp_path: Path
) -> None:
    import onnx
    import onnxruntime

    path = export_onnx(generator, tmp_path / "g.onnx", latent_dim=LATENT)
    model = onnx.load(str(path))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    meta = json.loads({p.key: p.value for p in model.metadata_props}["gannas"])
    assert meta["input"]["name"] == "z" and meta["output"]["name"] == "images"
    assert meta["exporter"] == "torchscript"  # the fast exporter is tried first

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert inp.name == "z" and out.name == "images"
    assert isinstance(inp.shape[0], str) and inp.shape[1] == LATENT  # symbolic batch axis
    assert isinstance(out.shape[0], str)
    z = torch.randn(6, LATENT, generator=torch.Generator().manual_seed(4))
    for n in (1, 2, 6):
        (got,) = session.run(["images"], {"z": z[:n].numpy()})
        assert got.dtype.name == "float32" and got.shape[0] == n
        torch.testing.assert_close(
            torch.from_numpy(got), _eager(generator, z[:n]), rtol=0.0, atol=1e-4
        )


def test_onnx_dynamo_exporter_and_other_opset(tmp_path: Path) -> None:
    import onnx
    import onnxruntime

    g = _trained_looking(ARCHS["dcgan-deconv-batch"])
    path = export_onnx(g, tmp_path / "g.onnx", latent_dim=LATENT, opset=18, exporter="dynamo")
    model = onnx.load(str(path))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [18]
    assert json.loads(model.metadata_props[0].value)["exporter"] == "dynamo"
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert isinstance(session.get_inputs()[0].shape[0], str)
    z = torch.randn(3, LATENT)
    (got,) = session.run(["images"], {"z": z.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), _eager(g, z), rtol=0.0, atol=1e-4)


class _BatchBakedByTrace(nn.Module):
    """``int(z.shape[0])`` becomes a constant in a trace, so only torch.jit.script generalises."""

    def __init__(self) -> None:
        super().__init__()
        self.latent_dim = LATENT
        self.fc = nn.Linear(LATENT, 3 * 4 * 4)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(z)).reshape(int(z.shape[0]), 3, 4, 4)


class _NotExportable(nn.Module):
    """Leaves torch for numpy inside forward: no tracer or compiler can capture that."""

    def __init__(self) -> None:
        super().__init__()
        self.latent_dim = LATENT
        self.fc = nn.Linear(LATENT, 3 * 4 * 4)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).detach().numpy()
        return torch.from_numpy(x.clip(-1, 1)).reshape(-1, 3, 4, 4)


def test_torchscript_falls_back_to_script_when_the_trace_fixes_the_batch(tmp_path: Path) -> None:
    g = _BatchBakedByTrace()
    loaded = torch.jit.load(str(export_torchscript(g, tmp_path / "g.pt", latent_dim=LATENT)))
    z = torch.randn(5, LATENT)
    assert torch.equal(loaded(z), _eager(g, z))


def test_unexportable_generators_raise_export_error_and_leave_no_file(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="TorchScript") as info:
        export_torchscript(_NotExportable(), tmp_path / "g.pt", latent_dim=LATENT)
    assert "trace" in str(info.value) and "script" in str(info.value)
    with pytest.raises(ExportError, match="ONNX"):
        export_onnx(
            _NotExportable(), tmp_path / "g.onnx", latent_dim=LATENT, exporter="torchscript"
        )
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    g = _BatchBakedByTrace()
    with pytest.raises(ExportError, match="does not match the generator's latent_dim=16"):
        export_torchscript(g, tmp_path / "g.pt", latent_dim=8)
    with pytest.raises(ExportError, match="positive integer"):
        export_onnx(g, tmp_path / "g.onnx", latent_dim=0)
    with pytest.raises(ExportError, match="exporter must be"):
        export_onnx(g, tmp_path / "g.onnx", latent_dim=LATENT, exporter="tf")  # type: ignore[arg-type]
    flat = nn.Sequential(nn.Linear(LATENT, 4))
    with pytest.raises(ExportError, match=r"expected \(N, C, R, R\)"):
        export_torchscript(flat, tmp_path / "g.pt", latent_dim=LATENT)
