"""Reference statistics: computed once, cached atomically, never trusted when corrupt, keyed by protocol."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from trainers.metrics import (
    TorchScriptFeatureExtractor,
    default_cache_dir,
    extract_features,
    gaussian_statistics,
    reference_statistics,
)
from trainers.metrics import _stats
from trainers.metrics.testing import write_tiny_torchscript_extractor


@dataclass
class _Data:
    images: torch.Tensor
    name: str


class _Counting:
    """Wraps an extractor and counts forward calls."""

    def __init__(self, inner: TorchScriptFeatureExtractor) -> None:
        self.inner = inner
        self.calls = 0
        self.name, self.identity, self.sha256 = inner.name, inner.identity, inner.sha256
        self.verified, self.provides_logits = inner.verified, inner.provides_logits
        self.resize = inner.resize

    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls += 1
        return self.inner.features(images)


@pytest.fixture()
def data() -> _Data:
    gen = torch.Generator().manual_seed(0)
    return _Data(torch.randint(0, 256, (40, 3, 16, 16), generator=gen, dtype=torch.uint8), "noise16")


def _files(directory: Path) -> list[str]:
    return sorted(os.listdir(directory)) if directory.exists() else []


def test_statistics_match_features(tiny_extractor: TorchScriptFeatureExtractor, data: _Data, tmp_path: Path) -> None:
    stats = reference_statistics(data, extractor=tiny_extractor, num_samples=None, cache_dir=tmp_path)
    mu, sigma = gaussian_statistics(extract_features(tiny_extractor, data.images)["pool"])
    np.testing.assert_allclose(stats.mu, mu, rtol=1e-12)
    np.testing.assert_allclose(stats.sigma, sigma, rtol=1e-12)
    np.testing.assert_allclose(stats.sigma_factor.T @ stats.sigma_factor, sigma, rtol=1e-6, atol=1e-10)
    assert stats.mu.dtype == np.float64 and stats.sigma.dtype == np.float64
    assert stats.features.shape == (40, 16) and stats.num_samples == 40 and stats.resolution == 16


def test_cache_hit_skips_extraction(tiny_extractor: TorchScriptFeatureExtractor, data: _Data, tmp_path: Path) -> None:
    counting = _Counting(tiny_extractor)
    first = reference_statistics(data, extractor=counting, num_samples=30, cache_dir=tmp_path, batch_size=8)
    assert counting.calls == 4
    second = reference_statistics(data, extractor=counting, num_samples=30, cache_dir=tmp_path, batch_size=8)
    assert counting.calls == 4  # served from disk
    assert second.key == first.key
    np.testing.assert_array_equal(second.sigma, first.sigma)
    np.testing.assert_array_equal(second.features, first.features)
    assert len(_files(tmp_path)) == 1


def test_default_cache_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GANNAS_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" / "fid_stats"
    monkeypatch.delenv("GANNAS_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "gannas" / "fid_stats"


@pytest.mark.parametrize("damage", ["truncate", "garbage", "tamper"])
def test_corrupt_cache_file_is_recomputed(
    tiny_extractor: TorchScriptFeatureExtractor, data: _Data, tmp_path: Path, damage: str
) -> None:
    counting = _Counting(tiny_extractor)
    good = reference_statistics(data, extractor=counting, num_samples=None, cache_dir=tmp_path, batch_size=40)
    (path,) = tmp_path.iterdir()
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "garbage":
        path.write_bytes(b"not a zip file at all")
    else:  # a valid npz whose numbers were changed without updating the checksum
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        arrays["mu"] = arrays["mu"] + 1.0
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)
    again = reference_statistics(data, extractor=counting, num_samples=None, cache_dir=tmp_path, batch_size=40)
    assert counting.calls == 2  # recomputed, not trusted
    np.testing.assert_array_equal(again.mu, good.mu)
    # ... and the entry was repaired, so the next call is a hit.
    reference_statistics(data, extractor=counting, num_samples=None, cache_dir=tmp_path, batch_size=40)
    assert counting.calls == 2


def test_failed_write_leaves_no_partial_file(
    tiny_extractor: TorchScriptFeatureExtractor, data: _Data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash_midway(handle, **arrays):  # type: ignore[no-untyped-def]
        handle.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(_stats.np, "savez", crash_midway)
    stats = reference_statistics(data, extractor=tiny_extractor, num_samples=None, cache_dir=tmp_path)
    assert stats.num_samples == 40  # the run itself still succeeds
    assert _files(tmp_path) == []  # neither a final-name file nor a temp file


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_cache_file_gets_the_umasks_mode(
    tiny_extractor: TorchScriptFeatureExtractor, data: _Data, tmp_path: Path, mask: int, set_umask
) -> None:
    # A cache on a shared volume serves every user: not mkstemp's owner-only 0600.
    set_umask(mask)
    reference_statistics(data, extractor=tiny_extractor, num_samples=None, cache_dir=tmp_path)
    (final,) = tmp_path.iterdir()
    assert final.stat().st_mode & 0o777 == 0o666 & ~mask


def test_write_publishes_atomically(
    tiny_extractor: TorchScriptFeatureExtractor, data: _Data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the file is being written, the final name does not exist; it appears only complete."""
    seen: list[list[str]] = []
    real_savez = np.savez

    def observing_savez(handle, **arrays):  # type: ignore[no-untyped-def]
        real_savez(handle, **arrays)
        seen.append([p.name for p in tmp_path.iterdir() if p.suffix == ".npz"])

    monkeypatch.setattr(_stats.np, "savez", observing_savez)
    reference_statistics(data, extractor=tiny_extractor, num_samples=None, cache_dir=tmp_path)
    assert seen == [[]]
    (final,) = tmp_path.iterdir()
    assert final.suffix == ".npz"


