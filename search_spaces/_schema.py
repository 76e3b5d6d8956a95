"""Typed, frozen models of a search-space file and the checks that need the family's parameters.

A space file is validated in two passes, both before anything is sampled or built:

1. structure (pydantic): known keys only, numbers are numbers, Optuna's range rules
   (``low <= high``, ``log`` needs ``low > 0``, ``step`` and ``log`` are exclusive, ...);
2. meaning (:func:`_semantic_problems`, run by :class:`SearchSpace`'s model validator): every
   parameter is a field of the family's parameter model (or of :class:`TrainingConfig`), every value
   the parameter can take is accepted by that field, and every ``when:`` condition refers to an
   earlier categorical or fixed parameter and to one of its possible values.

Problems are reported as ``(path, message)`` pairs and turned into one :class:`SpaceError` whose
lines read ``<source>: <path>: expected ..., found ...``.
"""

from __future__ import annotations

import functools
import math
import re
import reprlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gannas.errors import SpaceError
from search_spaces.config import TrainingConfig

if TYPE_CHECKING:  # pragma: no cover
    from search_spaces._sampling import Suggester
    from search_spaces.families import Family

SectionName = Literal["generator", "discriminator", "training"]
SECTIONS: tuple[SectionName, ...] = get_args(SectionName)
"""Sections in the order they are sampled; a condition may refer to an earlier section."""

SamplerName = Literal["tpe", "random", "nsga2", "evolution", "grid"]
SAMPLERS: tuple[str, ...] = get_args(SamplerName)
PrunerName = Literal["none", "median", "successive_halving", "hyperband"]
PRUNERS: tuple[str, ...] = get_args(PrunerName)
ObjectiveName = Literal["fid", "params", "macs", "latency"]
"""Quality (FID) first, then optionally one generator cost: parameters, MACs or latency."""
OBJECTIVE_DIRECTIONS: Mapping[str, Literal["minimize", "maximize"]] = {
    "fid": "minimize",
    "params": "minimize",
    "macs": "minimize",
    "latency": "minimize",
}
PARAM_TYPES = ("categorical", "int", "float", "fixed")

Scalar = bool | int | float | str | None

# Int ranges up to this many values are checked value by value against the field's type (a
# Literal[3, 5] field must reject 4); longer ranges only at both ends.
_MAX_CHECKED_INT_VALUES = 256

_MAX_SHOWN = 120
_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxlevel = 2
_repr.maxlist = _repr.maxtuple = _repr.maxdict = 6


def show(value: Any) -> str:
    """A short, YAML-flavoured rendering of a value for error messages (safe on deep nesting)."""
    text = _show(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = _repr.repr(value)
        if _looks_numeric(value):
            return f"the string {text} (write numbers without quotes)"
        return text
    if isinstance(value, Mapping):
        return f"a mapping {_repr.repr(dict(value))}"
    if isinstance(value, (list, tuple)):
        return f"a list {_repr.repr(list(value))}"
    if isinstance(value, (int, float)):
        return _repr.repr(value)
    return f"{type(value).__name__} {_repr.repr(value)}"


def _looks_numeric(text: str) -> bool:
    try:
        float(text.replace("_", ""))
    except ValueError:
        return False
    return text.strip().lower() not in ("nan", "inf", "-inf", "+inf", "infinity")


def same_value(a: Any, b: Any) -> bool:
    """Equality that keeps booleans apart from numbers (``True == 1`` in Python, not here)."""
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if a is None or b is None:
        return a is None and b is None
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _check_scalar(value: Any) -> Scalar:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a finite number, found {show(value)}")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(
        f"expected a single value (string, number, true/false or null), found {show(value)}"
    )


ScalarValue = Annotated[Any, AfterValidator(_check_scalar)]


def _as_value_list(value: Any) -> Any:
    # `when: {loss: wgan_gp}` is shorthand for `when: {loss: [wgan_gp]}`.
    return list(value) if isinstance(value, (list, tuple)) else [value]


