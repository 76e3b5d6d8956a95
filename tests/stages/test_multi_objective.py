"""Multi-objective searches (FID and generator size), their pruning, and ``gannas pareto``."""

from __future__ import annotations


import optuna
import pytest
from optuna.study import StudyDirection
from optuna.trial import TrialState

from nas import attrs
from nas.cli import main
from nas.controller import run_search
from nas.pareto import NoParetoFront, nondominated_fronts, pareto_front, rank_trials
from search_spaces import ArchConfig, build_generator, count_parameters


def _dominated(values: list[float], others: list[list[float]]) -> bool:
    return any(
        all(o <= v for o, v in zip(other, values)) and any(o < v for o, v in zip(other, values))
        for other in others
    )


def test_fid_params_search_stores_both_values_and_pareto_prints_the_front(
    tiny_search, storage_url, tmp_path, capsys
):
    what, how, where = tiny_search(trials=5, objectives=("fid", "params"), artifacts=False)
    run_search(what, how, where)

    study = optuna.load_study(study_name="tiny", storage=storage_url)
    assert study.directions == [StudyDirection.MINIMIZE, StudyDirection.MINIMIZE]
    assert study.metric_names == ["fid", "params"]
    done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert len(done) >= 2
    for t in done:
        params_g = t.user_attrs[attrs.PARAMS_G]
        assert t.values == [pytest.approx(t.user_attrs[attrs.FID]), float(params_g)]
        arch = ArchConfig.model_validate(t.user_attrs[attrs.ARCH])
        assert count_parameters(build_generator(arch)) == params_g

    png = tmp_path / "front.png"
    assert main(["pareto", "tiny", "--storage", storage_url, "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    # A plot that cannot be written is one line naming the path; nothing is left behind.
    for bad, reason in (
        (tmp_path / "front.png" / "x.png", "Not a directory"),
        (tmp_path / "new" / "front.jpeg2", "cannot write '.jpeg2' files"),
    ):
        assert main(["pareto", "tiny", "--storage", storage_url, "--plot", str(bad)]) == 2
        refused = capsys.readouterr()
        err = refused.err.strip()
        assert len(err.splitlines()) == 1 and reason in err and str(bad) in err, err
        assert refused.out == ""  # refused before the front is printed, not after
    assert not (tmp_path / "new").exists()
    svg = tmp_path / "front.svg"
    assert main(["pareto", "tiny", "--storage", storage_url, "--plot", str(svg)]) == 0
    assert svg.read_text().lstrip().startswith("<?xml")
    capsys.readouterr()
    rows = {}
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[0].isdigit():
            rows[int(fields[0])] = fields
    expected = {
        t.number
        for t in done
        if not _dominated(t.values, [o.values for o in done if o.number != t.number])
    }
    assert set(rows) == expected
    for number in expected:
        trial = next(t for t in done if t.number == number)
        fields = rows[number]
        assert float(fields[1]) == pytest.approx(trial.values[0], abs=1e-4)
        assert int(fields[2].replace(",", "")) == trial.user_attrs[attrs.PARAMS_G]
        assert f"base_width={trial.params['generator.base_width']}" in fields
        assert f"loss={trial.params['training.loss']}" in fields
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 5000


def test_front_and_ranking_of_a_known_study(storage_url, capsys):
    study = optuna.create_study(
        storage=storage_url, study_name="known", directions=["minimize", "minimize"]
    )
    points = [(3.0, 1.0), (1.0, 10.0), (2.0, 5.0), (4.0, 4.0), (2.5, 6.0), (5.0, 0.5), (2.0, 7.0)]
    for fid, size in points:
        study.add_trial(optuna.trial.create_trial(values=[fid, size], state=TrialState.COMPLETE))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))

    assert [p.number for p in pareto_front(study)] == [1, 2, 0, 5]  # by FID
    fronts = nondominated_fronts(study.get_trials(states=(TrialState.COMPLETE,)), study.directions)
    assert [[t.number for t in f] for f in fronts] == [[1, 2, 0, 5], [6, 4, 3]]
    assert [t.number for t in rank_trials(study)] == [1, 2, 0, 5, 6, 4, 3]

    assert main(["pareto", "known", "--storage", storage_url, "--json"]) == 0
    import json

    rows = json.loads(capsys.readouterr().out)
    assert [(r["number"], r["fid"]) for r in rows] == [(1, 1.0), (2, 2.0), (0, 3.0), (5, 5.0)]


def test_pareto_of_a_single_objective_study_is_a_one_line_error(storage_url, capsys):
    study = optuna.create_study(storage=storage_url, study_name="single")
    study.add_trial(optuna.trial.create_trial(value=1.0, state=TrialState.COMPLETE))
    with pytest.raises(NoParetoFront):
        pareto_front(study)

    code = main(["pareto", "single", "--storage", storage_url])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1
    assert err.startswith("error: ") and "'single' optimizes one objective" in err
    assert "not a Pareto front" in err


@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_multi_objective_search_prunes_on_fid(tiny_search, storage_url, pruner):
    # Every Hyperband bracket has a rung before the budget (nas.strategies.hyperband_last_rung),
    # so Hyperband, like the median pruner, must stop every new trial.
    n_new = 2
    what, how, where = tiny_search(
        trials=6 + n_new, objectives=("fid", "params"), pruner=pruner, artifacts=False
    )
    # Six excellent finished trials at every evaluation step (5 and 10 for a budget of 10): any
    # new trial is behind them at its first evaluation and must be stopped there. Hyperband ranks
    # trials by the rung values its successive-halving brackets record, so those are set too.
    study = optuna.create_study(
        storage=storage_url, study_name="tiny", directions=["minimize", "minimize"]
    )
    for _ in range(6):
        study.add_trial(
            optuna.trial.create_trial(
                values=[1e-6, 1.0],
                intermediate_values={5: 1e-6, 10: 1e-6},
                system_attrs={"completed_rung_0": 1e-6},
                state=TrialState.COMPLETE,
            )
        )
    summary = run_search(what, how, where)
    assert summary.trials_run_now == n_new

    new = optuna.load_study(study_name="tiny", storage=storage_url).get_trials()[6:]
    assert len(new) == n_new
    pruned = [t for t in new if t.state == TrialState.PRUNED]
    assert pruned == new, [(t.state, t.user_attrs.get(attrs.FAIL_REASON)) for t in new]
    for t in pruned:
        assert list(t.intermediate_values) == [5]
        assert t.intermediate_values[5] == pytest.approx(t.user_attrs[attrs.FID])
        assert t.user_attrs[attrs.STATUS] == "stopped"
