from __future__ import annotations

import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets
from PIL import Image

from gannas.errors import DatasetError, GannasError
from trainers import ImageData, builtin_dataset_names, load_dataset
from trainers.datasets import default_data_root, images_to_float

# --- digits ----------------------------------------------------------------------------------


def test_digits_native_shape_dtype_and_range() -> None:
    data = load_dataset("digits", resolution=8)
    assert isinstance(data, ImageData)
    assert data.images.shape == (1797, 1, 8, 8)
    assert data.images.dtype == torch.uint8
    assert data.channels == 1 and data.resolution == 8 and len(data) == 1797
    assert data.name == "digits" and data.split == "train"
    # 0..16 scaled to the full range: both ends are reached.
    assert int(data.images.min()) == 0 and int(data.images.max()) == 255
    from sklearn.datasets import load_digits

    raw = load_digits().images[5]
    expected = torch.from_numpy(np.rint(raw * 255 / 16).astype(np.uint8))
    assert torch.equal(data.images[5, 0], expected)


def test_digits_upscaled_to_resolution_with_channels_and_max_samples() -> None:
    data = load_dataset("digits", resolution=16, channels=3, max_samples=10)
    assert data.images.shape == (10, 3, 16, 16)
    assert data.channels == 3
    assert torch.equal(data.images[:, 0], data.images[:, 1])  # gray repeated
    assert torch.equal(data.images[:, 0], data.images[:, 2])
    gray = load_dataset("digits", resolution=16, max_samples=10)
    assert torch.equal(gray.images[:, 0], data.images[:, 0])
    # Upscaling smooths: more distinct values than the 17 levels of the source.
    assert gray.images.unique().numel() > 17


def test_spec_is_case_insensitive_for_builtins() -> None:
    assert load_dataset(" Digits ", resolution=8, max_samples=2).name == "digits"


def test_builtin_names() -> None:
    assert builtin_dataset_names() == ["digits", "cifar10", "mnist", "fashion-mnist"]


def test_images_to_float_range() -> None:
    x = images_to_float(torch.tensor([0, 127, 255], dtype=torch.uint8))
    assert x.dtype == torch.float32
    assert torch.allclose(x, torch.tensor([-1.0, 127 / 127.5 - 1, 1.0]))