Condition = dict[
    StrictStr,
    Annotated[tuple[ScalarValue, ...], BeforeValidator(_as_value_list), Field(min_length=1)],
]


def resolve_ref(ref: str, section: str) -> tuple[str, str]:
    """``loss`` in section ``training`` -> ``("training", "loss")``; ``generator.norm`` splits."""
    if "." in ref:
        ref_section, _, name = ref.partition(".")
        return ref_section, name
    return section, ref


class _FlowMapping(dict[str, Any]):
    """A parameter's mapping, dumped on one line (``{type: int, low: 2, high: 4}``)."""


class _FlowList(list[Any]):
    """A short list dumped on one line."""


# PyYAML implements YAML 1.1, where `1e-3` (no dot) and `1.0e5` (no sign) are *strings*; YAML 1.2,
# JSON and every user read them as floats, so the loader does too (and the dumper quotes such
# strings so they read back as strings).
EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
EXPONENT_FLOAT_FIRST = list("-+0123456789.")


class _SpaceDumper(yaml.SafeDumper):
    pass


_SpaceDumper.add_implicit_resolver("tag:yaml.org,2002:float", EXPONENT_FLOAT, EXPONENT_FLOAT_FIRST)
_SpaceDumper.add_representer(
    _FlowList,
    lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True),
)
_SpaceDumper.add_representer(
    _FlowMapping,
    lambda dumper, data: dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=True),
)


