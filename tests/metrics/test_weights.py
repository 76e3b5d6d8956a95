"""Weights resolution order, hash verification, atomic download and safe loading. Never downloads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from gannas.errors import WeightsError
from trainers.metrics import InceptionFeatureExtractor, resolve_inception_weights
from trainers.metrics import _weights
from trainers.metrics._hashing import file_sha256


@pytest.fixture()
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub dir, no env override, and a URL function that fails loudly if called."""
    hub_dir = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub_dir))
    monkeypatch.delenv(_weights.ENV_WEIGHTS, raising=False)

    def no_network() -> str:
        raise AssertionError("tests must never download")

    monkeypatch.setattr(_weights, "inception_weights_url", no_network)
    return hub_dir / "checkpoints"


def _fake_weights(path: Path, seed: int = 0) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"w": torch.randn(4, generator=torch.Generator().manual_seed(seed))}, path)
    return file_sha256(path)


def _trust(monkeypatch: pytest.MonkeyPatch, sha: str) -> None:
    monkeypatch.setattr(_weights, "EXPECTED_SHA256", sha)


def test_explicit_path_wins_over_env_and_hub(hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sha = _fake_weights(tmp_path / "explicit.pth")
    _fake_weights(tmp_path / "env.pth")
    _fake_weights(hub / _weights.HUB_FILENAMES[0])
    _trust(monkeypatch, sha)
    monkeypatch.setenv(_weights.ENV_WEIGHTS, str(tmp_path / "env.pth"))
    info = resolve_inception_weights(tmp_path / "explicit.pth", download=False)
    assert (info.path, info.source, info.verified, info.sha256) == (str(tmp_path / "explicit.pth"), "argument", True, sha)


def test_env_wins_over_hub(hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sha = _fake_weights(tmp_path / "env.pth", seed=1)
    _fake_weights(hub / _weights.HUB_FILENAMES[0])
    _trust(monkeypatch, sha)
    monkeypatch.setenv(_weights.ENV_WEIGHTS, str(tmp_path / "env.pth"))
    info = resolve_inception_weights(download=False)
    assert info.source == "env" and info.path == str(tmp_path / "env.pth")


@pytest.mark.parametrize("name", _weights.HUB_FILENAMES)
def test_hub_cache_under_either_name(hub: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    _trust(monkeypatch, _fake_weights(hub / name))
    info = resolve_inception_weights(download=False)
    assert info.source == "hub-cache" and Path(info.path) == hub / name and info.verified


def test_pytorch_fid_name_preferred(hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _trust(monkeypatch, _fake_weights(hub / _weights.HUB_FILENAMES[0]))
    _fake_weights(hub / _weights.HUB_FILENAMES[1], seed=3)
    assert Path(resolve_inception_weights(download=False).path).name == _weights.HUB_FILENAMES[0]


def test_nothing_found_and_download_disabled(hub: Path) -> None:
    with pytest.raises(WeightsError, match="download is disabled"):
        resolve_inception_weights(download=False)


def test_download_goes_atomically_into_hub_cache(
    hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "served.pth"
    _trust(monkeypatch, _fake_weights(source, seed=5))
    monkeypatch.setattr(_weights, "inception_weights_url", lambda: source.as_uri())
    info = resolve_inception_weights(download=True)
    assert info.source == "download" and info.verified
    assert Path(info.path) == hub / _weights.HUB_FILENAMES[1]
    assert sorted(os.listdir(hub)) == [_weights.HUB_FILENAMES[1]]  # no temp file left behind
    # A second resolution finds the cached file without downloading.
    monkeypatch.setattr(_weights, "inception_weights_url", lambda: "file:///nonexistent/never")
    assert resolve_inception_weights(download=True).source == "hub-cache"


def test_downloaded_weights_get_the_umasks_mode(
    hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, set_umask
) -> None:
    # A hub cache on a shared volume serves every user: not mkstemp's owner-only 0600.
    set_umask(0o022)
    source = tmp_path / "served.pth"
    _trust(monkeypatch, _fake_weights(source, seed=5))
    monkeypatch.setattr(_weights, "inception_weights_url", lambda: source.as_uri())
    info = resolve_inception_weights(download=True)
    assert Path(info.path).stat().st_mode & 0o777 == 0o644


def test_download_with_wrong_hash_is_discarded(hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "served.pth"
    _fake_weights(source)
    monkeypatch.setattr(_weights, "inception_weights_url", lambda: source.as_uri())
    with pytest.raises(WeightsError, match="discarded"):
        resolve_inception_weights(download=True)
    assert not hub.exists() or os.listdir(hub) == []


def test_download_failure_is_a_weights_error(hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_weights, "inception_weights_url", lambda: (tmp_path / "missing.pth").as_uri())
    with pytest.raises(WeightsError, match="could not download"):
        resolve_inception_weights(download=True)
    assert os.listdir(hub) == []


def test_wrong_or_truncated_file_names_both_hashes(hub: Path, random_weights_path: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(random_weights_path.read_bytes()[:1000])
    with pytest.raises(WeightsError) as info:
        resolve_inception_weights(truncated, download=False)
    message = str(info.value)
    assert str(truncated) in message
    assert _weights.EXPECTED_SHA256 in message and file_sha256(truncated) in message
    assert "--allow-unverified-weights" in message
    # The user's own file is not deleted to be downloaded again; one in the hub cache is.
    assert "Delete it to re-download" not in message and "Give the official file" in message
    hub.mkdir(parents=True)
    (hub / _weights.HUB_FILENAMES[0]).write_bytes(truncated.read_bytes())
    with pytest.raises(WeightsError, match="Delete it to re-download"):
        resolve_inception_weights(download=False)


def test_missing_explicit_file(hub: Path, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_inception_weights(tmp_path / "nope.pth", download=False)


def test_allow_unverified_records_hash(hub: Path, random_weights_path: Path) -> None:
    info = resolve_inception_weights(random_weights_path, download=False, allow_unverified=True)
    assert not info.verified and info.sha256 == file_sha256(random_weights_path)


class _Payload:
    """Unpickling this would create a directory: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (str(self.marker),))


def test_pickle_payload_is_never_executed(hub: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"conv.weight": torch.zeros(1), "payload": _Payload(marker)}, evil)
    info = resolve_inception_weights(evil, download=False, allow_unverified=True)
    with pytest.raises(WeightsError, match="weights_only=True"):
        InceptionFeatureExtractor(info, device="cpu")
    assert not marker.exists()


def test_wrong_structure_is_rejected(hub: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    info = resolve_inception_weights(other, download=False, allow_unverified=True)
    with pytest.raises(WeightsError, match="not of torch-fidelity's Inception"):
        InceptionFeatureExtractor(info, device="cpu")