# --- argument errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"resolution": 0}, "resolution must be a positive integer, got 0"),
        ({"resolution": 8, "channels": 2}, "channels must be 1, 3 or None"),
        ({"resolution": 8, "max_samples": 0}, "max_samples must be a positive integer"),
        ({"resolution": 8, "split": "test"}, "single split 'train', got split 'test'"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(DatasetError, match=needle.replace("(", r"\(")):
        load_dataset("digits", **kwargs)  # type: ignore[arg-type]


def test_unknown_spec_lists_builtins(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as info:
        load_dataset(str(tmp_path / "nope"), resolution=8)
    message = str(info.value)
    assert "unknown dataset" in message and "nope" in message
    for name in builtin_dataset_names():
        assert name in message
    assert isinstance(info.value, GannasError)


def test_file_that_is_not_npz(tmp_path: Path) -> None:
    path = tmp_path / "images.txt"
    path.write_text("hello")
    with pytest.raises(DatasetError, match=r"is not an \.npz file"):
        load_dataset(str(path), resolution=8)


# --- torchvision datasets --------------------------------------------------------------------


def _write_idx(path: Path, array: np.ndarray) -> None:
    """Write an array in the MNIST idx format (big-endian uint8)."""
    magic = 0x0800 + array.ndim
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_from_local_raw_files(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    _write_idx(raw / "train-images-idx3-ubyte", train)
    _write_idx(raw / "train-labels-idx1-ubyte", np.zeros(5, np.uint8))
    _write_idx(raw / "t10k-images-idx3-ubyte", test)
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros(3, np.uint8))

    data = load_dataset("mnist", resolution=28, root=tmp_path, download=False)
    assert data.name == "mnist" and data.split == "train"
    assert torch.equal(data.images, torch.from_numpy(train).unsqueeze(1))

    small = load_dataset(
        "mnist",
        resolution=14,
        root=tmp_path,
        download=False,
        split="test",
        channels=3,
        max_samples=2,
    )
    assert small.images.shape == (2, 3, 14, 14) and small.split == "test"
    # Antialiased 2x downscale of a 2x2 block is close to the block mean.
    block_mean = test[0, 10:12, 10:12].astype(float).mean()
    assert abs(float(small.images[0, 0, 5, 5]) - block_mean) < 40


def test_cifar_layout_converted_via_patched_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, object] = {}
    nhwc = np.arange(2 * 32 * 32 * 3, dtype=np.int64).reshape(2, 32, 32, 3) % 256

    class FakeCIFAR10:
        def __init__(self, *, root: str, train: bool, download: bool) -> None:
            seen.update(root=root, train=train, download=download)
            self.data = nhwc.astype(np.uint8)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    data = load_dataset("cifar10", resolution=32, root=tmp_path, split="test")
    assert seen == {"root": str(tmp_path), "train": False, "download": True}
    assert data.images.shape == (2, 3, 32, 32)
    assert torch.equal(data.images, torch.from_numpy(nhwc.astype(np.uint8)).permute(0, 3, 1, 2))
    gray = load_dataset("cifar10", resolution=32, root=tmp_path, channels=1)
    r, g, b = (data.images[:, i].double() for i in range(3))
    expected = (0.299 * r + 0.587 * g + 0.114 * b).round()
    assert (gray.images[:, 0].double() - expected).abs().max() <= 1


def test_torchvision_bad_split(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="splits 'train' and 'test', got split 'val'"):
        load_dataset("cifar10", resolution=32, root=tmp_path, split="val")


@pytest.mark.parametrize(
    ("spec", "expected_dir"),
    [
        ("cifar10", "cifar-10-batches-py"),
        ("mnist", "MNIST/raw"),
        ("fashion-mnist", "FashionMNIST/raw"),
    ],
)
def test_missing_files_without_download(tmp_path: Path, spec: str, expected_dir: str) -> None:
    with pytest.raises(DatasetError) as info:
        load_dataset(spec, resolution=32, root=tmp_path, download=False)
    message = str(info.value)
    assert f"dataset {spec!r}" in message
    assert str(tmp_path) in message and expected_dir in message
    assert "download" in message
    assert "\n" not in message


@pytest.mark.parametrize("error", [urllib.error.URLError("no network"), OSError("unreachable")])
def test_offline_download_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    class OfflineCIFAR10:
        def __init__(self, *, root: str, train: bool, download: bool) -> None:
            raise error

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", OfflineCIFAR10)
    with pytest.raises(DatasetError) as info:
        load_dataset("cifar10", resolution=32, root=tmp_path, download=True)
    message = str(info.value)
    assert "could not be downloaded" in message and "'cifar10'" in message
    assert str(tmp_path) in message
    assert "allow network access" in message and "place the torchvision files" in message
    assert "\n" not in message


def test_default_root_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANNAS_DATA_DIR", str(tmp_path))
    assert default_data_root() == tmp_path
    monkeypatch.delenv("GANNAS_DATA_DIR")
    assert default_data_root() == Path.home() / ".cache" / "gannas" / "data"


# --- image folders ---------------------------------------------------------------------------


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_folder_mixed_gray_and_rgb_recursive(tmp_path: Path) -> None:
    red = np.zeros((12, 20, 3), np.uint8)
    red[..., 0] = 200
    _save(tmp_path / "a.png", red)  # wide: center-cropped to 12x12
    _save(tmp_path / "sub" / "b.jpg", np.full((10, 10), 90, np.uint8))  # grayscale, nested
    _save(tmp_path / "sub" / "deeper" / "c.BMP", np.full((6, 6, 3), 30, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")

    data = load_dataset(str(tmp_path), resolution=8)
    assert data.name == f"folder:{tmp_path.resolve()}"
    assert data.images.shape == (3, 3, 8, 8)
    # Sorted by relative path: a.png, sub/b.jpg, sub/deeper/c.BMP
    assert data.images[0, 0].unique().tolist() == [200] and data.images[0, 1].max() == 0
    assert data.images[1].unique().tolist() == [90]  # gray repeated into 3 channels
    assert data.images[2].unique().tolist() == [30]

    gray = load_dataset(f"folder:{tmp_path}", resolution=8, channels=1, max_samples=2)
    assert gray.images.shape == (2, 1, 8, 8)
    assert gray.images[0].unique().tolist() == [round(0.299 * 200)]


def test_folder_center_crop(tmp_path: Path) -> None:
    img = np.zeros((4, 8), np.uint8)
    img[:, 2:6] = 255  # the centre square is white, the sides black
    _save(tmp_path / "x.png", img)
    data = load_dataset(str(tmp_path), resolution=4)
    assert data.channels == 1
    assert data.images.unique().tolist() == [255]


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "readme.md").write_text("no images here")
    with pytest.raises(DatasetError, match="contains no images") as info:
        load_dataset(str(tmp_path), resolution=8)
    assert str(tmp_path) in str(info.value) and ".png" in str(info.value)


def test_corrupt_image_names_the_file(tmp_path: Path) -> None:
    _save(tmp_path / "good.png", np.zeros((8, 8), np.uint8))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    with pytest.raises(DatasetError, match="cannot read image") as info:
        load_dataset(str(tmp_path), resolution=8)
    assert str(bad) in str(info.value)


# --- npz arrays ------------------------------------------------------------------------------


def test_npz_nhwc_uint8(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    nhwc = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    path = tmp_path / "x.npz"
    np.savez(path, images=nhwc, labels=np.arange(4))
    data = load_dataset(str(path), resolution=8)
    assert data.name == f"npz:{path.resolve()}"
    assert torch.equal(data.images, torch.from_numpy(nhwc).permute(0, 3, 1, 2))


def test_npz_nchw_single_unnamed_array(tmp_path: Path) -> None:
    nchw = np.random.default_rng(2).integers(0, 256, (3, 1, 6, 6), dtype=np.uint8)
    path = tmp_path / "y.npz"
    np.savez(path, nchw)  # stored as arr_0
    data = load_dataset(f"npz:{path}", resolution=6)
    assert torch.equal(data.images, torch.from_numpy(nchw))
    assert data.channels == 1


def test_npz_float_in_unit_range(tmp_path: Path) -> None:
    values = np.array([0.0, 0.5, 1.0, 0.2], dtype=np.float32)
    arr = np.broadcast_to(values[:, None, None, None], (4, 4, 4, 1)).copy()
    path = tmp_path / "f.npz"
    np.savez(path, images=arr)
    data = load_dataset(str(path), resolution=4, channels=3)
    assert data.images.shape == (4, 3, 4, 4)
    assert data.images[:, 0, 0, 0].tolist() == [0, 128, 255, 51]


@pytest.mark.parametrize(
    ("array", "needle"),
    [
        (np.zeros((2, 8, 8, 2), np.uint8), "found shape (2, 8, 8, 2) dtype uint8"),
        (np.zeros((8, 8), np.uint8), "found shape (8, 8) dtype uint8"),
        (np.zeros((2, 8, 8, 3), np.int32), "found shape (2, 8, 8, 3) dtype int32"),
        (np.full((2, 8, 8, 3), 2.0, np.float32), "with values in [2, 2]"),
        (np.full((2, 8, 8, 3), np.nan, np.float32), "with non-finite values"),
        (np.zeros((0, 8, 8, 3), np.uint8), "holds no images"),
    ],
)
def test_npz_bad_arrays(tmp_path: Path, array: np.ndarray, needle: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, images=array)
    with pytest.raises(DatasetError) as info:
        load_dataset(str(path), resolution=8)
    message = str(info.value)
    assert needle in message
    assert str(path.resolve()) in message and "expected" in message and "uint8 in 0..255" in message


def test_npz_several_arrays_without_images_key(tmp_path: Path) -> None:
    path = tmp_path / "multi.npz"
    np.savez(path, a=np.zeros((1, 4, 4, 3), np.uint8), b=np.zeros(3))
    with pytest.raises(DatasetError, match=r"has arrays \['a', 'b'\] but no 'images' key"):
        load_dataset(str(path), resolution=4)


def test_npz_object_array_is_not_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "obj.npz"
    np.savez(path, images=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(DatasetError, match="cannot read npz file"):
        load_dataset(str(path), resolution=4)


def test_npz_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(DatasetError, match="is not an npz archive") as info:
        load_dataset(str(path), resolution=4)
    # numpy's own reading of a text file was "pickled data", which it is not.
    assert str(path.resolve()) in str(info.value) and "pickle" not in str(info.value)
    good = tmp_path / "good.npz"
    np.savez(good, images=np.zeros((2, 4, 4, 1), np.uint8))
    path.write_bytes(good.read_bytes()[:60])  # a zip cut short
    with pytest.raises(DatasetError, match="cannot read npz file"):
        load_dataset(str(path), resolution=4)


def test_prefixed_specs_check_the_kind(tmp_path: Path) -> None:
    arr = np.zeros((2, 4, 4, 1), np.uint8)
    odd = tmp_path / "arrays.bin"
    with odd.open("wb") as handle:
        np.savez(handle, images=arr)
    assert load_dataset(f"npz:{odd}", resolution=4).name == f"npz:{odd.resolve()}"
    with pytest.raises(DatasetError, match="use 'npz:"):
        load_dataset(str(odd), resolution=4)
    with pytest.raises(DatasetError, match="is not a folder of images"):
        load_dataset(f"folder:{odd}", resolution=4)
    with pytest.raises(DatasetError, match=r"is a folder, not an \.npz file"):
        load_dataset(f"npz:{tmp_path}", resolution=4)


def test_builtin_name_wins_over_relative_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _save(tmp_path / "digits" / "one.png", np.full((4, 4), 7, np.uint8))
    monkeypatch.chdir(tmp_path)
    assert load_dataset("digits", resolution=4, max_samples=1).name == "digits"
    local = load_dataset("./digits", resolution=4)
    assert local.name == f"folder:{(tmp_path / 'digits').resolve()}"
    assert local.images.unique().tolist() == [7]
