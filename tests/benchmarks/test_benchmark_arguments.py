"""Every benchmark script refuses nonsense settings by name before it runs or writes anything."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def arguments(load_benchmark):
    return load_benchmark("_arguments")


def _parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog="x")


def test_refuse_below_passes_what_was_not_given_and_names_what_is_below(arguments, capsys):
    arguments.refuse_below(_parser(), [("--a", None, 1), ("--b", 3, 1), ("--c", [2, 5], 2)])
    for given, shown in ((0, "got 0"), ([2, 1], "got 1"), (float("nan"), "got nan")):
        with pytest.raises(SystemExit) as exc:
            arguments.refuse_below(_parser(), [("--c", given, 2)])
        assert exc.value.code == 2
        assert f"--c must be at least 2, {shown}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        arguments.refuse_below(_parser(), [("--c", [], 2)])
    assert "--c needs at least one value" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        ("scale", ["--workers", "0"], "--workers must be at least 1, got 0"),
        ("scale", ["--backends", "foo"], "--backends must be among sqlite, postgresql; got foo"),
        ("scale", ["--sleep", "-1"], "--sleep must be at least 0, got -1"),
        ("scale", ["--workers", "a"], "take comma lists"),
        ("seed_noise", ["--trials", "0"], "--trials must be at least 1, got 0"),
        ("seed_noise", ["--top", "9", "--trials", "3"], "--top 9 is more than --trials 3"),
        ("fid_speed", ["--sizes", "-3"], "--sizes must be at least 2, got -3"),
        ("fid_speed", ["--device", "tpu"], "--device 'tpu'"),
        ("seed_noise", ["--seed", "-1"], "--seed must be at least 0, got -1"),
        ("scale", ["--profile", "5", "--workers", "2"], "--profile 5 is not one of --workers 2"),
        ("fid_direct", ["--tools", "nosuch"], "--tools must be among ours, torch-fidelity"),
        ("fid_direct", ["--sizes", "1"], "--sizes must be at least 2, got 1"),
    ],
)
def test_each_script_refuses_nonsense_by_name(
    load_benchmark, monkeypatch, tmp_path: Path, capsys, script: str, args: list[str], message: str
) -> None:
    # These were tracebacks, or ran (fid_speed --sizes -3).
    module = load_benchmark(script)
    out = [] if script == "seed_noise" else ["--out", str(tmp_path / "out.md")]
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *out, *args])
    with pytest.raises(SystemExit) as exc:
        module.main(*([[*out, *args]] if script == "scale" else []))
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_weights_file_asked_for_by_name_is_not_replaced_by_random_weights(
    load_benchmark, tmp_path: Path
) -> None:
    # It measured random weights instead, saying so only in the results file.
    fid_speed = load_benchmark("fid_speed")
    with pytest.raises(SystemExit, match="--weights '/nonexistent/w.pth': .*does not exist"):
        fid_speed.resolve_weights("/nonexistent/w.pth", tmp_path)
    assert list(tmp_path.iterdir()) == []
