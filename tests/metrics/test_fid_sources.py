"""`gannas fid` sources: folders, npz files, built-in datasets and exported generators."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gannas.errors import DatasetError, GannasError
from trainers.metrics import (
    TorchScriptFeatureExtractor,
    extract_features,
    frechet_distance_from_features,
    kernel_inception_distance,
)


def _write_folder(folder: Path, images: torch.Tensor) -> Path:
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i:04d}.png")
    return folder


def _write_npz(path: Path, images: torch.Tensor) -> Path:
    np.savez(path, images=images.permute(0, 2, 3, 1).numpy())  # NHWC, as numpy users store them
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANNAS_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture()
def sources(tmp_path: Path) -> tuple[torch.Tensor, torch.Tensor, Path, Path]:
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (24, 3, 16, 16), generator=gen, dtype=torch.uint8)
    b = (a.int() // 2 + 60).to(torch.uint8)
    return a, b, _write_folder(tmp_path / "a", a), _write_npz(tmp_path / "b.npz", b)


def test_folder_vs_npz_equals_direct_computation(
    tiny_extractor_path: Path, tiny_extractor: TorchScriptFeatureExtractor, sources
) -> None:
    from nas.fid_sources import fid_between

    a, b, folder, npz = sources
    result = fid_between(str(folder), str(npz), extractor_path=str(tiny_extractor_path), device="cpu", batch_size=10)
    fa = extract_features(tiny_extractor, a)["pool"]
    fb = extract_features(tiny_extractor, b)["pool"]
    assert result.fid == pytest.approx(frechet_distance_from_features(fa, fb), rel=1e-9)
    assert result.kid == pytest.approx(kernel_inception_distance(fa, fb)[0], rel=1e-9)
    assert result.inception_score_a is None  # the TorchScript extractor has no logits
    assert (result.num_a, result.num_b) == (24, 24)
    assert result.protocol["weights_sha256"] == tiny_extractor.sha256
    assert result.details()["fid"] == f"{result.fid:.6f}"


def test_same_images_in_two_formats_give_zero(tiny_extractor_path: Path, sources) -> None:
    from nas.fid_sources import fid_between

    a, _, folder, _ = sources
    npz = _write_npz(folder.parent / "a.npz", a)
    result = fid_between(str(folder), str(npz), extractor_path=str(tiny_extractor_path), device="cpu")
    assert result.fid == pytest.approx(0.0, abs=1e-9)


def test_num_samples_and_resolution(tiny_extractor_path: Path, sources) -> None:
    from nas.fid_sources import fid_between

    _, _, folder, npz = sources
    result = fid_between(
        str(folder), str(npz), extractor_path=str(tiny_extractor_path), num_samples=12, resolution=8, device="cpu"
    )
    assert (result.num_a, result.num_b) == (12, 12)
    assert result.protocol["resolution"] == 8


def test_bad_sources_are_user_errors(tiny_extractor_path: Path, tmp_path: Path, sources) -> None:
    from nas.fid_sources import fid_between

    _, _, folder, _ = sources
    with pytest.raises(DatasetError, match="not a built-in dataset"):
        fid_between(str(folder), str(tmp_path / "missing"), extractor_path=str(tiny_extractor_path))
    with pytest.raises(GannasError, match="--num-samples: FID needs at least 2 samples"):
        fid_between(str(folder), str(folder), extractor_path=str(tiny_extractor_path), num_samples=1)
    with pytest.raises(GannasError, match="--batch-size must be at least 1, got 0"):
        fid_between(str(folder), str(folder), extractor_path=str(tiny_extractor_path), batch_size=0)
    for resolution in (0, 100_000):
        # 100000 ran out of memory resizing the images: an "internal error"
        with pytest.raises(GannasError, match=f"--resolution must be from 1 to 1024, got {resolution}"):
            fid_between("digits", str(folder), extractor_path=str(tiny_extractor_path), resolution=resolution)
    # torch's own error for an unknown device was an "internal error"; CUDA on a machine without
    # it failed later, blaming the feature-extractor file
    with pytest.raises(GannasError, match="--device 'tpu' is not a torch device"):
        fid_between(str(folder), str(folder), extractor_path=str(tiny_extractor_path), device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(GannasError, match="this machine has no CUDA GPU"):
            fid_between(
                str(folder), str(folder), extractor_path=str(tiny_extractor_path), device="cuda"
            )


def test_inception_with_random_weights(
    random_weights_path: Path, inception_features, image_sets, tmp_path: Path
) -> None:
    """The default (Inception) path: resolves the weights file, and gives FID, KID and both IS."""
    from nas.fid_sources import fid_between

    a, b = image_sets
    folder = _write_folder(tmp_path / "digits_a", a[:10])
    npz = _write_npz(tmp_path / "digits_b.npz", b[:10])
    result = fid_between(
        str(folder), str(npz), weights_path=str(random_weights_path), allow_unverified=True,
        device="cpu", batch_size=10,
    )  # fmt: skip
    expected = frechet_distance_from_features(
        inception_features[0]["pool"][:10], inception_features[1]["pool"][:10]
    )
    assert result.fid == pytest.approx(expected, rel=1e-6)
    assert result.inception_score_a is not None and result.inception_score_b is not None
    assert result.protocol["weights_verified"] is False
    with pytest.raises(GannasError, match="allow-unverified-weights"):
        fid_between(str(folder), str(npz), weights_path=str(random_weights_path), device="cpu")


def test_builtin_dataset_digits(tiny_extractor_path: Path, tiny_extractor, tmp_path: Path) -> None:
    datasets = pytest.importorskip("trainers.datasets", reason="trainers.datasets not written yet")
    from nas.fid_sources import fid_between

    digits = datasets.load_dataset("digits", resolution=16)
    npz = _write_npz(tmp_path / "d.npz", digits.images[:30].repeat(1, 3, 1, 1))
    result = fid_between("digits", str(npz), extractor_path=str(tiny_extractor_path), num_samples=30, device="cpu")
    # The dataset borrowed the npz's resolution (16) and drew a seeded 30-image subset.
    assert result.protocol["resolution"] == 16
    assert result.num_a == 30 and result.fid > 0
    # Second time round the reference statistics come from the cache and give the same number.
    again = fid_between("digits", str(npz), extractor_path=str(tiny_extractor_path), num_samples=30, device="cpu")
    assert again.fid == result.fid
    assert any((tmp_path / "cache" / "fid_stats").iterdir())


def test_exported_generator_source(tiny_extractor_path: Path, tiny_extractor, tmp_path: Path) -> None:
    checkpoints = pytest.importorskip("storage.checkpoints", reason="storage.checkpoints not written yet")
    search_spaces = pytest.importorskip("search_spaces", reason="search_spaces not written yet")
    from nas.fid_sources import fid_between
    from trainers.metrics import generator_output_to_uint8

    space = search_spaces.resolve_space("dcgan")
    cfg = search_spaces.sample_config(space, search_spaces.RandomSuggester(0), resolution=16, channels=3)
    generator = search_spaces.build_generator(cfg).eval()
    out = checkpoints.save_generator(tmp_path / "exported", generator, cfg, protocol={}, score={}, provenance={})
    gen = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (20, 3, 16, 16), generator=gen, dtype=torch.uint8)
    npz = _write_npz(tmp_path / "real.npz", real)

    result = fid_between(str(npz), str(out), extractor_path=str(tiny_extractor_path), device="cpu", seed=3)
    assert result.num_b == 20  # borrowed from the data source
    with torch.no_grad():
        z = torch.randn((20, generator.latent_dim), generator=torch.Generator().manual_seed(3))
        fake = generator_output_to_uint8(generator(z))
    expected = frechet_distance_from_features(
        extract_features(tiny_extractor, real)["pool"], extract_features(tiny_extractor, fake)["pool"]
    )
    assert result.fid == pytest.approx(expected, rel=1e-5)

    # Against a built-in dataset, which takes the generator's resolution (16) with or without
    # --num-samples; with it, the dataset asked for a --resolution, "or compare it with a ...
    # generator", although it was compared with one.
    for count in (None, 30):
        against_digits = fid_between(
            "digits", str(out), extractor_path=str(tiny_extractor_path), num_samples=count, device="cpu"
        )
        assert against_digits.protocol["resolution"] == 16
        assert against_digits.num_b == (count or against_digits.num_a)
    # Digits at 8x8 against the 16x16 generator: a TorchScript network would see each at its
    # own size, and an FID was printed all the same.
    with pytest.raises(GannasError, match=r"'digits' is 8x8 but .* is 16x16; a --feature-ex"):
        fid_between(
            "digits", str(out), extractor_path=str(tiny_extractor_path), resolution=8, device="cpu"
        )


def test_unreadable_or_too_small_sources_are_dataset_errors(
    tiny_extractor_path: Path, tmp_path: Path, sources
) -> None:
    """Each was an "internal error" in `gannas fid`; `gannas search --dataset` named them."""
    from nas.fid_sources import fid_between

    _, _, _, good = sources
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "b.png").write_text("x")
    np.savez(tmp_path / "empty.npz")
    (tmp_path / "fake.npz").write_text("hi")
    np.savez(tmp_path / "one.npz", images=np.zeros((1, 16, 16, 3), np.uint8))
    for bad, named in (
        (junk, "cannot read image"),
        (tmp_path / "empty.npz", "has arrays \\[\\] but no .images. key"),
        (tmp_path / "fake.npz", "is not an npz archive"),
        (tmp_path / "one.npz", "holds 1 image; FID needs at least 2"),
    ):
        for order in ((str(good), str(bad)), (str(bad), str(good))):
            with pytest.raises(DatasetError, match=named):
                fid_between(*order, extractor_path=str(tiny_extractor_path), device="cpu")


def test_a_hair_below_zero_prints_as_zero_not_minus_zero() -> None:
    from nas.fid_sources import MetricsResult

    result = MetricsResult(
        fid=-1e-12, kid=-3e-9, kid_std=1e-9, inception_score_a=None, inception_score_b=None,
        source_a="a", source_b="b", num_a=2, num_b=2,
    )  # fmt: skip
    details = result.details()
    assert details["kid"] == "0.000000 ± 0.000000"
    assert details["fid"] == "0.000000"
    # A real negative KID estimate keeps its sign.
    assert MetricsResult(**{**result.__dict__, "kid": -2e-4}).details()["kid"].startswith("-0.000200")


def test_more_samples_than_a_source_has_uses_them_all_and_says_so(
    tiny_extractor_path: Path, sources, capsys
) -> None:
    from nas.cli import main

    _, _, folder, npz = sources
    args = ["fid", str(folder), str(npz), "--feature-extractor", str(tiny_extractor_path)]
    assert main([*args, "--num-samples", "1000", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    # It was silent about it. Both sources hold 24 images.
    for source in (folder, npz):
        assert f"note: --num-samples 1000, but '{source}' has 24 images; its 24 were used" in (
            captured.err
        )
    assert main([*args, "--num-samples", "12", "--device", "cpu"]) == 0
    assert "note:" not in capsys.readouterr().err


def test_a_torchscript_extractor_records_no_resize(tiny_extractor_path: Path, sources) -> None:
    from nas.fid_sources import fid_between

    _, _, folder, npz = sources
    result = fid_between(
        str(folder), str(npz), extractor_path=str(tiny_extractor_path), device="cpu"
    )
    assert result.protocol["resize"] == "none"
