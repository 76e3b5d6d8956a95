"""Fuzzing the loader with malformed variants of the built-in spaces.

Every variant must either load (and then sample) or raise SpaceError naming the file: never any
other exception, which the CLI would show as a traceback.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from gannas.errors import SpaceError
from search_spaces import (
    RandomSuggester,
    SearchSpace,
    builtin_space_names,
    builtin_space_text,
    load_space,
    sample_config,
)

VARIANTS_PER_SPACE = 170
_FastLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_FastDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
Node = Any

_ODD_VALUES: list[Any] = [
    [],
    {},
    "",
    "x",
    "0.1",
    "1e-3",
    0,
    -1,
    1.5,
    10**30,
    -(10**30),
    1e300,
    float("inf"),
    True,
    False,
    None,
    [1, [2]],
    {"type": "int"},
    {"type": "categorical"},
    {"type": "float", "low": 1, "high": 0},
    {"type": "fixed"},
    {"when": {"x": 1}},
    ["batch", "layer"],
]
_GARBAGE_CHARS = ":{}[],-&*!|>'\"%@`#\t\n "


def _containers(node: Node, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Node]]:
    """Every dict and list in the tree with its path."""
    found: list[tuple[tuple[Any, ...], Node]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.items():
            found += _containers(value, (*path, key))
    elif isinstance(node, list):
        found.append((path, node))
        for i, value in enumerate(node):
            found += _containers(value, (*path, i))
    return found


def _slots(data: Node) -> list[tuple[Node, Any]]:
    """(container, key-or-index) pairs for every value in the tree."""
    slots: list[tuple[Node, Any]] = []
    for _, container in _containers(data):
        keys = list(container) if isinstance(container, dict) else range(len(container))
        slots += [(container, key) for key in keys]
    return slots


def _delete_key(data: Node, rng: random.Random) -> str:
    dicts = [c for _, c in _containers(data) if isinstance(c, dict) and c]
    container = rng.choice(dicts)
    key = rng.choice(list(container))
    del container[key]
    return f"delete {key!r}"


def _rename_key(data: Node, rng: random.Random) -> str:
    dicts = [c for _, c in _containers(data) if isinstance(c, dict) and c]
    container = rng.choice(dicts)
    key = rng.choice(list(container))
    new = rng.choice([f"{key}_", str(key).upper(), str(key)[:-1], 7, None, True, "type", "when"])
    container[new] = container.pop(key)
    return f"rename {key!r} -> {new!r}"


def _swap_type(data: Node, rng: random.Random) -> str:
    container, key = rng.choice(_slots(data))
    container[key] = copy.deepcopy(rng.choice(_ODD_VALUES))
    return f"swap {key!r} -> {container[key]!r}"


def _numeric_slots(data: Node) -> list[tuple[Node, Any]]:
    return [
        (c, k)
        for c, k in _slots(data)
        if isinstance(c[k], (int, float)) and not isinstance(c[k], bool)
    ]


def _string_number(data: Node, rng: random.Random) -> str:
    slots = _numeric_slots(data)
    container, key = rng.choice(slots)
    container[key] = str(container[key])
    return f"stringify {key!r}"


def _out_of_range(data: Node, rng: random.Random) -> str:
    container, key = rng.choice(_numeric_slots(data))
    container[key] = rng.choice([-(10**6), -1, 0, 10**9, 1e-300, -0.5, 2**63, 0.999999])
    return f"out of range {key!r} -> {container[key]!r}"


def _swap_bounds(data: Node, rng: random.Random) -> str:
    ranges = [c for _, c in _containers(data) if isinstance(c, dict) and "low" in c and "high" in c]
    container = rng.choice(ranges)
    container["low"], container["high"] = container["high"], container["low"] + rng.choice([0, 1])
    return "swap low/high"


def _deep_nest(data: Node, rng: random.Random) -> str:
    container, key = rng.choice(_slots(data))
    value = container[key]
    for _ in range(rng.randint(5, 120)):
        value = [value] if rng.random() < 0.5 else {"k": value}
    container[key] = value
    return f"deep nest {key!r}"


_DATA_MUTATIONS: list[Callable[[Node, random.Random], str]] = [
    _delete_key,
    _rename_key,
    _swap_type,
    _string_number,
    _out_of_range,
    _swap_bounds,
    _deep_nest,
]


def _mutate_data(text: str, rng: random.Random) -> tuple[bytes, str]:
    data = yaml.load(text, Loader=_FastLoader)
    done = [rng.choice(_DATA_MUTATIONS)(data, rng) for _ in range(rng.randint(1, 3))]
    dumped = yaml.dump(
        data,
        Dumper=_FastDumper,
        sort_keys=False,
        default_flow_style=rng.choice([None, True, False]),
    )
    return dumped.encode(), "; ".join(done)


def _mutate_text(text: str, rng: random.Random) -> tuple[bytes, str]:
    raw = text.encode()
    kind = rng.randrange(7)
    if kind == 0:
        cut = rng.randrange(len(raw))
        return raw[:cut], f"truncate at {cut}"
    if kind == 1:
        at = rng.randrange(len(raw))
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        return raw[:at] + junk + raw[at:], f"garbage {junk!r} at {at}"
    lines = text.splitlines(keepends=True)
    i = rng.randrange(len(lines))
    if kind == 2:
        del lines[i]
        return "".join(lines).encode(), f"delete line {i + 1}"
    if kind == 3:
        lines.insert(i, lines[i])
        return "".join(lines).encode(), f"duplicate line {i + 1}"
    if kind == 4:
        lines[i] = rng.choice(["", " ", "   ", "\t"]) + lines[i].lstrip(rng.choice([" ", ""]))
        return "".join(lines).encode(), f"re-indent line {i + 1}"
    if kind == 5:
        at = rng.randrange(len(text))
        char = rng.choice(_GARBAGE_CHARS)
        return (text[:at] + char + text[at + 1 :]).encode(), f"replace char {at} by {char!r}"
    depth = rng.randint(20, 250)
    opener, closer = rng.choice([("[", "]"), ("{a: ", "}")])
    nested = opener * depth + "1" + closer * depth
    return (text + f"extra: {nested}\n").encode(), f"nest text {depth}"


_ALIAS_VARIANTS = [
    ("recursive alias", "loop: &a [*a]\n"),
    ("recursive alias in a section", None),
    ("python tag", "name: !!python/object:os.system ls\n"),
    ("binary", "name: !!binary aGVsbG8=\n"),
    ("set", "name: !!set {a, b}\n"),
    ("merge key", "generator: &g {}\ndiscriminator:\n  <<: *g\n"),
    ("document stream", "---\nname: a\n---\nname: b\n"),
    ("bom", "\ufeffname: x\n"),
]


def _variants(name: str, text: str) -> list[tuple[bytes, str]]:
    rng = random.Random(f"fuzz-{name}")
    variants: list[tuple[bytes, str]] = []
    for _ in range(VARIANTS_PER_SPACE):
        mutate = _mutate_data if rng.random() < 0.6 else _mutate_text
        variants.append(mutate(text, rng))
    for label, extra in _ALIAS_VARIANTS:
        if extra is None:
            extra = text.replace("generator:\n", "generator: &gen\n  self: *gen\n", 1)
            variants.append((extra.encode(), label))
        else:
            variants.append(((text + extra).encode(), label))
            variants.append((extra.encode(), f"{label} alone"))
    return variants


def test_malformed_variants_load_or_raise_space_error(tmp_path: Path) -> None:
    outcomes = {"loaded": 0, "space_error": 0}
    failures: list[str] = []
    total = 0
    for name in builtin_space_names():
        for i, (raw, label) in enumerate(_variants(name, builtin_space_text(name))):
            total += 1
            path = tmp_path / f"{name}-{i}.yaml"
            path.write_bytes(raw)
            try:
                space = load_space(path)
                assert isinstance(space, SearchSpace)
                sample_config(space, RandomSuggester(i), resolution=32, channels=3)
                outcomes["loaded"] += 1
            except SpaceError as err:
                message = str(err)
                if not message.startswith(str(path)) and not message.startswith("search space "):
                    failures.append(f"{path.name} ({label}): message without the file: {message}")
                if "Traceback" in message or "errors.pydantic.dev" in message:
                    failures.append(f"{path.name} ({label}): raw error text: {message}")
                outcomes["space_error"] += 1
            except Exception as err:  # the point of the test: nothing else may escape
                failures.append(f"{path.name} ({label}): {type(err).__name__}: {err}")
    assert not failures, "\n".join(failures[:20])
    assert total >= 300
    # Both outcomes occur, so the mutations neither all break nor all miss the schema.
    assert outcomes["space_error"] > total // 2 and outcomes["loaded"] > 0, outcomes
