from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from trainers import (
    NullReporter,
    RecordingReporter,
    Reporter,
    images_to_float,
    images_to_uint8,
    save_image_grid,
)


def test_images_to_uint8_rounds_and_clamps() -> None:
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0, -3.0, -0.5, math.nan])
    out = images_to_uint8(x)
    assert out.dtype == torch.uint8
    # round((x + 1) * 127.5): 0, 127.5 -> 128 (half to even), 255, clamped 255 and 0, 63.75 -> 64
    assert out.tolist() == [0, 128, 255, 255, 0, 64, 0]


def test_uint8_float_round_trip_is_exact() -> None:
    every = torch.arange(256, dtype=torch.uint8)
    as_float = images_to_float(every)
    assert as_float.min() == -1.0 and as_float.max() == 1.0
    assert torch.equal(images_to_uint8(as_float), every)
    with pytest.raises(TypeError, match="uint8"):
        images_to_float(as_float)


def test_save_image_grid_layout_and_pixels(tmp_path: Path) -> None:
    images = torch.stack([torch.full((1, 4, 4), -1.0 + 0.5 * i) for i in range(5)])
    path = tmp_path / "nested" / "grid.png"
    save_image_grid(images, path)
    with Image.open(path) as img:
        assert img.format == "PNG" and img.mode == "RGB"
        # ceil(sqrt(5)) = 3 per row, 2 rows, 2-pixel padding around every tile.
        assert img.size == (3 * (4 + 2) + 2, 2 * (4 + 2) + 2)
        pixels = img.load()
        assert pixels[0, 0] == (0, 0, 0)  # padding
        for i in range(5):
            row, col = divmod(i, 3)
            value = int(images_to_uint8(images[i, 0, 0, 0]))
            assert pixels[2 + col * 6, 2 + row * 6] == (value, value, value)
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # no temp file left behind


def test_save_image_grid_nrow_and_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "g.png"
    path.write_bytes(b"old")
    save_image_grid(torch.zeros(4, 3, 2, 2), path, nrow=4)
    with Image.open(path) as img:
        assert img.size == (4 * 4 + 2, 4 + 2)


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_save_image_grid_gives_the_file_the_umasks_mode(
    tmp_path: Path, mask: int, set_umask: Callable[[int], None]
) -> None:
    # Written through a temp file and renamed: the temp file's owner-only mode must not stay.
    set_umask(mask)
    path = tmp_path / "g.png"
    save_image_grid(torch.zeros(4, 3, 2, 2), path)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_save_image_grid_names_a_file_in_the_parent_path_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "plain").write_text("x")
    with pytest.raises(NotADirectoryError) as info:
        save_image_grid(torch.zeros(1, 3, 2, 2), tmp_path / "plain" / "sub" / "g.png")
    assert info.value.filename == str(tmp_path / "plain")

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", fail)
    with pytest.raises(OSError, match="No space left"):
        save_image_grid(torch.zeros(1, 3, 2, 2), tmp_path / "new" / "deeper" / "g.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]  # no dirs, no temp file


def test_save_image_grid_rejects_bad_shape(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"got shape \(2, 2, 4, 4\)"):
        save_image_grid(torch.zeros(2, 2, 4, 4), tmp_path / "x.png")
    assert not list(tmp_path.iterdir())


def test_reporters() -> None:
    null = NullReporter()
    null.report(1, {"fid": 1.0})
    assert not null.should_stop()
    assert isinstance(null, Reporter)

    recording = RecordingReporter(stop_after=lambda step, m: m["fid"] > 5.0)
    assert isinstance(recording, Reporter)
    assert not recording.should_stop()  # nothing reported yet
    recording.report(1, {"fid": 3.0})
    assert not recording.should_stop()
    recording.report(2, {"fid": 6.0})
    assert recording.should_stop()
    assert recording.reports == [(1, {"fid": 3.0}), (2, {"fid": 6.0})]
    never = RecordingReporter()
    never.report(1, {"fid": 100.0})
    assert not never.should_stop()