def test_key_changes_with_protocol(
    tiny_extractor: TorchScriptFeatureExtractor, data: _Data, tmp_path: Path
) -> None:
    base = reference_statistics(data, extractor=tiny_extractor, num_samples=None, cache_dir=tmp_path)
    keys = {base.key}
    keys.add(reference_statistics(data, extractor=tiny_extractor, num_samples=20, cache_dir=tmp_path).key)
    keys.add(reference_statistics(data, extractor=tiny_extractor, num_samples=None, split="test", cache_dir=tmp_path).key)
    renamed = _Data(data.images, "other-name")
    keys.add(reference_statistics(renamed, extractor=tiny_extractor, num_samples=None, cache_dir=tmp_path).key)
    changed = _Data(data.images.clone(), data.name)
    changed.images[0, 0, 0, 0] ^= 1  # same name, one different pixel
    keys.add(reference_statistics(changed, extractor=tiny_extractor, num_samples=None, cache_dir=tmp_path).key)
    other_path = tmp_path / "other-extractor.pt"
    write_tiny_torchscript_extractor(other_path, dim=16, seed=1)
    other = TorchScriptFeatureExtractor(other_path)
    keys.add(reference_statistics(data, extractor=other, num_samples=None, cache_dir=tmp_path).key)
    assert len(keys) == 6
    assert len([p for p in tmp_path.iterdir() if p.suffix == ".npz"]) == 6


def test_subset_is_fixed_and_seeded(tiny_extractor: TorchScriptFeatureExtractor, data: _Data, tmp_path: Path) -> None:
    a = reference_statistics(data, extractor=tiny_extractor, num_samples=10, cache_dir=tmp_path, use_cache=False)
    b = reference_statistics(data, extractor=tiny_extractor, num_samples=10, cache_dir=tmp_path, use_cache=False)
    first10 = gaussian_statistics(extract_features(tiny_extractor, data.images[:10])["pool"])[0]
    np.testing.assert_array_equal(a.features, b.features)
    assert not np.allclose(a.mu, first10)  # a shuffled subset, not the (possibly class-sorted) head
