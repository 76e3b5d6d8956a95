"""Reading space files: YAML parsing with clear errors, built-in spaces, name-or-path resolution."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from gannas.errors import SpaceError
from search_spaces._schema import (
    EXPONENT_FLOAT,
    EXPONENT_FLOAT_FIRST,
    SearchSpace,
    space_from_data,
)

_BUILTIN_PACKAGE = "search_spaces"
_BUILTIN_DIR = "spaces"
_SUFFIXES = (".yaml", ".yml")

# libyaml's parser when PyYAML was built with it (several times faster); same safe constructor.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _SpaceYamlLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """Safe loader that reads exponent floats as floats and rejects duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # PyYAML keeps the last of two equal keys silently; a duplicated parameter is a mistake.
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if (
                not isinstance(key_node, yaml.ScalarNode)
                or key_node.tag == "tag:yaml.org,2002:merge"
            ):
                continue
            key = self.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


# Exponent floats without a dot (`1e-3`) are floats, as in YAML 1.2 (PyYAML reads them as strings).
_SpaceYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", EXPONENT_FLOAT, EXPONENT_FLOAT_FIRST
)


def parse_yaml(text: str, *, source: str) -> Any:
    """Parse YAML text; a syntax error becomes a :class:`SpaceError` naming line and column."""
    try:
        return yaml.load(text, Loader=_SpaceYamlLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = " ".join(str(err.problem or "").split())
        context = " ".join(str(err.context or "").split())
        detail = f"{problem} ({context})" if context and problem else problem or context
        raise SpaceError(f"{where}: invalid YAML: {detail}") from None
    except yaml.reader.ReaderError as err:
        line = text[: err.position].count("\n") + 1
        # libyaml reports the character as its code point, PyYAML as a string.
        char = chr(err.character) if isinstance(err.character, int) else err.character
        raise SpaceError(
            f"{source}:{line}: invalid YAML: expected printable text, found character "
            f"{char!r} ({err.reason})"
        ) from None
    except yaml.YAMLError as err:
        raise SpaceError(f"{source}: invalid YAML: {' '.join(str(err).split())}") from None
    except RecursionError:
        raise SpaceError(f"{source}: invalid YAML: nested too deeply") from None


def space_from_text(text: str, *, source: str = "<text>") -> SearchSpace:
    """Parse and validate the text of a space file."""
    return space_from_data(parse_yaml(text, source=source), source=source)


def load_space(path: str | os.PathLike[str]) -> SearchSpace:
    """Load and validate a space file; any problem is one :class:`SpaceError` naming the file."""
    file = Path(path)
    if not file.exists():
        raise SpaceError(f"{file}: search-space file not found; expected an existing .yaml file")
    if not file.is_file():
        raise SpaceError(f"{file}: expected a search-space .yaml file, found a directory")
    try:
        raw = file.read_bytes()
    except OSError as err:
        raise SpaceError(f"{file}: cannot read the search-space file: {err.strerror}") from None
    return space_from_text(_decode(raw, source=str(file)), source=str(file))


def _decode(raw: bytes, *, source: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise SpaceError(
            f"{source}:{line}: expected UTF-8 text, found byte 0x{raw[err.start]:02x} "
            f"at offset {err.start}"
        ) from None


def builtin_space_names() -> list[str]:
    """Names of the spaces shipped in ``search_spaces/spaces/*.yaml``, sorted."""
    folder = resources.files(_BUILTIN_PACKAGE).joinpath(_BUILTIN_DIR)
    return sorted(
        entry.name.rsplit(".", 1)[0]
        for entry in folder.iterdir()
        if entry.is_file() and entry.name.endswith(".yaml")
    )


def builtin_space_text(name: str) -> str:
    """The original text (comments included) of a built-in space, e.g. for ``spaces show``."""
    if name not in builtin_space_names():
        raise SpaceError(_unknown_name_message(name))
    folder = resources.files(_BUILTIN_PACKAGE).joinpath(_BUILTIN_DIR)
    return folder.joinpath(f"{name}.yaml").read_text(encoding="utf-8")


def _unknown_name_message(name: str) -> str:
    return (
        f"unknown search space {name!r}; expected a built-in space "
        f"({', '.join(builtin_space_names())}) or a path to a .yaml file"
    )


def resolve_space(name_or_path: str | os.PathLike[str]) -> SearchSpace:
    """A built-in space by name (``dcgan``), or a space file by path.

    It is a path when it exists as a file, ends in ``.yaml``/``.yml`` or contains a path separator.
    """
    text = os.fspath(name_or_path)
    path = Path(text)
    is_path = (
        isinstance(name_or_path, os.PathLike)
        or path.suffix.lower() in _SUFFIXES
        or "/" in text
        or os.sep in text
        or path.is_file()
    )
    if is_path:
        return load_space(path)
    if text not in builtin_space_names():
        raise SpaceError(_unknown_name_message(text))
    return space_from_text(builtin_space_text(text), source=f"built-in space {text!r}")