class _Param(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    when: Annotated[Condition, Field(min_length=1)] | None = None
    """Exists only when each named earlier parameter takes one of its listed values."""

    def is_active(self, values: Mapping[str, Mapping[str, Any]], section: str) -> bool:
        """Whether the condition holds for the values sampled so far (``values[section][name]``)."""
        for ref, allowed in (self.when or {}).items():
            ref_section, name = resolve_ref(ref, section)
            sampled = values.get(ref_section, {})
            if name not in sampled or not any(same_value(sampled[name], v) for v in allowed):
                return False
        return True

    def value_paths(self) -> Iterator[tuple[str, Any]]:
        """Every value this parameter can take that is worth checking, with its path suffix."""
        raise NotImplementedError

    def suggest(self, suggester: Suggester, name: str) -> Any:
        raise NotImplementedError

    def to_data(self) -> Any:
        """Plain data as written in a space file (used by :meth:`SearchSpace.to_yaml`)."""
        data = self.model_dump(mode="json", exclude_defaults=True)
        when = data.pop("when", None)
        data = {"type": data.pop("type"), **data}  # `type` first, `when` last, as written by hand
        if when is not None:
            data["when"] = {k: v[0] if len(v) == 1 else v for k, v in when.items()}
        return _FlowMapping(data)


class CategoricalParam(_Param):
    """``{type: categorical, choices: [a, b, c]}``: one of a list of scalars."""

    type: Literal["categorical"]
    choices: Annotated[tuple[ScalarValue, ...], Field(min_length=1)]

    @field_validator("choices")
    @classmethod
    def _unique(cls, choices: tuple[Scalar, ...]) -> tuple[Scalar, ...]:
        for i, choice in enumerate(choices):
            for j in range(i):
                if same_value(choices[j], choice):
                    raise ValueError(
                        f"expected distinct choices, found {show(choice)} twice "
                        f"(choices[{j}] and choices[{i}])"
                    )
        return choices

    def value_paths(self) -> Iterator[tuple[str, Any]]:
        for i, choice in enumerate(self.choices):
            yield f".choices[{i}]", choice

    def possible_values(self) -> tuple[Scalar, ...]:
        return self.choices

    def suggest(self, suggester: Suggester, name: str) -> Any:
        return suggester.suggest_categorical(name, self.choices)


class IntParam(_Param):
    """``{type: int, low: 2, high: 5, step: 1, log: false}``: an integer in ``[low, high]``."""

    type: Literal["int"]
    low: StrictInt
    high: StrictInt
    step: StrictInt = 1
    log: StrictBool = False

    @model_validator(mode="after")
    def _check_range(self) -> IntParam:
        # The same rules as optuna.distributions.IntDistribution, checked before any trial runs.
        if self.low > self.high:
            raise ValueError(f"`low <= high` must hold, found low={self.low}, high={self.high}")
        if self.step < 1:
            raise ValueError(f"expected `step` >= 1, found step={self.step}")
        if self.log and self.step != 1:
            raise ValueError(
                f"`step` and `log: true` cannot be combined, found step={self.step}, log=true"
            )
        if self.log and self.low < 1:
            raise ValueError(f"`log: true` needs `low >= 1`, found low={self.low}")
        if (self.high - self.low) % self.step:
            raise ValueError(
                f"`step` must divide `high - low`, found low={self.low}, high={self.high}, "
                f"step={self.step}"
            )
        return self

    def value_paths(self) -> Iterator[tuple[str, Any]]:
        count = (self.high - self.low) // self.step + 1
        if count > _MAX_CHECKED_INT_VALUES:
            yield ".low", self.low
            yield ".high", self.high
            return
        yield ".low", self.low
        yield ".high", self.high
        for value in range(self.low + self.step, self.high, self.step):
            yield f" (value {value} of low..high)", value

    def values(self) -> list[int]:
        return list(range(self.low, self.high + 1, self.step))

    def suggest(self, suggester: Suggester, name: str) -> Any:
        return suggester.suggest_int(name, self.low, self.high, step=self.step, log=self.log)


class FloatParam(_Param):
    """``{type: float, low: 1.0e-5, high: 1.0e-3, log: true}`` (or ``step:``): a float in range."""

    type: Literal["float"]
    low: StrictFloat
    high: StrictFloat
    step: StrictFloat | None = None
    log: StrictBool = False

    @model_validator(mode="after")
    def _check_range(self) -> FloatParam:
        # The same rules as optuna.distributions.FloatDistribution.
        for key in ("low", "high", "step"):
            value = getattr(self, key)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"expected a finite `{key}`, found {key}={value}")
        if self.low > self.high:
            raise ValueError(f"`low <= high` must hold, found low={self.low}, high={self.high}")
        if self.step is not None and self.log:
            raise ValueError(
                f"`step` and `log: true` cannot be combined, found step={self.step}, log=true"
            )
        if self.step is not None and self.step <= 0:
            raise ValueError(f"expected `step` > 0, found step={self.step}")
        if self.log and self.low <= 0:
            raise ValueError(f"`log: true` needs `low > 0`, found low={self.low}")
        return self

    def value_paths(self) -> Iterator[tuple[str, Any]]:
        yield ".low", self.low
        yield ".high", self.high

    def values(self) -> list[float]:
        """The grid ``low, low + step, ...`` up to ``high``; only for a float with ``step``."""
        if self.step is None:
            raise ValueError("a float parameter without `step` has no finite list of values")
        count = math.floor((self.high - self.low) / self.step + 1e-9) + 1
        return [round(self.low + i * self.step, 12) for i in range(count)]

    def suggest(self, suggester: Suggester, name: str) -> Any:
        return suggester.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


class FixedParam(_Param):
    """A plain value in the file (``kernel_size: 4``): not searched. ``{type: fixed, value: 4}``
    is the long form, needed only to add a ``when:``."""

    type: Literal["fixed"]
    value: ScalarValue

    def value_paths(self) -> Iterator[tuple[str, Any]]:
        yield "", self.value

    def possible_values(self) -> tuple[Scalar, ...]:
        return (self.value,)

    def suggest(self, suggester: Suggester, name: str) -> Any:
        return self.value

    def to_data(self) -> Any:
        return self.value if self.when is None else super().to_data()


