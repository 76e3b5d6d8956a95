"""The whole user journey through the real ``gannas`` entry point, each step a subprocess:
search -> studies -> trials --json -> export (safetensors + TorchScript + ONNX) -> sample, then the
exported directory loaded three ways (gannas, TorchScript, ONNX Runtime) giving the same images.

Bad input at each step must end with one ``error: ...`` line, a non-zero exit, no traceback and
nothing written to the study database.
"""

from __future__ import annotations

import json
import math
import pickle
import shutil
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from subprocess import CompletedProcess

import numpy as np
import pytest
import torch
from PIL import Image

from search_spaces import ArchConfig, build_generator, count_parameters

from .conftest import SEARCH_TRIALS, SearchedStudy, run_gannas

Gannas = Callable[..., CompletedProcess[str]]

SAMPLES = 16
RESOLUTION = 16


def _ok(proc: CompletedProcess[str]) -> CompletedProcess[str]:
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    return proc


def _one_line_error(proc: CompletedProcess[str]) -> str:
    """The single ``error:`` line of a failed command (asserting that there is exactly one)."""
    everything = proc.stdout + proc.stderr
    assert proc.returncode != 0, everything
    assert "Traceback" not in everything, everything
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def _db_counts(db: Path) -> tuple[int, int]:
    """(studies, trials) rows in an Optuna SQLite database."""
    with sqlite3.connect(db) as conn:
        studies = conn.execute("SELECT COUNT(*) FROM studies").fetchone()[0]
        trials = conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
    return studies, trials


def _grid_side(n: int, size: int, padding: int = 2) -> int:
    per_row = math.ceil(math.sqrt(n))  # save_image_grid's near-square default
    return per_row * size + (per_row + 1) * padding


@pytest.fixture(scope="module")
def exported(
    searched_study: SearchedStudy, tmp_path_factory: pytest.TempPathFactory, cache_dir: Path
) -> tuple[Path, CompletedProcess[str]]:
    """``gannas export STUDY --format torchscript --format onnx`` of the shared search."""
    root = tmp_path_factory.mktemp("export")
    out = root / "exported"
    proc = run_gannas(
        "export", searched_study.study_name,
        "--out", str(out),
        "--format", "torchscript",
        "--format", "onnx",
        "--storage", searched_study.storage_url,
        "--artifacts", str(searched_study.artifacts),
        cwd=root, cache_dir=cache_dir,
    )  # fmt: skip
    return out, _ok(proc)


