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
import optuna
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
    # trials: one line per trial with both networks' sizes, as the README says.
    lines = _ok(gannas("trials", name, "--storage", url)).stdout.splitlines()
    assert len(lines) == SEARCH_TRIALS
    for line, r in zip(lines, rows, strict=True):
        assert f"G={r['params_g']}  D={r['params_d']}" in line
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


def _run_all(gannas: Gannas, cases: dict[str, list[str]]) -> dict[str, str]:
    """Run independent failing commands side by side; each case's single ``error:`` line."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        procs = dict(zip(cases, pool.map(lambda args: gannas(*args), cases.values()), strict=True))
    lines = {}
    for case, proc in procs.items():
        assert proc.returncode == 2, (case, proc.returncode, proc.stderr)
        lines[case] = _one_line_error(proc)
        assert "internal error" not in lines[case], (case, lines[case])
    return lines


def test_read_only_commands_refuse_a_missing_database_and_create_nothing(
    searched_study: SearchedStudy, gannas: Gannas, tmp_path: Path
) -> None:
    # Opening a SQLite URL creates the file: a typo used to list "no studies" (exit 0) and leave
    # an empty 114 KB database, and `report` a new artifact directory, behind.
    typo = tmp_path / "typo.db"
    url = f"sqlite:///{typo}"
    name, artifacts = searched_study.study_name, str(searched_study.artifacts)
    lines = _run_all(gannas, {
        "studies": ["studies", "--storage", url],
        "trials": ["trials", name, "--storage", url],
        "pareto": ["pareto", name, "--storage", url],
        "export": ["export", name, "--out", str(tmp_path / "x"), "--storage", url,
                   "--artifacts", artifacts],
        "report": ["report", name, "--out", str(tmp_path / "r"), "--storage", url,
                   "--artifacts", str(tmp_path / "arts")],
        "default": ["trials", name],  # ./gannas.db in the (empty) working directory
    })  # fmt: skip
    for case, line in lines.items():
        path = tmp_path / "gannas.db" if case == "default" else typo
        assert line.startswith(f"error: no study database at {str(path)!r} (no such file)"), line
    assert list(tmp_path.iterdir()) == []  # no database, no artifact store, no output


def test_missing_artifact_store_or_checkpoint_is_named(
    searched_study: SearchedStudy, gannas: Gannas, tmp_path: Path
) -> None:
    name, url = searched_study.study_name, searched_study.storage_url
    missing, empty = tmp_path / "no-store", tmp_path / "empty-store"
    empty.mkdir()
    best = min(
        (t for t in optuna.load_study(study_name=name, storage=url).trials if t.values),
        key=lambda t: t.values[0],
    )
    lines = _run_all(gannas, {
        "report": ["report", name, "--out", str(tmp_path / "r"), "--storage", url,
                   "--artifacts", str(missing)],
        "export": ["export", name, "--out", str(tmp_path / "x"), "--storage", url,
                   "--artifacts", str(missing)],
        "export-empty": ["export", name, "--out", str(tmp_path / "y"), "--storage", url,
                         "--artifacts", str(empty)],
    })  # fmt: skip
    for case in ("report", "export"):
        assert f"no artifact store at {str(missing)!r}" in lines[case]
        assert "--artifacts" in lines[case]
    assert lines["export-empty"].startswith(
        f"error: trial {best.number}'s checkpoint (generator.safetensors, artifact "
    )
    assert f"is missing from the artifact store {empty}" in lines["export-empty"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty-store"]
    assert list(empty.iterdir()) == []


def test_unusable_output_paths_are_named_and_nothing_is_written(
    searched_study: SearchedStudy,
    exported: tuple[Path, CompletedProcess[str]],
    gannas: Gannas,
    tmp_path: Path,
) -> None:
    name, url = searched_study.study_name, searched_study.storage_url
    store = ["--storage", url, "--artifacts", str(searched_study.artifacts)]
    good, _ = exported
    plain = tmp_path / "samples.png"  # a file where a directory is needed
    plain.write_bytes(b"keep me")
    folder = tmp_path / "best-g"  # a directory where a file is needed
    folder.mkdir()
    lines = _run_all(gannas, {
        "export": ["export", name, "--out", str(plain / "x"), *store],
        "sample-under-file": ["sample", str(good), "--out", str(plain / "s.png")],
        "sample-dir": ["sample", str(good), "--out", str(folder)],
        "sample-jpg": ["sample", str(good), "--out", str(tmp_path / "s.jpg")],
        # was killed for memory, or "internal error: can't allocate memory"
        "sample-huge": ["sample", str(good), "--out", str(tmp_path / "s.png"), "--n", "1000000"],
        "report-file": ["report", name, "--out", str(plain), *store],
        "report-top": ["report", name, "--out", str(tmp_path / "r"), "--top", "0", *store],
    })  # fmt: skip
    assert lines["export"] == (
        f"error: cannot write the export to {plain / 'x'}: Not a directory: {str(plain)!r}"
    )
    assert lines["sample-under-file"] == (
        f"error: cannot write --out {str(plain / 's.png')!r}: Not a directory: {str(plain)!r}"
    )
    assert lines["sample-dir"] == f"error: --out {str(folder)!r} is a directory; expected a .png file path"
    assert f"--out {str(tmp_path / 's.jpg')!r} must name a .png file" in lines["sample-jpg"]
    assert lines["sample-huge"] == "error: --n must be from 1 to 4096, got 1000000"
    assert f"cannot write the report to {plain}: it is a file" in lines["report-file"]
    assert lines["report-top"] == "error: --top must be at least 1, got 0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-g", "samples.png"]
    assert plain.read_bytes() == b"keep me" and list(folder.iterdir()) == []


def test_exported_files_and_samples_get_the_umasks_mode(
    searched_study: SearchedStudy, gannas: Gannas, tmp_path: Path, set_umask: Callable[[int], None]
) -> None:
    # safetensors and mkstemp write owner-only (0600) files; an export on a shared volume must be
    # readable by the group here, like every other file the umask 027 lets through.
    set_umask(0o027)  # inherited by the gannas processes
    out = tmp_path / "exported"
    _ok(gannas(
        "export", searched_study.study_name, "--out", str(out),
        "--storage", searched_study.storage_url, "--artifacts", str(searched_study.artifacts),
    ))  # fmt: skip
    _ok(gannas("sample", str(out), "--out", str(tmp_path / "grid.png"), "--n", "4"))
    modes = {p.name: p.stat().st_mode & 0o777 for p in [*out.iterdir(), tmp_path / "grid.png"]}
    assert modes == {
        "generator.safetensors": 0o640, "arch.json": 0o640, "metadata.json": 0o640,
        "grid.png": 0o640,
    }  # fmt: skip


def test_studies_shows_the_best_fid_of_a_multi_objective_study(
    gannas: Gannas, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'mo.db'}"
    study = optuna.create_study(
        storage=url, study_name="mo", directions=["minimize", "minimize"]
    )
    for fid, params in ((30.0, 1e5), (12.5, 5e5), (20.0, 2e5)):
        trial = study.ask()
        study.tell(trial, [fid, params])
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    single = optuna.create_study(storage=url, study_name="so")
    single.tell(single.ask(), 7.25)
    out = _ok(gannas("studies", "--storage", url)).stdout.splitlines()
    assert out == [
        "mo\ttrials=4\tfinished=4\tbest_fid=12.5000",  # the lowest FID among completed trials
        "so\ttrials=1\tfinished=1\tbest_fid=7.2500",
    ]
