"""The typed space models: parameter kinds, Optuna's range rules, family checks, conditions."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from gannas.errors import SpaceError
from search_spaces import (
    CategoricalParam,
    FixedParam,
    FloatParam,
    IntParam,
    SearchSpace,
    space_from_text,
)

HEADER = "name: t\nfamily: toy\n"


def error_of(text: str) -> str:
    with pytest.raises(SpaceError) as info:
        space_from_text(text, source="space.yaml")
    message = str(info.value)
    assert "Traceback" not in message and "errors.pydantic.dev" not in message
    return message


def line_for(message: str, path: str) -> str:
    """The line of ``message`` about ``path`` (every line names the file, then the path)."""
    lines = [line for line in message.splitlines() if line.startswith(f"space.yaml: {path}: ")]
    assert lines, f"no problem reported at {path!r}: {message}"
    return lines[0]


def generator(body: str) -> str:
    return HEADER + "generator:\n" + "".join(f"  {line}\n" for line in body.splitlines())


def test_toy_space_loads_every_kind_of_parameter(toy_text: str) -> None:
    space = space_from_text(toy_text)
    assert (space.name, space.description, space.family) == ("toy", "a toy space", "toy")
    g = space.generator
    assert g["latent_dim"] == FixedParam(type="fixed", value=8)
    assert g["depth"] == IntParam(type="int", low=1, high=3)
    assert isinstance(g["width"], IntParam) and g["width"].step == 8
    assert g["norm"] == CategoricalParam(type="categorical", choices=("batch", "none"))
    assert isinstance(g["dropout"], FloatParam) and g["dropout"].step == 0.25
    assert g["skip"].when == {"norm": ("none",)}
    width_d = space.discriminator["width"]
    assert isinstance(width_d, IntParam) and width_d.log
    lr = space.training["lr_g"]
    assert isinstance(lr, FloatParam) and lr.log and lr.low == 1e-5 and lr.high == 1e-3
    assert isinstance(lr.low, float)


def test_parameters_are_qualified_and_in_sampling_order(toy_text: str) -> None:
    space = space_from_text(toy_text)
    names = [p.qualname for p in space.parameters()]
    assert names == [
        "generator.latent_dim",
        "generator.depth",
        "generator.width",
        "generator.norm",
        "generator.activation",
        "generator.dropout",
        "generator.skip",
        "discriminator.width",
        "discriminator.spectral_norm",
        "training.loss",
        "training.lr_g",
        "training.beta1",
        "training.gp_weight",
    ]
    first = next(space.parameters())
    assert (first.section, first.name) == ("generator", "latent_dim")
    assert space.parameter("training.loss") is space.training["loss"]
    assert list(space.sections) == ["generator", "discriminator", "training"]


def test_search_defaults_when_omitted(toy_text: str) -> None:
    search = space_from_text(toy_text).search
    assert (search.sampler, search.pruner, search.objectives) == ("tpe", "hyperband", ("fid",))
    assert search.directions == ["minimize"]


def test_search_section_is_read(toy_family: object) -> None:
    text = HEADER + "search: {sampler: random, pruner: null, objectives: [fid, params]}\n"
    search = space_from_text(text).search
    assert (search.sampler, search.pruner) == ("random", "none")
    assert search.directions == ["minimize", "minimize"]
    assert search.cost_exponent is None  # gannas's default applies
    assert space_from_text(HEADER + "search: {cost_exponent: 0}\n").search.cost_exponent == 0.0


def test_models_are_frozen(toy_text: str) -> None:
    space = space_from_text(toy_text)
    with pytest.raises(ValidationError):
        space.name = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        space.generator["depth"].when = None


def test_to_yaml_round_trips(toy_family: object, toy_text: str) -> None:
    space = space_from_text(toy_text)
    text = space.to_yaml()
    assert "depth: {type: int, low: 1, high: 3}" in text
    assert space_from_text(text) == space


def test_to_yaml_keeps_number_like_strings_as_strings(toy_family: object) -> None:
    text = HEADER + "training:\n  loss: hinge\nsearch: {sampler: random}\n"
    space = space_from_text(text)
    assert space_from_text(space.to_yaml()) == space
    # A description that reads like an exponent float must come back as a string.
    odd = space_from_text(HEADER + "description: '1e5'\n")
    assert space_from_text(odd.to_yaml()).description == "1e5"


@pytest.mark.parametrize(
    ("body", "path", "fragments"),
    [
        (
            "depth: {type: int, low: 3, high: 2}",
            "generator.depth",
            ["`low <= high`", "low=3", "high=2"],
        ),
        ("depth: {type: int, low: 1, high: 3, step: 0}", "generator.depth", ["step", "step=0"]),
        ("depth: {type: int, low: 1, high: 4, step: 2}", "generator.depth", ["divide", "step=2"]),
        (
            "depth: {type: int, low: 1, high: 3, step: 2, log: true}",
            "generator.depth",
            ["cannot be combined"],
        ),
        (
            "depth: {type: int, low: 0, high: 3, log: true}",
            "generator.depth",
            ["low >= 1", "low=0"],
        ),
        (
            "dropout: {type: float, low: 0.0, high: 0.5, log: true}",
            "generator.dropout",
            ["low > 0", "low=0.0"],
        ),
        (
            "dropout: {type: float, low: 0.1, high: 0.5, step: 0.1, log: true}",
            "generator.dropout",
            ["cannot be combined"],
        ),
        (
            "dropout: {type: float, low: 0.1, high: 0.5, step: -0.1}",
            "generator.dropout",
            ["step", "> 0"],
        ),
        ("dropout: {type: float, low: 0.5, high: 0.1}", "generator.dropout", ["`low <= high`"]),
        ("dropout: {type: float, low: .nan, high: 0.1}", "generator.dropout", ["finite"]),
        (
            "norm: {type: categorical, choices: []}",
            "generator.norm.choices",
            ["at least 1", "found a list []"],
        ),
        (
            "norm: {type: categorical, choices: [batch, [none]]}",
            "generator.norm.choices[1]",
            ["single value", "['none']"],
        ),
        (
            "norm: {type: categorical, choices: [batch, none, batch]}",
            "generator.norm.choices",
            ["distinct", "'batch'"],
        ),
        (
            "depth: {type: int, low: '1', high: 3}",
            "generator.depth.low",
            ["expected an integer", "the string '1'"],
        ),
        (
            "depth: {type: int, low: 1.5, high: 3}",
            "generator.depth.low",
            ["expected an integer", "1.5"],
        ),
        (
            "depth: {type: int, low: true, high: 3}",
            "generator.depth.low",
            ["expected an integer", "found true"],
        ),
        (
            "dropout: {type: float, low: '0.1', high: 0.5}",
            "generator.dropout.low",
            ["expected a number", "the string '0.1'", "without quotes"],
        ),
        (
            "depth: {type: int, low: 1, hihg: 3}",
            "generator.depth.hihg",
            ["unknown key 'hihg'", "low, high, step, log"],
        ),
        (
            "depth: {low: 1, high: 3}",
            "generator.depth",
            ["missing `type`", "categorical, int, float, fixed"],
        ),
        (
            "depth: {type: range, low: 1, high: 3}",
            "generator.depth",
            ["`type:` one of", "found 'range'"],
        ),
        ("depth: [1, 2]", "generator.depth", ["{type: categorical", "found a list [1, 2]"]),
        ("depth: {type: int, high: 3}", "generator.depth.low", ["missing required key"]),
        ("depth: {type: int, low: 1, high: 3, when: {}}", "generator.depth.when", ["at least 1"]),
        (
            "depth: {type: int, low: 1, high: 3, when: {norm: [[a]]}}",
            "generator.depth.when.norm[0]",
            ["single value"],
        ),
        ("skip: {type: fixed}", "generator.skip.value", ["missing required key"]),
        ("skip: 2001-01-01", "generator.skip.value", ["single value", "date"]),
    ],
)
def test_structural_errors_name_path_expected_and_found(
    toy_family: object, body: str, path: str, fragments: list[str]
) -> None:
    message = line_for(error_of(generator(body)), path)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize(
    ("text", "path", "fragments"),
    [
        (HEADER + "nmae: x\n", "nmae", ["unknown key 'nmae'", "name, description, family"]),
        ("name: t\n", "family", ["missing required key"]),
        ("name: 3\nfamily: toy\n", "name", ["expected a string", "found 3"]),
        (
            HEADER + "generator: [1, 2]\n",
            "generator",
            ["expected a mapping", "found a list [1, 2]"],
        ),
        (HEADER + "generator:\n  1: 2\n", "generator[1] (a key)", ["expected a string"]),
        (
            HEADER + "search: {sampler: cmaes}\n",
            "search.sampler",
            ["'tpe'", "'grid'", "found 'cmaes'"],
        ),
        (HEADER + "search: {pruner: asha}\n", "search.pruner", ["'hyperband'", "found 'asha'"]),
        (
            HEADER + "search: {samplr: tpe}\n",
            "search.samplr",
            ["unknown key", "sampler, pruner, objectives"],
        ),
        (
            HEADER + "search: {objectives: [fid, fid], pruner: none}\n",
            "search.objectives",
            ["distinct", "fid"],
        ),
        (
            HEADER + "search: {objectives: [accuracy]}\n",
            "search.objectives[0]",
            ["'fid'", "found 'accuracy'"],
        ),
        (HEADER + "search: {cost_exponent: -1}\n", "search.cost_exponent", ["greater than or equal to 0"]),
        (HEADER + "search: {cost_exponent: .inf}\n", "search.cost_exponent", ["finite"]),
    ],
)
def test_top_level_and_search_errors(
    toy_family: object, text: str, path: str, fragments: list[str]
) -> None:
    message = line_for(error_of(text), path)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize(
    ("text", "path", "fragments"),
    [
        (
            "name: t\nfamily: nosuch\n",
            "family",
            ["unknown family 'nosuch'", "expected one of:", "toy"],
        ),
        (
            generator("norm: {type: categorical, choices: [batch, layer]}"),
            "generator.norm.choices[1]",
            ["expected 'batch' or 'none'", "found 'layer'", "ToyGeneratorParams.norm"],
        ),
        (
            generator("depth: {type: int, low: 2, high: 6}"),
            "generator.depth.high",
            ["less than or equal to 4", "found 6"],
        ),
        (
            generator("depth: {type: int, low: 0, high: 3}"),
            "generator.depth.low",
            ["greater than or equal to 1", "found 0"],
        ),
        (
            # 4 lies between the ends of the range but is not a Literal[3, 5] value.
            generator("kernel: {type: int, low: 3, high: 5}"),
            "generator.kernel (value 4 of low..high)",
            ["expected 3 or 5", "found 4"],
        ),
        (
            generator("width: {type: float, low: 8, high: 32}"),
            "generator.width.low",
            ["expected an integer", "found 8.0", "use `type: int`"],
        ),
        (
            generator("skip: 1"),
            "generator.skip",
            ["expected true or false", "found 1"],
        ),
        (
            generator("colour: red"),
            "generator.colour",
            ["unknown parameter 'colour'", "family 'toy' generator", "latent_dim, depth"],
        ),
        (
            HEADER + "training:\n  lr: 0.1\n",
            "training.lr",
            ["unknown parameter 'lr' for training", "lr_g, lr_d"],
        ),
        (
            HEADER + "training:\n  beta1: {type: float, low: 0.0, high: 1.0}\n",
            "training.beta1.high",
            ["less than 1", "found 1.0", "TrainingConfig.beta1"],
        ),
        (
            HEADER + "training:\n  loss: {type: categorical, choices: [hinge, lsgan]}\n",
            "training.loss.choices[1]",
            ["'wgan_gp'", "found 'lsgan'"],
        ),
    ],
)
def test_values_are_checked_against_the_family(
    toy_family: object, text: str, path: str, fragments: list[str]
) -> None:
    message = line_for(error_of(text), path)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize(
    ("body", "path", "fragments"),
    [
        (
            "generator:\n  depth: {type: int, low: 1, high: 2, when: {nrom: batch}}\n",
            "generator.depth.when.nrom",
            ["'generator.nrom'", "not a parameter"],
        ),
        (
            "generator:\n  depth: {type: int, low: 1, high: 2, when: {norm: batch}}\n"
            "  norm: {type: categorical, choices: [batch, none]}\n",
            "generator.depth.when.norm",
            ["not sampled before", "earlier parameter"],
        ),
        (
            "generator:\n"
            "  norm: {type: categorical, choices: [batch, none], when: {training.loss: hinge}}\n"
            "training:\n  loss: {type: categorical, choices: [hinge, bce]}\n",
            "generator.norm.when.training.loss",
            ["not sampled before", "generator, discriminator, training"],
        ),
        (
            "generator:\n  depth: {type: int, low: 1, high: 2}\n"
            "  norm: {type: categorical, choices: [batch, none], when: {depth: 2}}\n",
            "generator.norm.when.depth",
            ["expected a categorical or fixed parameter", "found a int parameter"],
        ),
        (
            "generator:\n  norm: {type: categorical, choices: [batch, none]}\n"
            "  depth: {type: int, low: 1, high: 2, when: {norm: [batch, layer]}}\n",
            "generator.depth.when.norm[1]",
            ["possible value of generator.norm", "'batch', 'none'", "found 'layer'"],
        ),
        (
            "generator:\n  norm: batch\n"
            "  depth: {type: int, low: 1, high: 2, when: {norm: none}}\n",
            "generator.depth.when.norm",
            ["possible value of generator.norm ('batch')", "found 'none'"],
        ),
        (
            "generator:\n  norm: {type: categorical, choices: [batch, none]}\n"
            "discriminator:\n  width: {type: int, low: 1, high: 2, when: {gen.norm: batch}}\n",
            "discriminator.width.when.gen.norm",
            ["unknown section 'gen'", "generator, discriminator, training"],
        ),
        (
            "generator:\n  skip: {type: categorical, choices: [true, false]}\n"
            "  depth: {type: int, low: 1, high: 2, when: {skip: 1}}\n",
            "generator.depth.when.skip",
            ["found 1"],  # 1 is not the boolean true
        ),
    ],
)
def test_condition_errors(toy_family: object, body: str, path: str, fragments: list[str]) -> None:
    message = line_for(error_of(HEADER + body), path)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_cross_section_and_fixed_conditions_are_valid(toy_family: object) -> None:
    text = HEADER + (
        "generator:\n  norm: batch\n  skip: {type: fixed, value: true, when: {norm: batch}}\n"
        "discriminator:\n  spectral_norm: {type: categorical, choices: [true, false],"
        " when: {generator.norm: [batch]}}\n"
    )
    space = space_from_text(text)
    assert space.discriminator["spectral_norm"].when == {"generator.norm": ("batch",)}


def test_search_cross_checks(toy_family: object) -> None:
    grid = error_of(
        generator("dropout: {type: float, low: 0.0, high: 0.5}") + "search: {sampler: grid}\n"
    )
    assert grid.startswith("space.yaml: search.sampler: ")
    assert "generator.dropout" in grid and "continuous float" in grid and "add `step:`" in grid
    space_from_text(
        generator("dropout: {type: float, low: 0.0, high: 0.5, step: 0.1}")
        + "search: {sampler: grid}\n"
    )
    # Multi-objective studies prune on FID, so a pruner is fine, but FID must come first.
    assert space_from_text(HEADER + "search: {objectives: [fid, macs]}\n").search.pruner == (
        "hyperband"
    )
    cost_first = error_of(HEADER + "search: {objectives: [params, fid]}\n")
    assert cost_first.startswith("space.yaml: search.objectives: ")
    assert "'fid' as the first objective" in cost_first and "'params'" in cost_first


def test_every_problem_gets_its_own_line(toy_family: object) -> None:
    message = error_of(
        generator(
            "norm: {type: categorical, choices: [batch, layer]}\n"
            "depth: {type: int, low: 1, high: 9}\n"
            "colour: red"
        )
    )
    lines = message.splitlines()
    assert len(lines) == 3
    assert all(line.startswith("space.yaml: generator.") for line in lines)


def test_direct_validation_reports_the_space_name(toy_family: object) -> None:
    with pytest.raises(SpaceError, match=r"^search space 'direct': generator.norm.choices\[1\]: "):
        SearchSpace.model_validate(
            {
                "name": "direct",
                "family": "toy",
                "generator": {"norm": {"type": "categorical", "choices": ["batch", "layer"]}},
            }
        )


def test_import_does_not_load_torch_or_families() -> None:
    code = (
        "import sys, search_spaces\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'search_spaces.families' not in sys.modules, 'families imported'\n"
        "from search_spaces.builders import build_generator\n"
        "assert search_spaces.build_generator is build_generator\n"
        "assert search_spaces.FAMILIES is sys.modules['search_spaces.families'].FAMILIES\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_structural_and_family_problems_are_reported_together(toy_family: object) -> None:
    # A structural problem (a range, a type, an unknown key) used to hide the family's problems
    # with the valid rest until it was mended: the file was fixed in rounds.
    text = (
        HEADER
        + "foo: 1\n"
        + "generator:\n"
        + "  depth: {type: int, low: 4, high: 2}\n"
        + "  norm: {type: categorical, choices: [batch, layer]}\n"
        + "  kernel: {type: int, low: abc, high: 5}\n"
        + "training:\n"
        + "  nosuch: 3\n"
    )
    message = error_of(text)
    assert "low <= high" in line_for(message, "generator.depth")
    assert "expected an integer, found 'abc'" in line_for(message, "generator.kernel.low")
    assert "unknown key 'foo'" in line_for(message, "foo")
    assert "found 'layer'" in line_for(message, "generator.norm.choices[1]")
    assert "unknown parameter 'nosuch'" in line_for(message, "training.nosuch")
    assert len(message.splitlines()) == 5, message
