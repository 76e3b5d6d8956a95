"""Usage errors (a bad option value, an unknown command or option, a missing argument) get the
parser's message naming what was wrong and exit code 2, never an "internal error"."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nas.cli import main


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["search", "--trials", "abc"], "'--trials'"),
        (["search", "--nosuch", "1"], "--nosuch"),
        (["bogus"], "'bogus'"),
        (["export"], "'study'"),
        (["spaces", "validate"], "'path'"),
        (["dashboard", "--port", "99999"], "'--port'"),
    ],
)
def test_a_usage_error_names_what_was_wrong_and_exits_2(argv, named, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert named in err
    assert "internal error" not in err


def test_no_command_prints_the_help_without_an_internal_error(capsys):
    assert main([]) == 2
    captured = capsys.readouterr()
    shown = captured.out + captured.err
    assert "Usage" in shown and "search" in shown
    assert "internal error" not in shown


def test_python_dash_m_runs_the_cli_with_every_command():
    out = subprocess.run(
        [sys.executable, "-m", "nas.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    for command in ("search", "pareto", "retrain", "worker", "export"):
        assert command in out


def test_fid_names_the_environment_variable_a_missing_weights_file_came_from(
    tmp_path, monkeypatch, capsys
):
    missing = str(tmp_path / "missing.pth")
    monkeypatch.setenv("GANNAS_INCEPTION_WEIGHTS", missing)
    assert main(["fid", "digits", "digits", "--resolution", "8", "--num-samples", "10"]) == 2
    err = capsys.readouterr().err
    assert missing in err and "env GANNAS_INCEPTION_WEIGHTS" in err
