"""The ``gannas`` command line. Each command calls the public API only.

Errors the user can fix print one line (``error: ...``) and exit with code 2; a traceback is shown
only for internal errors, and only with ``GANNAS_DEBUG=1``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from gannas.errors import GannasError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Neural architecture search for GANs: search, inspect, export and score generators.",
    pretty_exceptions_enable=False,
)
spaces_app = typer.Typer(no_args_is_help=True, help="List, show and validate search spaces.")
app.add_typer(spaces_app, name="spaces")

StorageOpt = Annotated[
    Optional[str],
    typer.Option(
        "--storage",
        help="Study database URL (default: $GANNAS_STORAGE, else sqlite:///gannas.db here).",
    ),
]
ArtifactsOpt = Annotated[
    Optional[str],
    typer.Option(
        "--artifacts",
        help="Artifact store: a directory or s3://bucket/prefix "
        "(default: $GANNAS_ARTIFACTS, else ./gannas_artifacts).",
    ),
]


def _echo_err(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


# --------------------------------------------------------------------------- search


@app.command()
def search(
    space: Annotated[str, typer.Option(help="Built-in space name (dcgan, autogan) or a YAML file.")],
    dataset: Annotated[
        str, typer.Option(help="digits, cifar10, mnist, fashion-mnist, a folder or an .npz file.")
    ],
    trials: Annotated[int, typer.Option(help="Finished trials the study must reach.")],
    study: Annotated[Optional[str], typer.Option(help="Study name (default: space-dataset-res).")] = None,
    storage: StorageOpt = None,
    artifacts: ArtifactsOpt = None,
    budget: Annotated[int, typer.Option(help="Generator steps per trial.")] = 300,
    eval_points: Annotated[int, typer.Option(help="FID evaluations per trial.")] = 3,
    fid_samples: Annotated[int, typer.Option(help="Fake samples per FID evaluation.")] = 500,
    real_samples: Annotated[
        Optional[int], typer.Option(help="Real samples for the reference statistics.")
    ] = None,
    metrics: Annotated[
        Optional[str],
        typer.Option(help="Comma-separated fid, kid, is (default: all three; fid,kid with --feature-extractor)."),
    ] = None,
    resolution: Annotated[int, typer.Option(help="Image resolution (16, 32, 64, ...).")] = 32,
    channels: Annotated[Optional[int], typer.Option(help="1 or 3 (default: the dataset's).")] = None,
    sampler: Annotated[
        Optional[str], typer.Option(help="tpe, random, nsga2, evolution, grid (default: the space's).")
    ] = None,
    pruner: Annotated[
        Optional[str],
        typer.Option(help="none, median, successive_halving, hyperband (default: the space's)."),
    ] = None,
    objectives: Annotated[
        Optional[str],
        typer.Option(help="fid, or fid plus costs: fid,params | fid,macs | fid,latency | fid,params,latency ... (default: the space's)."),
    ] = None,
    cost_exponent: Annotated[
        Optional[float],
        typer.Option(
            help="How much TPE prefers architectures that train faster: 0 off, 1 improvement per "
            "second (default: the space's, else gannas's). Single-objective tpe only.",
        ),
    ] = None,
    workers: Annotated[int, typer.Option(help="Trials running at once.")] = 2,
    cpus_per_trial: Annotated[float, typer.Option(help="CPUs each trial reserves.")] = 1.0,
    gpus_per_trial: Annotated[
        Optional[float], typer.Option(help="GPUs per trial; fractions pack trials (default: 1 if a GPU exists).")
    ] = None,
    address: Annotated[
        Optional[str], typer.Option(help="Ray cluster to join: auto or ray://host:port.")
    ] = None,
    executor: Annotated[str, typer.Option(help="ray, or inline (one trial at a time, in-process).")] = "ray",
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1 or auto (default: auto, the GPU when there is one).")] = None,
    inception_weights: Annotated[
        Optional[str], typer.Option(help="Local FID Inception weights file (else hub cache/download).")
    ] = None,
    allow_unverified_weights: Annotated[
        bool, typer.Option(help="Accept a weights file whose sha256 differs; recorded as unverified.")
    ] = False,
    feature_extractor: Annotated[
        Optional[str], typer.Option(help="TorchScript feature extractor replacing Inception-v3.")
    ] = None,
    data_root: Annotated[Optional[str], typer.Option(help="Where torchvision datasets live.")] = None,
    keep_checkpoints: Annotated[int, typer.Option(help="Keep generator checkpoints of the best N trials.")] = 5,
    max_retries: Annotated[int, typer.Option(help="Retries of a trial whose worker died.")] = 2,
    heartbeat_interval: Annotated[int, typer.Option(help="Seconds between trial heartbeats.")] = 5,
    grace_period: Annotated[
        int, typer.Option(help="Seconds without heartbeat after which a trial counts as lost.")
    ] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the sampler and of each trial.")] = 0,
    tensorboard: Annotated[
        Optional[str],
        typer.Option(
            metavar="DIR",
            help="Also write per-trial TensorBoard scalars under DIR/<study>/trial_<n>/.",
        ),
    ] = None,
) -> None:
    """Run (or continue) an architecture search until the study has N finished trials."""
    if tensorboard is not None:
        from nas.tensorboard import require_tensorboard

        require_tensorboard()  # before any trial runs, not as a warning in every worker
    from nas.controller import run_search
    from nas.progress import RichProgress
    from nas.settings import HowToSearch, ScoringSettings, WhatToSearch, WhereToRun

    what = WhatToSearch(
        space=space,
        dataset=dataset,
        resolution=resolution,
        channels=channels,
        budget=budget,
        eval_points=eval_points,
        scoring=ScoringSettings(
            fid_samples=fid_samples,
            real_samples=real_samples,
            inception_weights=inception_weights or os.environ.get("GANNAS_INCEPTION_WEIGHTS"),
            allow_unverified_weights=allow_unverified_weights,
            feature_extractor=feature_extractor,
            metrics=_comma_list(metrics),
        ),
        data_root=data_root,
        seed=seed,
    )
    how = HowToSearch(
        trials=trials,
        study=study,
        sampler=sampler,
        pruner=pruner,
        objectives=_comma_list(objectives),
        max_retries=max_retries,
        cost_exponent=cost_exponent,
    )
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
        keep_checkpoints=keep_checkpoints,
        tensorboard=str(Path(tensorboard).resolve()) if tensorboard is not None else None,
    )
    with RichProgress() as progress:
        summary = run_search(what, how, where, progress=progress.sink())
    best = (
        f"best trial {summary.best_number} with FID {summary.best_value:.4f}"
        if summary.best_value is not None
        else "no completed trial yet"
    )
    states = ", ".join(f"{k} {v}" for k, v in sorted(summary.states.items()))
    counted = (
        f"{summary.finished}/{summary.target}"
        if summary.finished <= summary.target
        else f"{summary.finished} (--trials {summary.target})"
    )
    typer.echo(
        f"study {summary.study_name!r} in {summary.storage}: {counted} finished ({states}); {best}"
    )


def _comma_list(text: str | None) -> tuple[str, ...] | None:
    """``None`` when the option was not given (the default applies); an option given as ``''``
    is an empty list, refused by the checks, not taken for the default."""
    if text is None:
        return None
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _artifacts_dir(artifacts: str | None) -> str:
    return artifacts or os.environ.get("GANNAS_ARTIFACTS") or str(Path("gannas_artifacts").resolve())


# --------------------------------------------------------------------------- spaces


@spaces_app.command("list")
def spaces_list() -> None:
    """List the built-in search spaces."""
    from search_spaces import builtin_space_names, resolve_space

    for name in builtin_space_names():
        space = resolve_space(name)
        typer.echo(f"{name:10s} {space.description}")


@spaces_app.command("show")
def spaces_show(name: Annotated[str, typer.Argument(help="Built-in name or YAML file.")]) -> None:
    """Print a search space as YAML."""
    from search_spaces import builtin_space_names, builtin_space_text, resolve_space

    if name in builtin_space_names():
        typer.echo(builtin_space_text(name))  # the file itself, comments included
    else:
        typer.echo(resolve_space(name).to_yaml())


@spaces_app.command("validate")
def spaces_validate(
    path: Annotated[str, typer.Argument(help="YAML file to check, or a built-in name.")],
) -> None:
    """Check a search-space file; prints what was wrong, or a summary of the space."""
    from search_spaces import FixedParam, resolve_space

    space = resolve_space(path)  # the same lookup as `spaces show` and `search`
    params = list(space.parameters())
    fixed = sum(isinstance(p.param, FixedParam) for p in params)
    typer.echo(
        f"ok: {path}: space {space.name!r} (family {space.family}), "
        f"{len(params) - fixed} searched parameter(s), {fixed} fixed"
    )


# --------------------------------------------------------------------------- studies


@app.command()
def studies(storage: StorageOpt = None) -> None:
    """List the studies in the database with their trial counts and best FID."""
    import optuna

    from nas.pareto import completed_trials
    from nas.study_state import count_finished
    from storage import open_storage, resolve_storage_url

    db = open_storage(resolve_storage_url(storage, must_exist=True))  # never create a database
    summaries = optuna.get_all_study_summaries(db)
    if not summaries:
        typer.echo("no studies")
        return
    for s in summaries:
        study = optuna.load_study(study_name=s.study_name, storage=db)
        finished = count_finished(study.get_trials(deepcopy=False))
        # The FID is the first objective, always minimised. A multi-objective study has no
        # best_trial, but its best FID is still the lowest first value of a completed trial.
        fids = [t.values[0] for t in completed_trials(study)]
        best = min(fids) if fids else None
        best_text = f"{best:.4f}" if best is not None else "-"
        typer.echo(f"{s.study_name}\ttrials={s.n_trials}\tfinished={finished}\tbest_fid={best_text}")


def _load_study(name: str, storage: str | None) -> Any:
    import optuna

    from storage import open_storage, redact_url, resolve_storage_url

    url = resolve_storage_url(storage, must_exist=True)  # reading: never create a database
    db = open_storage(url)
    try:
        return optuna.load_study(study_name=name, storage=db)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(db)]
        raise GannasError(
            f"no study named {name!r} in {redact_url(url)}; studies there: "
            f"{', '.join(names) if names else 'none'}"
        ) from None


@app.command("trials")
def trials_cmd(
    study: Annotated[str, typer.Argument(help="Study name.")],
    storage: StorageOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List a study's trials: state, final FID, parameters and stored attributes."""
    from nas.study_state import trial_summary

    loaded = _load_study(study, storage)
    rows = [trial_summary(t) for t in loaded.get_trials(deepcopy=False)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    for r in rows:
        value = f"{r['value']:.4f}" if isinstance(r["value"], (int, float)) else "-"
        extra = f"  ({r['fail_reason']})" if r["fail_reason"] else ""
        sizes = f"G={r['params_g']}  D={r['params_d']}"
        typer.echo(f"{r['number']:4d}  {r['state']:8s}  fid={value:>10s}  {sizes}{extra}")


# --------------------------------------------------------------------------- dashboard


@app.command()
def dashboard(
    storage: StorageOpt = None,
    artifacts: ArtifactsOpt = None,
    host: Annotated[str, typer.Option(help="Address to bind; loopback unless told otherwise.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on.", min=1, max=65535)] = 8080,
) -> None:
    """Serve optuna-dashboard on the study database and the artifact store."""
    import errno
    import socket

    from optuna_dashboard import run_server

    from gannas._files import describe_os_error
    from storage import open_storage, redact_url, resolve_storage_url
    from storage.artifacts import make_artifact_store

    # A dashboard only reads: a missing database or store is a typo, not something to create.
    url = resolve_storage_url(storage, must_exist=True)
    store = make_artifact_store(_artifacts_dir(artifacts), create=False)
    db = open_storage(url)
    try:
        # Bind once first: the server announces "Listening on ..." before it binds, so a busy port
        # would otherwise print that line and then fail. Same address family as bottle's server.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
            probe.bind((host, port))
        typer.echo(f"optuna-dashboard on http://{host}:{port} for {redact_url(url)}", err=True)
        run_server(db, host=host, port=port, artifact_store=store)
    except OSError as exc:  # binding failed: errors while serving are handled per request
        in_use = exc.errno == errno.EADDRINUSE
        hint = "choose another --port" if in_use else "check --host and --port"
        raise GannasError(
            f"cannot serve the dashboard on {host}:{port}: {describe_os_error(exc)}; {hint}"
        ) from None


# --------------------------------------------------------------------------- export / sample


@app.command()
def export(
    study: Annotated[str, typer.Argument(help="Study name.")],
    out: Annotated[Path, typer.Option(help="Directory to write (must not exist or be empty).")],
    trial: Annotated[Optional[int], typer.Option(help="Trial number (default: the best).")] = None,
    storage: StorageOpt = None,
    artifacts: ArtifactsOpt = None,
    fmt: Annotated[
        list[str],
        typer.Option("--format", help="Extra formats: torchscript, onnx (repeatable)."),
    ] = [],  # noqa: B006 - typer needs a literal default
    overwrite: Annotated[bool, typer.Option(help="Replace an existing export.")] = False,
) -> None:
    """Export a trial's generator: safetensors weights, architecture, FID protocol, provenance."""
    from nas.export import export_trial
    from nas.pareto import completed_trials
    from storage import read_metadata

    loaded = _load_study(study, storage)
    path = export_trial(
        loaded,
        out,
        trial_number=trial,
        artifacts=_artifacts_dir(artifacts),
        formats=tuple(fmt),
        overwrite=overwrite,
    )
    metadata = read_metadata(path)
    source, fid = metadata["provenance"], metadata["score"].get("fid")
    fid_text = f", FID {fid:.4f}" if isinstance(fid, int | float) else ""
    typer.echo(f"exported trial {source['trial']} of study {source['study']!r}{fid_text} to {path}")
    if trial is None and source["study"] == loaded.study_name:
        # The default is the best trial that still has a checkpoint; say so when a better one
        # lost its checkpoint (--keep-checkpoints), rather than export another trial silently.
        done = completed_trials(loaded)
        best = min(done, key=lambda t: t.values[0]) if done else None
        if best is not None and best.number != source["trial"]:
            typer.echo(
                f"note: the best completed trial, {best.number} (FID {best.values[0]:.4f}), has no "
                "checkpoint left (--keep-checkpoints); pass --trial to choose another"
            )


MAX_GRID_SAMPLES = 4096
"""The most images ``gannas sample`` puts in one grid (a 64 x 64 grid)."""


@app.command()
def sample(
    directory: Annotated[Path, typer.Argument(help="An exported generator directory.")],
    out: Annotated[Path, typer.Option(help="PNG file to write.")],
    n: Annotated[int, typer.Option(help="Number of images (at most 4096).")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the latent vectors.")] = 0,
) -> None:
    """Write an image grid sampled from an exported generator."""
    import torch

    from gannas._files import describe_os_error
    from storage import load_generator
    from trainers import save_image_grid

    if not 1 <= n <= MAX_GRID_SAMPLES:
        # A grid of a million images is no picture; it ran out of memory instead.
        raise GannasError(f"--n must be from 1 to {MAX_GRID_SAMPLES}, got {n}")
    # Checked before any work. The grid is always PNG: another suffix would mislabel the file.
    if out.is_dir():
        raise GannasError(f"--out {str(out)!r} is a directory; expected a .png file path")
    if out.suffix.lower() != ".png":
        raise GannasError(f"--out {str(out)!r} must name a .png file (the grid is written as PNG)")
    generator = load_generator(directory)
    z = torch.randn(n, generator.latent_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        images = generator(z)
    try:
        save_image_grid(images, out)
    except OSError as exc:
        raise GannasError(f"cannot write --out {str(out)!r}: {describe_os_error(exc)}") from None
    typer.echo(f"wrote {n} samples to {out}")


# --------------------------------------------------------------------------- fid / report


@app.command()
def fid(
    source_a: Annotated[str, typer.Argument(help="Folder, .npz, dataset name or exported generator.")],
    source_b: Annotated[str, typer.Argument(help="Folder, .npz, dataset name or exported generator.")],
    inception_weights: Annotated[Optional[str], typer.Option(help="Local Inception weights file.")] = None,
    allow_unverified_weights: Annotated[bool, typer.Option(help="Accept unverified weights.")] = False,
    num_samples: Annotated[Optional[int], typer.Option(help="Images per source (default: all of a data source; a generator draws as many as the other source has).")] = None,
    resolution: Annotated[Optional[int], typer.Option(help="Resolution for dataset sources.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Feature-extraction batch size.")] = 64,
    feature_extractor: Annotated[
        Optional[str], typer.Option(help="TorchScript feature extractor instead of Inception-v3.")
    ] = None,
) -> None:
    """Print the FID between two image sources (the value is the last line)."""
    from nas.fid_sources import fid_between

    result = fid_between(
        source_a,
        source_b,
        weights_path=inception_weights,  # None: read from the env, and named so
        allow_unverified=allow_unverified_weights,
        num_samples=num_samples,
        resolution=resolution,
        device=device,
        batch_size=batch_size,
        extractor_path=feature_extractor,
    )
    if num_samples is not None:
        for source, used in ((source_a, result.num_a), (source_b, result.num_b)):
            if used < num_samples:
                # A data source has only so many images; the FID is still computed, on those.
                typer.echo(
                    f"note: --num-samples {num_samples}, but {source!r} has {used} images; "
                    f"its {used} were used",
                    err=True,
                )
    details = result.details()
    for key, value in details.items():
        typer.echo(f"{key}: {value}")
    typer.echo(details["fid"])


@app.command()
def report(
    study: Annotated[str, typer.Argument(help="Study name.")],
    out: Annotated[Path, typer.Option(help="Directory for index.html.")],
    storage: StorageOpt = None,
    artifacts: ArtifactsOpt = None,
    top: Annotated[int, typer.Option(help="Best trials to show.")] = 5,
) -> None:
    """Write a self-contained HTML report of a study."""
    from nas.report import write_report
    from storage.artifacts import make_artifact_store

    if top < 1:
        raise GannasError(f"--top must be at least 1, got {top}")
    loaded = _load_study(study, storage)
    store = make_artifact_store(_artifacts_dir(artifacts), create=False)  # reading only
    path = write_report(loaded, out, artifact_store=store, top_k=top)
    typer.echo(f"wrote {path}")


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        code = app(args=argv, standalone_mode=False)
    except GannasError as exc:
        _echo_err(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _echo_err("interrupted")
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        _echo_err("aborted")
        return 130
    except Exception as exc:
        if isinstance(exc, _click_exceptions()):  # usage errors: a bad option, a missing argument
            exc.show()
            return exc.exit_code
        if os.environ.get("GANNAS_DEBUG"):
            raise
        _echo_err(f"internal error: {type(exc).__name__}: {exc} (set GANNAS_DEBUG=1 for a traceback)")
        return 1
    # Without standalone mode the parser returns, not raises, the code of an exit it handled
    # itself: typer turns a Ctrl-C that it catches (during a search's start-up, before the
    # trial loop) into 130. Ignoring it made an aborted command exit 0, silently.
    if isinstance(code, int) and not isinstance(code, bool) and code != 0:
        if code == 130:
            _echo_err("interrupted")
        return code
    return 0


def _click_exceptions() -> tuple[type[Exception], ...]:
    """The usage-error classes the parser may raise: click's own, and typer >= 0.20's vendored
    copy of click (``typer._click``), whose exceptions do not derive from click's."""
    import click

    classes: list[type[Exception]] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException as VendoredClickException
    except ImportError:  # typer that uses click itself
        pass
    else:
        classes.append(VendoredClickException)
    return tuple(classes)


# Commands contributed by other modules register themselves on ``app`` when imported.
from nas import cli_stages as _cli_stages  # noqa: E402,F401

if __name__ == "__main__":  # pragma: no cover
    # Run as ``python -m nas.cli``, this file is ``__main__``, and cli_stages registered its
    # commands on the ``app`` of a second import, ``nas.cli``: run that one, which has them all.
    from nas.cli import main as _main

    sys.exit(_main())
