"""CLI commands for the later stages of a search (retrain, Pareto front). Registered on import."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from nas.cli import ArtifactsOpt, StorageOpt, _artifacts_dir, _load_study, app


def _cost_text(name: str, value: float) -> str:
    if name in ("params", "macs"):
        return f"{value:,.0f}"
    if name == "latency":
        return f"{value:.3f} ms"
    return f"{value:.6g}"


def _params_text(params: dict[str, Any]) -> str:
    def fmt(value: Any) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    return " ".join(f"{k}={fmt(v)}" for k, v in params.items())


@app.command()
def pareto(
    study: Annotated[str, typer.Argument(help="Study name (searched with several objectives).")],
    storage: StorageOpt = None,
    plot: Annotated[
        Optional[Path], typer.Option(help="Also write a plot of FID against the cost here (.png, .svg, .pdf ...).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the front as JSON.")] = False,
) -> None:
    """Print the Pareto front (FID against cost) of a multi-objective study."""
    from nas.pareto import completed_trials, objective_names, pareto_front, plot_front

    loaded = _load_study(study, storage)
    front = pareto_front(loaded)
    names = objective_names(loaded)
    # The plot first: a path it cannot write is refused before anything is printed.
    path = plot_front(loaded, plot) if plot is not None else None
    if as_json:
        rows = [
            {
                "number": p.number,
                "fid": p.fid,
                **dict(zip(names[1:], p.costs)),
                "params_g": p.params_g,
                "params": p.params,
            }
            for p in front
        ]
        typer.echo(json.dumps(rows, indent=2))
    else:
        n_done = len(completed_trials(loaded))
        typer.echo(
            f"Pareto front of study {study!r} ({', '.join(names)}): {len(front)} of {n_done} "
            "completed trials"
        )
        cost_names = names[1:]
        header = f"{'trial':>5}  {'FID':>10}  " + "  ".join(f"{n:>14}" for n in cost_names)
        typer.echo(f"{header}  key parameters")
        for p in front:
            costs = "  ".join(f"{_cost_text(n, v):>14}" for n, v in zip(cost_names, p.costs))
            typer.echo(f"{p.number:>5}  {p.fid:>10.4f}  {costs}  {_params_text(p.params)}")
    if path is not None:
        typer.echo(f"wrote {path}", err=as_json)


@app.command()
def retrain(
    study: Annotated[str, typer.Argument(help="Study name (the search to take the best from).")],
    budget: Annotated[
        int, typer.Option(help="Generator steps per retraining (at least the search's).")
    ],
    fid_samples: Annotated[
        int,
        typer.Option(help="Fake samples per FID, at least the search's (50000 for a paper FID)."),
    ],
    top: Annotated[
        int, typer.Option(help="Architectures to retrain: best FID, or Pareto fronts by FID.")
    ] = 5,
    storage: StorageOpt = None,
    artifacts: ArtifactsOpt = None,
    real_samples: Annotated[
        Optional[int],
        typer.Option(
            help="Real samples for the reference statistics (default: the final stage's so far, "
            "else max(--fid-samples, 1000) capped at the dataset)."
        ),
    ] = None,
    eval_points: Annotated[
        Optional[int], typer.Option(help="FID evaluations per retraining (default: the search's).")
    ] = None,
    executor: Annotated[
        str, typer.Option(help="ray, or inline (one at a time, in-process).")
    ] = "ray",
    workers: Annotated[int, typer.Option(help="Retrainings running at once.")] = 2,
    cpus_per_trial: Annotated[float, typer.Option(help="CPUs each retraining reserves.")] = 1.0,
    gpus_per_trial: Annotated[
        Optional[float], typer.Option(help="GPUs per retraining (default: 1 if a GPU exists).")
    ] = None,
    address: Annotated[
        Optional[str], typer.Option(help="Ray cluster to join: auto or ray://host:port.")
    ] = None,
    device: Annotated[
        Optional[str], typer.Option(help="cpu, cuda, cuda:1 (default: auto).")
    ] = None,
    dataset: Annotated[
        Optional[str], typer.Option(help="Where the study's dataset is now (default: as stored).")
    ] = None,
    data_root: Annotated[
        Optional[str], typer.Option(help="Where torchvision datasets live.")
    ] = None,
    feature_extractor: Annotated[
        Optional[str], typer.Option(help="Where the study's TorchScript extractor is now.")
    ] = None,
    inception_weights: Annotated[
        Optional[str], typer.Option(help="Local FID Inception weights file.")
    ] = None,
    allow_unverified_weights: Annotated[
        bool, typer.Option(help="Accept a weights file whose sha256 differs.")
    ] = False,
    max_retries: Annotated[
        int, typer.Option(help="Retries of a retraining whose worker died.")
    ] = 2,
    heartbeat_interval: Annotated[int, typer.Option(help="Seconds between heartbeats.")] = 5,
    grace_period: Annotated[
        int, typer.Option(help="Seconds without heartbeat after which a trial counts as lost.")
    ] = 20,
    seed: Annotated[int, typer.Option(help="Seed of each retraining (plus its trial number).")] = 0,
) -> None:
    """Retrain the best architectures of a study longer and re-score them (the final stage)."""
    from nas.progress import RichProgress
    from nas.retrain import retrain_top
    from nas.settings import WhereToRun

    where = WhereToRun(
        storage=storage,
        artifacts=_artifacts_dir(artifacts),
        address=address,
        executor=executor,
        workers=workers,
        cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial,
        device=device,
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        # Every retrained generator is a candidate for export: keep all their checkpoints.
        keep_checkpoints=max(top, 1),
    )
    with RichProgress() as progress:
        summary = retrain_top(
            study,
            top=top,
            budget=budget,
            fid_samples=fid_samples,
            where=where,
            real_samples=real_samples,
            eval_points=eval_points,
            seed=seed,
            dataset=dataset,
            data_root=data_root,
            feature_extractor=feature_extractor,
            inception_weights=inception_weights or os.environ.get("GANNAS_INCEPTION_WEIGHTS"),
            allow_unverified_weights=allow_unverified_weights,
            max_retries=max_retries,
            progress=progress.sink(),
        )
    for note in summary.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(
        f"final stage {summary.final_study!r}: {len(summary.architectures)} architecture(s), "
        f"{summary.budget} steps, {summary.fid_samples} FID samples"
    )
    typer.echo(f"{'source':>6}  {'search FID':>10}  {'final FID':>10}  {'final trial':>11}  state")
    for a in summary.architectures:
        final_fid = f"{a.final_fid:.4f}" if a.final_fid is not None else "-"
        number = str(a.final_number) if a.final_number is not None else "-"
        typer.echo(
            f"{a.source_number:>6}  {a.search_fid:>10.4f}  {final_fid:>10}  {number:>11}  {a.state}"
        )

from nas import worker_cmd as _worker_cmd  # noqa: E402,F401