def _to_param_mapping(value: Any) -> Any:
    # A plain scalar is a fixed value; a mapping must say which kind of parameter it is. Checked
    # here so the messages name the fix instead of pydantic's "unable to extract tag".
    if isinstance(value, Mapping):
        if "type" not in value:
            raise ValueError(
                f"missing `type`; expected a mapping with `type:` one of {', '.join(PARAM_TYPES)} "
                f"(or a plain value for a fixed parameter), found {show(value)}"
            )
        kind = value["type"]
        if not isinstance(kind, str) or kind not in PARAM_TYPES:
            raise ValueError(
                f"expected `type:` one of {', '.join(PARAM_TYPES)}, found {show(kind)}"
            )
        return value
    if isinstance(value, (list, tuple)):
        raise ValueError(
            f"expected a plain value or a mapping with `type:`, found {show(value)}; "
            "write `{type: categorical, choices: [...]}` to search over choices"
        )
    return {"type": "fixed", "value": value}


Param = Annotated[
    CategoricalParam | IntParam | FloatParam | FixedParam,
    Field(discriminator="type"),
    BeforeValidator(_to_param_mapping),
]
Section = dict[StrictStr, Param]


def _none_pruner(value: Any) -> Any:
    return "none" if value is None else value  # `pruner: null` reads as "no pruner"


class SearchSettings(BaseModel):
    """How a space is searched by default (the CLI may override): sampler, pruner, objectives."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sampler: SamplerName = "tpe"
    pruner: Annotated[PrunerName, BeforeValidator(_none_pruner)] = "hyperband"
    objectives: Annotated[tuple[ObjectiveName, ...], Field(min_length=1)] = ("fid",)
    """Metrics to optimise (see :data:`OBJECTIVE_DIRECTIONS`); several make it multi-objective."""
    cost_exponent: Annotated[float | None, Field(ge=0, allow_inf_nan=False)] = None
    """How much single-objective TPE prefers candidates predicted to train faster (0: not at
    all); ``None``: gannas's default (``nas.strategies.DEFAULT_TPE_COST_EXPONENT``)."""

    @field_validator("objectives")
    @classmethod
    def _unique(cls, objectives: tuple[str, ...]) -> tuple[str, ...]:
        duplicates = sorted({o for o in objectives if objectives.count(o) > 1})
        if duplicates:
            raise ValueError(f"expected distinct objectives, found {', '.join(duplicates)} twice")
        return objectives

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVE_DIRECTIONS[o] for o in self.objectives]


class QualifiedParam(NamedTuple):
    qualname: str
    """``section.name``, the Optuna parameter name."""
    section: SectionName
    name: str
    param: CategoricalParam | IntParam | FloatParam | FixedParam


