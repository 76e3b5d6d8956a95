from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from gannas.errors import CheckpointError
from search_spaces.config import ArchConfig
from storage import load_generator, read_metadata, save_generator
from storage.checkpoints import FORMAT_VERSION

PROTOCOL = {"feature_extractor": "inception-v3-compat", "num_samples": 64, "dataset": "digits"}
PROVENANCE = {"study": "s1", "trial": 3, "dataset": "digits"}


class TinyGenerator(nn.Module):
    """Linear -> BatchNorm (buffers) -> spectral-normed conv (parametrization) -> tanh."""

    def __init__(self, width: int, channels: int, *, extra_layer: bool = False) -> None:
        super().__init__()
        self.latent_dim = 8
        self.width = width
        self.fc = nn.Linear(self.latent_dim, width * 4 * 4)
        self.bn = nn.BatchNorm2d(width)
        self.conv = nn.utils.parametrizations.spectral_norm(
            nn.Conv2d(width, channels, 3, padding=1)
        )
        self.extra = nn.Identity() if not extra_layer else nn.Conv2d(channels, channels, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(z.shape[0], self.width, 4, 4)
        return torch.tanh(self.extra(self.conv(torch.relu(self.bn(x)))))


def tiny_builder(arch: ArchConfig) -> nn.Module:
    return TinyGenerator(
        arch.generator["width"], arch.channels, extra_layer=arch.generator.get("extra", False)
    )


def tiny_arch(width: int = 4, **extra: Any) -> ArchConfig:
    return ArchConfig(
        family="tiny",
        resolution=4,
        channels=3,
        generator={"width": width, **extra},
        discriminator={},
    )


def trained_tiny() -> TinyGenerator:
    torch.manual_seed(0)
    g = TinyGenerator(4, 3)
    g.train()
    for _ in range(3):  # move BN statistics and the spectral-norm power-iteration vectors
        g(torch.randn(5, 8))
    return g.eval()


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    return save_generator(
        tmp_path / "ckpt",
        trained_tiny(),
        tiny_arch(),
        protocol=PROTOCOL,
        score={"fid": 42.0},
        provenance=PROVENANCE,
    )


def test_round_trip_with_spectral_norm_and_buffers(exported: Path) -> None:
    g = trained_tiny()
    assert sorted(p.name for p in exported.iterdir()) == [
        "arch.json",
        "generator.safetensors",
        "metadata.json",
    ]
    torch.manual_seed(123)  # the fresh module starts from different weights and u/v vectors
    loaded = load_generator(exported, builder=tiny_builder)
    assert not loaded.training
    keys = set(loaded.state_dict())
    assert "conv.parametrizations.weight.original" in keys and "bn.running_mean" in keys
    z = torch.randn(6, 8, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        assert torch.equal(loaded(z), g(z))
    for key, value in g.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_metadata_contents(exported: Path) -> None:
    meta = read_metadata(exported)
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["latent_dim"] == 8 and meta["output_range"] == [-1.0, 1.0]
    assert meta["protocol"] == PROTOCOL and meta["score"] == {"fid": 42.0}
    assert meta["provenance"] == PROVENANCE
    assert meta["versions"]["torch"] and meta["versions"]["optuna"] and meta["versions"]["gannas"]
    assert meta["created_at"].endswith("+00:00")
    arch = json.loads((exported / "arch.json").read_text())
    assert ArchConfig.model_validate(arch) == tiny_arch()


def test_non_finite_scores_are_standard_json(tmp_path: Path) -> None:
    out = save_generator(
        tmp_path / "c",
        trained_tiny(),
        tiny_arch(),
        protocol=PROTOCOL,
        score={"fid": float("inf"), "kid": float("nan")},
        provenance={},
    )
    text = (out / "metadata.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert read_metadata(out)["score"] == {"fid": "inf", "kid": "nan"}


def test_refuses_to_overwrite_unless_asked(exported: Path) -> None:
    with pytest.raises(CheckpointError, match=r"not empty.*--overwrite \(overwrite=True in"):
        save_generator(
            exported, trained_tiny(), tiny_arch(), protocol={}, score={"fid": 1.0}, provenance={}
        )
    assert read_metadata(exported)["score"] == {"fid": 42.0}
    save_generator(
        exported,
        trained_tiny(),
        tiny_arch(),
        protocol={},
        score={"fid": 1.0},
        provenance={},
        overwrite=True,
    )
    assert read_metadata(exported)["score"] == {"fid": 1.0}
    assert [p.name for p in exported.parent.iterdir()] == ["ckpt"]  # no temp or old dirs left


def test_empty_existing_dir_is_fine_and_file_target_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    save_generator(
        tmp_path / "empty", trained_tiny(), tiny_arch(), protocol={}, score={}, provenance={}
    )
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CheckpointError, match="not a directory"):
        save_generator(
            tmp_path / "afile", trained_tiny(), tiny_arch(), protocol={}, score={}, provenance={}
        )


def test_failed_write_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import storage.checkpoints as ck

    real = ck._write_json

    def fail_on_metadata(path: Path, data: Any) -> None:
        if path.name == "metadata.json":
            raise OSError("disk full")
        real(path, data)

    monkeypatch.setattr(ck, "_write_json", fail_on_metadata)
    with pytest.raises(OSError, match="disk full"):
        save_generator(
            tmp_path / "c", trained_tiny(), tiny_arch(), protocol={}, score={}, provenance={}
        )
    assert list(tmp_path.iterdir()) == []


def test_failed_write_removes_the_parent_directories_it_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import storage.checkpoints as ck

    def fail(path: Path, data: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck, "_write_json", fail)
    with pytest.raises(OSError, match="No space left"):
        save_generator(
            tmp_path / "new" / "deeper" / "c", trained_tiny(), tiny_arch(),
            protocol={}, score={}, provenance={},
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_a_file_in_the_parent_path_is_named(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    with pytest.raises(NotADirectoryError) as info:
        save_generator(
            tmp_path / "plain" / "sub" / "c", trained_tiny(), tiny_arch(),
            protocol={}, score={}, provenance={},
        )  # fmt: skip
    assert info.value.filename == str(tmp_path / "plain")  # not "File exists" about the target
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_exported_files_get_the_umasks_mode(
    tmp_path: Path, mask: int, set_umask: Any
) -> None:
    # safetensors writes 0600 files; on a shared volume every exported file must be readable as
    # far as the umask allows, like the JSON files next to it.
    set_umask(mask)
    out = save_generator(
        tmp_path / "c", trained_tiny(), tiny_arch(), protocol={}, score={}, provenance={},
        extra_files={"generator.onnx": lambda p: p.write_bytes(b"x")},
    )  # fmt: skip
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert modes == {
        name: 0o666 & ~mask
        for name in ("generator.safetensors", "arch.json", "metadata.json", "generator.onnx")
    }


def test_unserialisable_metadata_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"provenance\.when is a object"):
        save_generator(
            tmp_path / "c",
            trained_tiny(),
            tiny_arch(),
            protocol={},
            score={},
            provenance={"when": object()},
        )
    assert list(tmp_path.iterdir()) == []


def test_generator_without_latent_dim_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="latent_dim"):
        save_generator(
            tmp_path / "c", nn.Linear(2, 2), tiny_arch(), protocol={}, score={}, provenance={}
        )


# --- load errors ---------------------------------------------------------------------------------


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_generator(tmp_path / "nope", builder=tiny_builder)


def test_missing_files(exported: Path) -> None:
    (exported / "arch.json").unlink()
    with pytest.raises(CheckpointError, match=r"arch\.json is missing"):
        load_generator(exported, builder=tiny_builder)
    (exported / "generator.safetensors").unlink()
    with pytest.raises(CheckpointError, match="has no generator.safetensors"):
        load_generator(exported, builder=tiny_builder)


def test_a_weights_path_that_is_a_directory_is_named_as_such(exported: Path) -> None:
    (exported / "generator.safetensors").unlink()
    (exported / "generator.safetensors").mkdir()
    with pytest.raises(CheckpointError, match=r"generator\.safetensors is not a file"):
        load_generator(exported, builder=tiny_builder)


@pytest.mark.parametrize("path", [None, 42])
def test_a_path_of_the_wrong_type_is_a_checkpoint_error(path: object) -> None:
    with pytest.raises(CheckpointError, match="expected the path of a checkpoint directory"):
        load_generator(path, builder=tiny_builder)  # type: ignore[arg-type]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_this_machine_lacks_is_a_checkpoint_error(exported: Path) -> None:
    with pytest.raises(CheckpointError, match="cannot load the generator onto device 'cuda'"):
        load_generator(exported, builder=tiny_builder, device="cuda")


def test_missing_metadata(exported: Path) -> None:
    (exported / "metadata.json").unlink()
    with pytest.raises(CheckpointError, match=r"metadata\.json is missing"):
        read_metadata(exported)


def test_malformed_json(exported: Path) -> None:
    (exported / "arch.json").write_text('{"family": "tiny",')
    with pytest.raises(CheckpointError, match=r"arch\.json is not valid JSON.*line 1"):
        load_generator(exported, builder=tiny_builder)


def test_invalid_arch(exported: Path) -> None:
    arch = json.loads((exported / "arch.json").read_text())
    arch["channels"] = 5
    (exported / "arch.json").write_text(json.dumps(arch))
    with pytest.raises(CheckpointError, match=r"invalid .*arch\.json: channels"):
        load_generator(exported, builder=tiny_builder)


def test_metadata_of_wrong_format_or_newer_version(exported: Path) -> None:
    meta = json.loads((exported / "metadata.json").read_text())
    (exported / "metadata.json").write_text(
        json.dumps({**meta, "format_version": FORMAT_VERSION + 1})
    )
    with pytest.raises(CheckpointError, match="upgrade gannas"):
        load_generator(exported, builder=tiny_builder)
    (exported / "metadata.json").write_text(json.dumps([1, 2]))
    with pytest.raises(CheckpointError, match="not gannas checkpoint metadata"):
        read_metadata(exported)


def test_truncated_safetensors(exported: Path) -> None:
    weights = exported / "generator.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_generator(exported, builder=tiny_builder)


def test_garbage_safetensors(exported: Path) -> None:
    (exported / "generator.safetensors").write_bytes(b"\x00" * 7)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_generator(exported, builder=tiny_builder)


def test_shape_mismatch_names_the_keys(exported: Path) -> None:
    arch = json.loads((exported / "arch.json").read_text())
    arch["generator"]["width"] = 6
    (exported / "arch.json").write_text(json.dumps(arch))
    with pytest.raises(
        CheckpointError, match=r"do not match.*shape: bn\.bias \(expected \[6\], found \[4\]\)"
    ):
        load_generator(exported, builder=tiny_builder)


def test_missing_keys_are_named(exported: Path) -> None:
    arch = json.loads((exported / "arch.json").read_text())
    arch["generator"]["extra"] = True
    (exported / "arch.json").write_text(json.dumps(arch))
    with pytest.raises(CheckpointError, match=r"missing: extra\.bias, extra\.weight"):
        load_generator(exported, builder=tiny_builder)


def test_builder_failure_is_a_checkpoint_error(exported: Path) -> None:
    def broken(arch: ArchConfig) -> nn.Module:
        raise KeyError("tiny")

    with pytest.raises(CheckpointError, match="cannot rebuild the generator.*family 'tiny'"):
        load_generator(exported, builder=broken)


class _Payload:
    """Unpickling this creates ``marker``: the kind of code execution a pickle can carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def test_pickle_payload_is_never_loaded(tmp_path: Path) -> None:
    # The payload is live: unpickling it really would create its marker.
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(probe))).close()
    assert probe.exists()

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil"
    ckpt.mkdir()
    (ckpt / "generator.pt").write_bytes(pickle.dumps(_Payload(marker)))
    (ckpt / "arch.json").write_text(json.dumps(tiny_arch().to_json_dict()))
    with pytest.raises(CheckpointError, match="pickle is never loaded for safety") as err:
        load_generator(ckpt, builder=tiny_builder)
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="pickle"):
        load_generator(ckpt / "generator.pt", builder=tiny_builder)

    # A pickle renamed to the safetensors name is rejected as corrupt, not unpickled.
    exported = save_generator(
        tmp_path / "ok", trained_tiny(), tiny_arch(), protocol={}, score={}, provenance={}
    )
    (exported / "generator.safetensors").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_generator(exported, builder=tiny_builder)
    assert not marker.exists()


def test_dcgan_round_trip_with_the_real_builder(tmp_path: Path) -> None:
    """Contract test against search_spaces.build_generator (family 'dcgan', defaults filled in)."""
    from search_spaces import build_generator

    arch = ArchConfig(family="dcgan", resolution=16, channels=3, generator={}, discriminator={})
    torch.manual_seed(0)
    g = build_generator(arch).eval()
    out = save_generator(
        tmp_path / "dc", g, arch, protocol=PROTOCOL, score={"fid": 3.0}, provenance=PROVENANCE
    )
    torch.manual_seed(1)
    loaded = load_generator(out)
    z = torch.randn(4, g.latent_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = loaded(z)
        assert torch.equal(y, g(z))
    assert y.shape == (4, 3, 16, 16)
    assert float(y.abs().max()) <= 1.0
    assert read_metadata(out)["latent_dim"] == g.latent_dim


def test_extra_files_are_written_atomically_and_listed(tmp_path: Path) -> None:
    def write_readme(path: Path) -> None:
        path.write_text("extra")

    out = save_generator(
        tmp_path / "c",
        trained_tiny(),
        tiny_arch(),
        protocol={},
        score={},
        provenance={},
        extra_files={"generator.onnx": write_readme},
    )
    assert (out / "generator.onnx").read_text() == "extra"
    assert read_metadata(out)["extra_files"] == ["generator.onnx"]
    load_generator(out, builder=tiny_builder)  # extras are ignored by the loader

    def broken(path: Path) -> None:
        raise RuntimeError("onnx exporter failed")

    with pytest.raises(RuntimeError, match="onnx exporter failed"):
        save_generator(
            tmp_path / "d",
            trained_tiny(),
            tiny_arch(),
            protocol={},
            score={},
            provenance={},
            extra_files={"generator.onnx": broken},
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]

    for bad in ("metadata.json", "../escape.txt", "sub/x.bin"):
        with pytest.raises(CheckpointError, match="plain file name"):
            save_generator(
                tmp_path / "e",
                trained_tiny(),
                tiny_arch(),
                protocol={},
                score={},
                provenance={},
                extra_files={bad: write_readme},
            )