def test_search_inspect_export_sample_and_load_everywhere(
    searched_study: SearchedStudy,
    exported: tuple[Path, CompletedProcess[str]],
    gannas: Gannas,
    tmp_path: Path,
) -> None:
    name, url = searched_study.study_name, searched_study.storage_url
    assert f"study '{name}'" in searched_study.stdout
    assert f"{SEARCH_TRIALS}/{SEARCH_TRIALS} finished" in searched_study.stdout

    # studies: one line per study, with its counts.
    out = _ok(gannas("studies", "--storage", url)).stdout
    assert out.startswith(f"{name}\ttrials={SEARCH_TRIALS}\tfinished={SEARCH_TRIALS}\tbest_fid=")

    # trials --json: everything needed to compare and rebuild each trial.
    rows = json.loads(_ok(gannas("trials", name, "--storage", url, "--json")).stdout)
    assert isinstance(rows, list) and [r["number"] for r in rows] == list(range(SEARCH_TRIALS))
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    assert complete, rows
    for r in rows:
        assert {"number", "state", "value", "params", "arch", "protocol"} <= set(r)
        assert set(r["params"]) == {
            "generator.base_width", "generator.norm", "discriminator.width", "training.loss"
        }  # fmt: skip
        arch = ArchConfig.model_validate(r["arch"])
        assert arch.resolution == RESOLUTION and arch.channels == 1
        assert r["params_g"] == count_parameters(build_generator(arch))
        assert isinstance(r["params_d"], int) and r["params_d"] > 0
        assert r["wall_time_s"] > 0
        assert r["protocol"]["num_fake"] == 48 and r["protocol"]["resolution"] == RESOLUTION
    for r in complete:
        assert math.isfinite(r["fid"]) and r["fid"] == pytest.approx(r["value"])
    best = min(complete, key=lambda r: r["value"])

    # export: the best trial by default, with both extra formats.
    export_dir, proc = exported
    assert str(export_dir) in proc.stdout
    names = {p.name for p in export_dir.iterdir()}
    assert {
        "generator.safetensors", "arch.json", "metadata.json",
        "generator.torchscript.pt", "generator.onnx",
    } <= names  # fmt: skip
    provenance = json.loads((export_dir / "metadata.json").read_text())["provenance"]
    assert provenance["study"] == name and provenance["trial"] == best["number"]
    assert ArchConfig.model_validate(json.loads((export_dir / "arch.json").read_text())) == (
        ArchConfig.model_validate(best["arch"])
    )

    # sample: a PNG grid of the right size, the images of seed 1.
    grid = tmp_path / "grid.png"
    _ok(gannas("sample", str(export_dir), "--out", str(grid), "--n", str(SAMPLES), "--seed", "1"))
    side = _grid_side(SAMPLES, RESOLUTION)
    with Image.open(grid) as image:
        assert image.format == "PNG" and image.size == (side, side)
        cli_pixels = np.asarray(image.convert("RGB"))

    # The same directory, loaded three ways, gives the same images for a fixed z.
    from gannas import load_generator
    from trainers import save_image_grid

    generator = load_generator(export_dir)
    z = torch.randn(SAMPLES, generator.latent_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        eager = generator(z)
    assert eager.shape == (SAMPLES, 1, RESOLUTION, RESOLUTION)
    own = tmp_path / "own.png"
    save_image_grid(eager, own)
    with Image.open(own) as image:
        assert np.array_equal(np.asarray(image.convert("RGB")), cli_pixels)

    scripted = torch.jit.load(str(export_dir / "generator.torchscript.pt"))
    with torch.no_grad():
        assert torch.equal(scripted(z), eager)

    import onnxruntime as ort

    session = ort.InferenceSession(
        str(export_dir / "generator.onnx"), providers=["CPUExecutionProvider"]
    )
    (onnx_out,) = session.run(None, {session.get_inputs()[0].name: z.numpy()})
    np.testing.assert_allclose(onnx_out, eager.numpy(), rtol=0, atol=1e-4)


class _Marker:
    """Unpickling this creates ``path``: proof that a loader ran pickle code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))


PASSWORD = "s3cret-Pa55word"


def test_bad_input_gives_one_error_line_and_writes_nothing(
    searched_study: SearchedStudy,
    exported: tuple[Path, CompletedProcess[str]],
    gannas: Gannas,
    tmp_path: Path,
    tiny_space: str,
) -> None:
    before = _db_counts(searched_study.db_path)
    assert before == (1, SEARCH_TRIALS)
    good, _ = exported

    def search_args(**replace: str) -> list[str]:
        args = list(searched_study.search_args)
        for old, new in replace.items():
            args[args.index(old)] = new
        return args

    bad_space = tmp_path / "bad_space.yaml"
    bad_space.write_text("name: broken\nfamily: dcgan\ngenerator: {depth: {type: int, low: 2\n")

    corrupt = tmp_path / "corrupt"
    shutil.copytree(good, corrupt, ignore=shutil.ignore_patterns("*.pt", "*.onnx"))
    weights = corrupt / "generator.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])  # truncated

    # A directory carrying a pickle instead of safetensors (and one where the pickle wears the
    # safetensors name): refused, and never unpickled.
    marker = tmp_path / "pickle-ran"
    payload = pickle.dumps({"weights": _Marker(marker)})
    pickled, disguised = tmp_path / "pickled", tmp_path / "disguised"
    for directory, filename in ((pickled, "generator.pt"), (disguised, "generator.safetensors")):
        directory.mkdir()
        for name in ("arch.json", "metadata.json"):
            shutil.copy(good / name, directory / name)
        (directory / filename).write_bytes(payload)

    cases = {
        "dataset": ["search", "--space", tiny_space, "--study", "bad-dataset",
                    *search_args(digits="no-such-dataset")],
        "space": ["search", "--space", str(bad_space), "--study", "bad-space",
                  *searched_study.search_args],
        "storage": ["search", "--space", tiny_space, "--study", "bad-storage",
                    *search_args(**{searched_study.storage_url:
                                    f"postgresql://gannas:{PASSWORD}@127.0.0.1:1/nodb"})],
        "corrupt": ["sample", str(corrupt), "--out", str(tmp_path / "corrupt.png")],
        "pickled": ["sample", str(pickled), "--out", str(tmp_path / "pickled.png")],
        "disguised": ["sample", str(disguised), "--out", str(tmp_path / "disguised.png")],
    }  # fmt: skip
    # Independent commands: run side by side to keep the test short.
    with ThreadPoolExecutor(max_workers=3) as pool:
        procs = dict(zip(cases, pool.map(lambda args: gannas(*args), cases.values()), strict=True))
    lines = {case: _one_line_error(proc) for case, proc in procs.items()}

    assert "no-such-dataset" in lines["dataset"]
    assert "bad_space.yaml" in lines["space"]
    assert "gannas:***@127.0.0.1" in lines["storage"]
    assert PASSWORD not in procs["storage"].stdout + procs["storage"].stderr
    assert "generator.safetensors" in lines["corrupt"]
    assert "pickle" in lines["pickled"] and "disguised" in lines["disguised"]
    for case in ("corrupt", "pickled", "disguised"):
        assert not (tmp_path / f"{case}.png").exists()
    assert not marker.exists()

    # Nothing reached the study database: no new study, no new trial.
    assert _db_counts(searched_study.db_path) == before
