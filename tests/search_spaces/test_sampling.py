"""Sampling: inclusive bounds, conditions, family defaults, validation, Optuna trials."""

from __future__ import annotations

import json
import math

import optuna
import pytest

from gannas.errors import SpaceError
from search_spaces import (
    ArchConfig,
    RandomSuggester,
    Suggester,
    TrainingConfig,
    resolve_space,
    sample_config,
    space_distributions,
    space_from_text,
    space_grid_points,
)

SEEDS = range(200)
HEADER = "name: t\nfamily: toy\n"


def test_random_suggester_is_a_suggester() -> None:
    assert isinstance(RandomSuggester(0), Suggester)


def test_int_bounds_are_inclusive() -> None:
    seen = {RandomSuggester(seed).suggest_int("x", 1, 3) for seed in SEEDS}
    assert seen == {1, 2, 3}
    stepped = {RandomSuggester(seed).suggest_int("x", 8, 32, step=8) for seed in SEEDS}
    assert stepped == {8, 16, 24, 32}


def test_log_int_bounds_are_inclusive() -> None:
    seen = {RandomSuggester(seed).suggest_int("x", 1, 4, log=True) for seed in SEEDS}
    assert seen == {1, 2, 3, 4}


def test_float_suggestions_stay_in_range() -> None:
    for seed in SEEDS:
        rng = RandomSuggester(seed)
        assert 0.25 <= rng.suggest_float("a", 0.25, 0.5) <= 0.5
        assert 1e-5 <= rng.suggest_float("b", 1e-5, 1e-3, log=True) <= 1e-3


def test_log_float_spreads_over_decades() -> None:
    values = [RandomSuggester(seed).suggest_float("x", 1e-5, 1e-3, log=True) for seed in SEEDS]
    below = sum(v < 1e-4 for v in values)  # the lower decade holds half of a log-uniform draw
    assert 60 < below < 140


def test_stepped_float_hits_both_ends() -> None:
    seen = {RandomSuggester(seed).suggest_float("x", 0.0, 1.0, step=0.5) for seed in SEEDS}
    assert seen == {0.0, 0.5, 1.0}


def test_categorical_hits_every_choice_and_names_are_sticky() -> None:
    seen = {RandomSuggester(seed).suggest_categorical("x", ["a", "b", None]) for seed in SEEDS}
    assert seen == {"a", "b", None}
    rng = RandomSuggester(3)
    first = rng.suggest_int("y", 0, 1000)
    assert all(rng.suggest_int("y", 0, 1000) == first for _ in range(5))
    assert rng.params == {"y": first}


def test_sample_config_fills_family_defaults(toy_text: str) -> None:
    space = space_from_text(toy_text)
    cfg = sample_config(space, RandomSuggester(0), resolution=32, channels=3)
    assert isinstance(cfg, ArchConfig)
    assert (cfg.family, cfg.resolution, cfg.channels) == ("toy", 32, 3)
    # Every field of the family's models, including those the space does not mention.
    assert set(cfg.generator) == {
        "latent_dim",
        "depth",
        "width",
        "kernel",
        "norm",
        "activation",
        "dropout",
        "skip",
    }
    assert cfg.generator["kernel"] == 3 and cfg.generator["latent_dim"] == 8
    assert set(cfg.discriminator) == {"width", "spectral_norm", "activation"}
    assert cfg.discriminator["activation"] == "leaky_relu"
    assert isinstance(cfg.training, TrainingConfig) and cfg.training.batch_size == 64
    assert 1 <= cfg.generator["depth"] <= 3 and 4 <= cfg.discriminator["width"] <= 64
    assert cfg.generator["dropout"] in (0.0, 0.25, 0.5)
    # Plain JSON, and back to an equal config.
    data = json.loads(json.dumps(cfg.model_dump(mode="json")))
    assert ArchConfig.model_validate(data) == cfg


