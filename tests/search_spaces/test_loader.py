"""Loading space files: YAML quirks, one clear SpaceError per bad file, built-ins, resolution."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from gannas.errors import GannasError, SpaceError
from search_spaces import (
    FloatParam,
    builtin_space_names,
    builtin_space_text,
    load_space,
    resolve_space,
)
from search_spaces._loader import parse_yaml

WriteYaml = Callable[..., Path]


def load_error(path: Path | str) -> str:
    with pytest.raises(SpaceError) as info:
        load_space(path)
    message = str(info.value)
    assert "Traceback" not in message and "errors.pydantic.dev" not in message
    return message


def test_load_space_reads_a_valid_file(toy_text: str, write_yaml: WriteYaml) -> None:
    space = load_space(write_yaml(toy_text))
    assert space.name == "toy" and space.family == "toy"
    assert len(list(space.parameters())) == 13


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1e-3", 1e-3),
        ("1E3", 1000.0),
        ("-2e+2", -200.0),
        ("1.0e5", 1e5),  # YAML 1.1 needs a sign in the exponent; we do not
        ("2.5e-4", 2.5e-4),
        (".5e1", 5.0),
        ("1_000e-3", 1.0),
    ],
)
def test_exponent_floats_are_floats(text: str, value: float) -> None:
    parsed = parse_yaml(f"x: {text}", source="t")["x"]
    assert isinstance(parsed, float) and parsed == pytest.approx(value)


def test_quoted_and_plain_values_keep_their_yaml_types() -> None:
    parsed = parse_yaml("a: '1e-3'\nb: 3\nc: 0.5\nd: true\ne: none\nf: null\ng: 1e", source="t")
    assert parsed == {"a": "1e-3", "b": 3, "c": 0.5, "d": True, "e": "none", "f": None, "g": "1e"}
    assert type(parsed["b"]) is int


def test_exponent_bounds_load_as_floats(toy_family: object, write_yaml: WriteYaml) -> None:
    path = write_yaml(
        "name: t\nfamily: toy\ntraining:\n  lr_g: {type: float, low: 1e-5, high: 1e-3, log: true}\n"
    )
    lr = load_space(path).training["lr_g"]
    assert isinstance(lr, FloatParam) and (lr.low, lr.high) == (1e-5, 1e-3)


def test_quoted_number_names_file_field_expected_and_found(
    toy_family: object, write_yaml: WriteYaml
) -> None:
    path = write_yaml(
        "name: t\nfamily: toy\ntraining:\n  lr_g: {type: float, low: '0.1', high: 0.5}\n"
    )
    message = load_error(path)
    assert message == (
        f"{path}: training.lr_g.low: expected a number, "
        "found the string '0.1' (write numbers without quotes)"
    )


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    message = load_error(missing)
    assert str(missing) in message and "not found" in message


def test_directory_is_not_a_space(tmp_path: Path) -> None:
    message = load_error(tmp_path)
    assert str(tmp_path) in message and "found a directory" in message


def test_yaml_syntax_error_names_line_and_column(write_yaml: WriteYaml) -> None:
    path = write_yaml("name: t\nfamily: toy\ngenerator:\n  depth: {type: int, low: 1\n  norm: x\n")
    message = load_error(path)
    assert message.startswith(f"{path}:5:")
    assert "invalid YAML" in message and "flow mapping" in message


def test_tab_indentation_is_a_syntax_error_with_a_line(write_yaml: WriteYaml) -> None:
    path = write_yaml("name: t\nfamily: toy\ngenerator:\n\tdepth: 2\n")
    message = load_error(path)
    assert message.startswith(f"{path}:4:") and "invalid YAML" in message


def test_duplicate_keys_are_rejected(write_yaml: WriteYaml) -> None:
    path = write_yaml("name: t\nfamily: toy\ngenerator:\n  depth: 2\n  width: 8\n  depth: 3\n")
    message = load_error(path)
    assert message.startswith(f"{path}:6:")
    assert "duplicate key 'depth'" in message and "first at line 4" in message


def test_non_utf8_file(write_yaml: WriteYaml) -> None:
    path = write_yaml(b"name: t\nfamily: \xff\xfe\n")
    message = load_error(path)
    assert message.startswith(f"{path}:2:") and "UTF-8" in message and "0xff" in message


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("- a\n- b\n", "found a list ['a', 'b']"),
        ("just a string\n", "found 'just a string'"),
        ("42\n", "found 42"),
        ("", "found an empty document"),
        ("# only a comment\n", "found an empty document"),
    ],
)
def test_top_level_must_be_a_mapping(write_yaml: WriteYaml, text: str, found: str) -> None:
    path = write_yaml(text)
    message = load_error(path)
    assert message.startswith(f"{path}: expected a mapping with keys name, description, family")
    assert found in message


def test_unknown_family_lists_the_known_ones(write_yaml: WriteYaml) -> None:
    path = write_yaml("name: t\nfamily: stylegan\n")
    message = load_error(path)
    assert message.startswith(f"{path}: family: unknown family 'stylegan'; expected one of: ")
    for name in ("autogan", "dcgan"):
        assert name in message


def test_deep_nesting_is_a_space_error(write_yaml: WriteYaml) -> None:
    # Deep enough to exhaust a recursive (pure-Python) parser. Older libyaml builds parse it; the
    # libyaml in PyYAML 6.0.4's wheel stops at its own nesting limit and names the position.
    depth = 2_000
    path = write_yaml("name: " + "[" * depth + "]" * depth + "\n")
    message = load_error(path)
    limit = re.fullmatch(
        rf"{re.escape(str(path))}:1:\d+: invalid YAML: exceeded maximum nesting depth.*", message
    )
    assert limit or message in (
        f"{path}: invalid YAML: nested too deeply",
        f"{path}: name: expected a string, found a list [[[...]]]\n"
        f"{path}: family: missing required key",
    ), message


def test_control_characters_are_a_syntax_error_with_a_line(write_yaml: WriteYaml) -> None:
    path = write_yaml("name: t\nfamily: \x07\n")
    message = load_error(path)
    assert message.startswith(f"{path}:2: invalid YAML: expected printable text")
    assert "'\\x07'" in message


def test_space_error_is_a_gannas_error() -> None:
    assert issubclass(SpaceError, GannasError)


def test_builtin_spaces_are_listed_and_readable() -> None:
    names = builtin_space_names()
    assert names == sorted(names)
    assert {"dcgan", "autogan"} <= set(names)
    assert builtin_space_text("dcgan").lstrip().startswith("#")  # comments are kept


def test_resolve_space_by_name_and_by_path(toy_text: str, write_yaml: WriteYaml) -> None:
    assert resolve_space("dcgan").name == "dcgan"
    path = write_yaml(toy_text, name="mine.yml")
    assert resolve_space(path).name == "toy"
    assert resolve_space(str(path)).name == "toy"


def test_resolve_space_missing_yaml_path_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match="not found"):
        resolve_space(str(tmp_path / "absent.yaml"))


def test_resolve_space_unknown_name_lists_builtins() -> None:
    with pytest.raises(SpaceError) as info:
        resolve_space("biggan")
    message = str(info.value)
    assert "unknown search space 'biggan'" in message
    assert "dcgan" in message and "autogan" in message and ".yaml" in message


def test_builtin_text_of_an_unknown_name() -> None:
    with pytest.raises(SpaceError, match="unknown search space 'nope'"):
        builtin_space_text("nope")
