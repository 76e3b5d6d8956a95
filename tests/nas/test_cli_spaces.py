"""``gannas spaces``: list, show and validate take the same names, built-in or file."""

from __future__ import annotations

from nas.cli import main
from search_spaces import builtin_space_names


def test_show_prints_a_space_that_validate_accepts_by_file_and_by_name(tmp_path, capsys):
    assert "dcgan" in builtin_space_names()
    assert main(["spaces", "show", "dcgan"]) == 0
    shown = capsys.readouterr().out
    path = tmp_path / "mine.yaml"
    path.write_text(shown)

    assert main(["spaces", "validate", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {path}: space 'dcgan'")
    # A built-in name, as `spaces show` and `search --space` take it; it was refused as a
    # missing file.
    assert main(["spaces", "validate", "dcgan"]) == 0
    assert capsys.readouterr().out.startswith("ok: dcgan: space 'dcgan'")


def test_validate_names_what_is_wrong_in_one_line_without_a_traceback(tmp_path, capsys):
    main(["spaces", "show", "dcgan"])
    shown = capsys.readouterr().out
    path = tmp_path / "bad.yaml"
    path.write_text(shown.replace("name: dcgan", "name: dcgan\nnot_a_field: 1", 1))
    assert "not_a_field" in path.read_text()

    assert main(["spaces", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "not_a_field" in err and "Traceback" not in err

    assert main(["spaces", "validate", "no_such_space"]) == 2
    err = capsys.readouterr().err
    assert "unknown search space 'no_such_space'" in err and "dcgan" in err


def test_validate_counts_searched_and_fixed_parameters_apart(tmp_path, capsys):
    # Fixed values were counted as parameters ("15 parameters" for 8 searched ones).
    path = tmp_path / "small.yaml"
    path.write_text(
        "name: small\nfamily: dcgan\ngenerator:\n  depth: 2\n  norm: batch\n"
        "  base_width: {type: int, low: 16, high: 32, step: 16}\n"
    )
    assert main(["spaces", "validate", str(path)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"ok: {path}: space 'small' (family dcgan), 1 searched parameter(s), 2 fixed"
    )