class SearchSpace(BaseModel):
    """A validated search space: what is searched for a family's G, D and training."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[StrictStr, Field(min_length=1)]
    description: StrictStr = ""
    family: StrictStr
    """Key into :data:`search_spaces.families.FAMILIES`."""
    generator: Section = Field(default_factory=dict)
    discriminator: Section = Field(default_factory=dict)
    training: Section = Field(default_factory=dict)
    search: SearchSettings = SearchSettings()

    @model_validator(mode="after")
    def _check_meaning(self, info: ValidationInfo) -> SearchSpace:
        # Raised as SpaceError (not ValueError) so it passes through pydantic unchanged with the
        # paths of the problems intact.
        context = info.context if isinstance(info.context, Mapping) else {}
        source = str(context.get("source") or f"search space {self.name!r}")
        problems = _semantic_problems(self)
        if problems:
            raise SpaceError(format_problems(source, problems))
        return self

    @property
    def sections(self) -> dict[SectionName, Section]:
        return {section: getattr(self, section) for section in SECTIONS}

    def parameters(self) -> Iterator[QualifiedParam]:
        """All parameters (fixed ones included) in sampling order: sections, then file order."""
        for section in SECTIONS:
            for name, param in getattr(self, section).items():
                yield QualifiedParam(f"{section}.{name}", section, name, param)

    def parameter(self, qualname: str) -> CategoricalParam | IntParam | FloatParam | FixedParam:
        for p in self.parameters():
            if p.qualname == qualname:
                return p.param
        raise KeyError(qualname)

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name}
        if self.description:
            data["description"] = self.description
        data["family"] = self.family
        for section in SECTIONS:
            params = getattr(self, section)
            if params:
                data[section] = {name: param.to_data() for name, param in params.items()}
        search = self.search.model_dump(mode="json")
        data["search"] = {**search, "objectives": _FlowList(search["objectives"])}
        return data

    def to_yaml(self) -> str:
        """The space as YAML (comments are not kept); :func:`load_space` reads it back equal."""
        return yaml.dump(
            self.to_data(),
            Dumper=_SpaceDumper,
            sort_keys=False,
            default_flow_style=False,
            allow_unicode=True,
            width=100,
        )


# --- checks against the family ----------------------------------------------------------------


def known_families() -> Mapping[str, Family]:
    # Imported at validation time: the family modules may import torch, and the schema must not.
    from search_spaces.families import FAMILIES

    return FAMILIES


def get_family(name: str) -> Family:
    families = known_families()
    if name not in families:
        raise SpaceError(
            f"family: unknown family {name!r}; expected one of: {', '.join(sorted(families))}"
        )
    return families[name]


@functools.lru_cache(maxsize=512)
def _field_adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    # The field's type with its constraints (ge/le/Literal...), so the adapter rejects what the
    # model rejects for this field alone.
    return TypeAdapter(model.model_fields[name].rebuild_annotation())


def _value_problem(model: type[BaseModel], name: str, value: Any) -> str | None:
    """Why ``model.name`` would reject ``value`` (strictly: no "0.1" for a float), or None."""
    try:
        _field_adapter(model, name).validate_python(value, strict=True)
    except ValidationError as err:
        expected = describe_error(err.errors()[0], include_found=False)
        return f"{expected}, found {show(value)} (not accepted by {model.__name__}.{name})"
    return None


def _semantic_problems(space: SearchSpace) -> list[tuple[str, str]]:
    problems = _parameter_problems(space)
    problems.extend(_condition_problems(space))
    problems.extend(_search_problems(space))
    return problems


def _parameter_problems(space: SearchSpace) -> list[tuple[str, str]]:
    """Unknown families and parameters, and values the family's or training's models reject."""
    problems: list[tuple[str, str]] = []
    models: dict[str, type[BaseModel]] = {"training": TrainingConfig}
    families = known_families()
    family = families.get(space.family)
    if family is None:
        problems.append(
            (
                "family",
                f"unknown family {space.family!r}; expected one of: "
                f"{', '.join(sorted(families)) or '(none registered)'}",
            )
        )
    else:
        models["generator"] = family.generator_params
        models["discriminator"] = family.discriminator_params
    for p in space.parameters():
        model = models.get(p.section)
        if model is None:
            continue
        if p.name not in model.model_fields:
            owner = (
                "training" if p.section == "training" else f"family {space.family!r} {p.section}"
            )
            problems.append(
                (
                    p.qualname,
                    f"unknown parameter {p.name!r} for {owner}; expected one of: "
                    f"{', '.join(model.model_fields)}",
                )
            )
            continue
        reported = False
        for suffix, value in p.param.value_paths():
            inner = suffix.startswith(" (value")
            if inner and reported:
                break  # the ends are wrong already, or one inner value is enough to say so
            problem = _value_problem(model, p.name, value)
            if problem is None:
                continue
            reported = True
            if (
                isinstance(p.param, FloatParam)
                and value.is_integer()
                and _value_problem(model, p.name, int(value)) is None
            ):
                problem += "; use `type: int` for an integer parameter"
            problems.append((p.qualname + suffix, problem))
    return problems


_PARAM_ADAPTER: TypeAdapter[Any] = TypeAdapter(Param)


def _parameter_problems_of_the_rest(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """:func:`_parameter_problems` of the parameters that passed the structural validation, for a
    file that failed it elsewhere.

    pydantic checks a space against its family only once its structure is valid, so a file with
    a mistyped range and a choice the family lacks reported the choice only after the range was
    mended. Conditions and search settings are left out here: they may refer to what failed.
    """
    family = data.get("family")
    if not isinstance(family, str):
        return []
    sections: dict[str, dict[str, Any]] = {}
    for section in SECTIONS:
        raw = data.get(section)
        if not isinstance(raw, Mapping):
            continue
        sections[section] = {}
        for name, value in raw.items():
            try:
                sections[section][name] = _PARAM_ADAPTER.validate_python(value)
            except (ValidationError, SpaceError, RecursionError):
                continue  # already reported by the structural validation
    rest = SearchSpace.model_construct(name="", family=family, **sections)
    return _parameter_problems(rest)


def _condition_problems(space: SearchSpace) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    params = list(space.parameters())
    position = {p.qualname: i for i, p in enumerate(params)}
    for index, p in enumerate(params):
        for ref, values in (p.param.when or {}).items():
            path = f"{p.qualname}.when.{ref}"
            ref_section, ref_name = resolve_ref(ref, p.section)
            target = f"{ref_section}.{ref_name}"
            if ref_section not in SECTIONS:
                problems.append(
                    (
                        path,
                        f"unknown section {ref_section!r}; expected a parameter of this section or "
                        f"`section.param` with section one of {', '.join(SECTIONS)}",
                    )
                )
                continue
            earlier = [q.qualname for q in params[:index]]
            if target not in position:
                problems.append(
                    (
                        path,
                        f"the condition refers to {target!r}, which is not a parameter of this "
                        f"space; expected one of the parameters before it: "
                        f"{', '.join(earlier) or '(none)'}",
                    )
                )
                continue
            if position[target] >= index:
                problems.append(
                    (
                        path,
                        f"the condition refers to {target!r}, which is not sampled before "
                        f"{p.qualname!r}; expected an earlier parameter (sections are sampled in "
                        f"the order {', '.join(SECTIONS)}, parameters in file order)",
                    )
                )
                continue
            referenced = params[position[target]].param
            if not isinstance(referenced, (CategoricalParam, FixedParam)):
                problems.append(
                    (
                        path,
                        f"the condition refers to {target!r}, expected a categorical or fixed "
                        f"parameter, found a {referenced.type} parameter",
                    )
                )
                continue
            possible = referenced.possible_values()
            for i, value in enumerate(values):
                if not any(same_value(value, v) for v in possible):
                    problems.append(
                        (
                            path if len(values) == 1 else f"{path}[{i}]",
                            f"expected a possible value of {target} "
                            f"({', '.join(show(v) for v in possible)}), found {show(value)}",
                        )
                    )
    return problems


def _search_problems(space: SearchSpace) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if space.search.sampler == "grid":
        for p in space.parameters():
            if isinstance(p.param, FloatParam) and p.param.step is None:
                problems.append(
                    (
                        "search.sampler",
                        f"the grid sampler needs discrete parameters, found {p.qualname} as a "
                        "continuous float; add `step:` to it or pick another sampler",
                    )
                )
    if space.search.objectives[0] != "fid":
        # Pruners decide on the first objective (gannas prunes multi-objective studies on FID).
        problems.append(
            (
                "search.objectives",
                f"expected 'fid' as the first objective, found {space.search.objectives[0]!r}",
            )
        )
    return problems


# --- turning pydantic errors into one SpaceError ------------------------------------------------

_EXPECTED_BY_TYPE = {
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "finite_number": "expected a finite number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_type": "expected a string",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "tuple_type": "expected a list",
    "list_type": "expected a list",
    "invalid_key": "expected string keys",
}


def describe_error(error: Mapping[str, Any], *, include_found: bool = True) -> str:
    """One pydantic error as ``expected X, found Y`` (without the path)."""
    kind = error["type"]
    message = str(error.get("msg", ""))
    if kind == "value_error":
        return message.removeprefix("Value error, ")
    if kind in ("too_short", "too_long"):
        ctx = error.get("ctx") or {}
        bound = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        expected = f"expected at {'least' if kind == 'too_short' else 'most'} {bound} item(s)"
    elif kind in _EXPECTED_BY_TYPE:
        expected = _EXPECTED_BY_TYPE[kind]
    elif message.startswith("Input should be "):
        expected = "expected " + message.removeprefix("Input should be ")
    else:
        expected = message
    if include_found and "input" in error:
        return f"{expected}, found {show(error['input'])}"
    return expected


def _allowed_keys(loc: Sequence[Any]) -> list[str] | None:
    models: dict[str, type[BaseModel]] = {
        "categorical": CategoricalParam,
        "int": IntParam,
        "float": FloatParam,
        "fixed": FixedParam,
    }
    if not loc:
        return list(SearchSpace.model_fields)
    if tuple(loc) == ("search",):
        return list(SearchSettings.model_fields)
    if len(loc) == 3 and loc[0] in SECTIONS and loc[2] in models:
        fields = [f for f in models[loc[2]].model_fields if f not in ("type", "when")]
        return ["type", *fields, "when"]  # the order they are usually written in
    return None


def format_loc(loc: Sequence[Any]) -> str:
    """``("generator", "norm", "categorical", "choices", 1)`` -> ``generator.norm.choices[1]``."""
    parts = list(loc)
    if len(parts) >= 3 and parts[0] in SECTIONS and parts[2] in PARAM_TYPES:
        del parts[2]  # the union tag pydantic adds; it is already in the file as `type:`
    out = ""
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (a key)"
        else:
            out += ("." if out else "") + str(part)
    return out


def validation_problems(err: ValidationError) -> list[tuple[str, str]]:
    """Each pydantic error as ``(path, "expected ..., found ...")``."""
    problems: list[tuple[str, str]] = []
    errors = err.errors()
    for error in errors:
        loc = error["loc"]
        kind = error["type"]
        if kind == "too_short" and any(
            len(other["loc"]) > len(loc) and other["loc"][: len(loc)] == loc for other in errors
        ):
            continue  # "too short" only because its items failed, which are reported already
        if kind == "invalid_key":
            problems.append((format_loc(loc[:-1]), f"expected string keys, found {show(loc[-1])}"))
        elif kind == "missing":
            problems.append((format_loc(loc), "missing required key"))
        elif kind == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            expected = f"; expected one of: {', '.join(allowed)}" if allowed else ""
            problems.append((format_loc(loc), f"unknown key {show(loc[-1])}{expected}"))
        else:
            problems.append((format_loc(loc), describe_error(error)))
    return problems


def format_problems(source: str, problems: Sequence[tuple[str, str]], *, limit: int = 20) -> str:
    """One line per problem, each naming the source and the field path."""
    lines = [
        f"{source}: {path}: {message}" if path else f"{source}: {message}"
        for path, message in problems[:limit]
    ]
    if len(problems) > limit:
        lines.append(f"{source}: ... and {len(problems) - limit} more problems")
    return "\n".join(lines)


def space_from_data(data: Any, *, source: str) -> SearchSpace:
    """Validate already-parsed YAML data; every problem becomes one :class:`SpaceError`."""
    if data is None:
        raise SpaceError(
            f"{source}: expected a mapping with keys {', '.join(SearchSpace.model_fields)}, "
            "found an empty document"
        )
    if not isinstance(data, Mapping):
        raise SpaceError(
            f"{source}: expected a mapping with keys {', '.join(SearchSpace.model_fields)} at the "
            f"top level, found {show(data)}"
        )
    try:
        return SearchSpace.model_validate(data, context={"source": source})
    except ValidationError as err:
        problems = validation_problems(err)
        try:
            reported = {path for path, _ in problems}
            problems += [
                problem
                for problem in _parameter_problems_of_the_rest(data)
                if problem[0] not in reported
            ]
        except RecursionError:
            pass
        raise SpaceError(format_problems(source, problems)) from None
    except RecursionError:
        raise SpaceError(f"{source}: the document is nested too deeply") from None