def test_suggester_is_asked_with_qualified_names(toy_text: str) -> None:
    rng = RandomSuggester(1)
    cfg = sample_config(space_from_text(toy_text), rng, resolution=32, channels=1)
    assert all(
        name.split(".")[0] in ("generator", "discriminator", "training") for name in rng.params
    )
    assert rng.params["generator.depth"] == cfg.generator["depth"]
    assert rng.params["training.lr_g"] == cfg.training.lr_g
    assert "generator.latent_dim" not in rng.params  # fixed values are not searched


def test_same_seed_same_config_other_seeds_differ(toy_text: str) -> None:
    space = space_from_text(toy_text)
    configs = [
        sample_config(space, RandomSuggester(s), resolution=32, channels=3) for s in range(6)
    ]
    again = sample_config(space, RandomSuggester(0), resolution=32, channels=3)
    assert again == configs[0]
    assert len({json.dumps(c.model_dump(mode="json"), sort_keys=True) for c in configs}) > 1


def test_conditional_parameters_are_active_only_when_their_condition_holds(toy_text: str) -> None:
    space = space_from_text(toy_text)
    branches = set()
    for seed in range(40):
        rng = RandomSuggester(seed)
        cfg = sample_config(space, rng, resolution=32, channels=3)
        wgan = cfg.training.loss == "wgan_gp"
        batch = cfg.generator["norm"] == "batch"
        branches.add((wgan, batch))
        assert ("training.gp_weight" in rng.params) == wgan
        if wgan:
            assert 1.0 <= cfg.training.gp_weight <= 20.0
            assert cfg.training.gp_weight == rng.params["training.gp_weight"]
        else:
            assert cfg.training.gp_weight == TrainingConfig().gp_weight  # the default
        # A condition on another section, and a conditional fixed value.
        assert ("discriminator.spectral_norm" in rng.params) == batch
        if not batch:
            assert cfg.discriminator["spectral_norm"] is False
        assert cfg.generator["skip"] is (not batch)
    assert branches == {(True, True), (True, False), (False, True), (False, False)}


def test_conditions_chain_through_inactive_parameters(toy_family: object) -> None:
    text = HEADER + (
        "generator:\n"
        "  norm: {type: categorical, choices: [batch, none]}\n"
        "  activation: {type: categorical, choices: [relu, elu], when: {norm: none}}\n"
        "  skip: {type: categorical, choices: [true, false], when: {activation: elu}}\n"
    )
    space = space_from_text(text)
    for seed in range(40):
        rng = RandomSuggester(seed)
        sample_config(space, rng, resolution=16, channels=1)
        if rng.params["generator.norm"] == "batch":
            assert "generator.activation" not in rng.params
            assert "generator.skip" not in rng.params
        else:
            active = rng.params["generator.activation"] == "elu"
            assert ("generator.skip" in rng.params) == active


def test_family_model_rules_are_space_errors(toy_family: object) -> None:
    space = space_from_text(HEADER + "generator:\n  norm: batch\n  depth: 4\n")
    with pytest.raises(SpaceError) as info:
        sample_config(space, RandomSuggester(0), resolution=32, channels=3)
    message = str(info.value)
    assert message.startswith("search space 't': sampled configuration: generator: ")
    assert "batch norm needs depth <= 3" in message


def test_unbuildable_resolution_is_a_space_error(toy_family: object) -> None:
    space = space_from_text(HEADER + "generator:\n  depth: 3\n  norm: none\n")
    with pytest.raises(SpaceError, match="cannot be built at resolution 20: toy depth 3"):
        sample_config(space, RandomSuggester(0), resolution=20, channels=3)


@pytest.mark.parametrize(("resolution", "channels"), [(0, 3), (32, 2), (32, True)])
def test_bad_resolution_or_channels(toy_text: str, resolution: int, channels: int) -> None:
    with pytest.raises(SpaceError, match="expected"):
        sample_config(
            space_from_text(toy_text), RandomSuggester(0), resolution=resolution, channels=channels
        )


def test_an_optuna_trial_is_a_suggester(toy_text: str) -> None:
    space = space_from_text(toy_text)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        assert isinstance(trial, Suggester)
        cfg = sample_config(space, trial, resolution=32, channels=3)
        assert trial.params["generator.depth"] == cfg.generator["depth"]
        assert trial.params["discriminator.width"] == cfg.discriminator["width"]
        assert math.isclose(trial.params["training.lr_g"], cfg.training.lr_g)
        assert ("training.gp_weight" in trial.params) == (cfg.training.loss == "wgan_gp")
        assert "generator.latent_dim" not in trial.params
        study.tell(trial, 1.0)
    assert len(study.trials) == 5


def test_builtin_space_with_optuna_tpe() -> None:
    space = resolve_space("dcgan")
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=2))
    for i in range(4):
        trial = study.ask()
        cfg = sample_config(space, trial, resolution=32, channels=3)
        assert set(trial.params) >= {"generator.depth", "training.loss", "discriminator.width"}
        study.tell(trial, float(cfg.generator["depth"] + i))


def test_space_distributions_for_a_grid(toy_family: object) -> None:
    text = HEADER + (
        "generator:\n"
        "  latent_dim: 8\n"
        "  depth: {type: int, low: 1, high: 3}\n"
        "  norm: {type: categorical, choices: [batch, none]}\n"
        "  dropout: {type: float, low: 0.0, high: 0.5, step: 0.25}\n"
        "search: {sampler: grid}\n"
    )
    space = space_from_text(text)
    grid = space_distributions(space)
    assert grid == {
        "generator.depth": [1, 2, 3],
        "generator.norm": ["batch", "none"],
        "generator.dropout": [0.0, 0.25, 0.5],
    }
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(grid, seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        cfg = sample_config(space, trial, resolution=16, channels=1)
        seen.add((cfg.generator["depth"], cfg.generator["norm"], cfg.generator["dropout"]))
        study.tell(trial, 0.0)
    assert len(seen) == 12  # the full 3 x 2 x 3 grid has 18 points, none repeated


def test_space_distributions_rejects_continuous_floats(toy_text: str) -> None:
    with pytest.raises(SpaceError, match=r"training\.lr_g: expected a discrete parameter"):
        space_distributions(space_from_text(toy_text))


def test_grid_points_count_a_conditional_parameter_only_where_it_is_used(toy_family: object) -> None:
    text = HEADER + (
        "generator:\n"
        "  depth: {type: int, low: 1, high: 2}\n"
        "  norm: {type: categorical, choices: [batch, none]}\n"
        "  activation: {type: categorical, choices: [relu, elu], when: {norm: none}}\n"
        "  skip: {type: categorical, choices: [true, false], when: {activation: elu}}\n"
        "  dropout: {type: fixed, value: 0.0, when: {norm: batch}}\n"
    )
    space = space_from_text(text)
    points = space_grid_points(space)
    # depth (2) x [batch | none+relu | none+elu+skip (2)] = 2 x 4; the product of every
    # parameter's values would have 2 x 2 x 2 x 2 = 16 points, half of them duplicates.
    assert len(points) == 8
    assert len({json.dumps(p, sort_keys=True) for p in points}) == 8
    for point in points:
        assert ("generator.activation" in point) == (point["generator.norm"] == "none")
        assert ("generator.skip" in point) == (point.get("generator.activation") == "elu")
        assert "generator.dropout" not in point  # fixed: not searched
        # Each point is exactly what a trial that suggests these values samples.
        rng = RandomSuggester(0)
        rng.params.update(point)
        sample_config(space, rng, resolution=16, channels=1)
        assert rng.params == point
    with pytest.raises(SpaceError, match="more than 5 grid points"):
        space_grid_points(space, max_points=5)


def test_grid_points_reject_continuous_floats(toy_text: str) -> None:
    with pytest.raises(SpaceError, match=r"training\.lr_g: expected a discrete parameter"):
        space_grid_points(space_from_text(toy_text))
