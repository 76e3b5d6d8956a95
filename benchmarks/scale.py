"""Controller scale: overhead per trial and parallel efficiency with 1-16 simulated workers.

    .venv/bin/python benchmarks/scale.py                        # SQLite and PostgreSQL, ~3 minutes
    .venv/bin/python benchmarks/scale.py --backends sqlite --workers 1,16 --sleep 0.5
    .venv/bin/python benchmarks/scale.py --profile 16           # cProfile of the 16-worker run

What is measured is the controller, with the real storage: :func:`nas.run_search` runs its real
loop (Optuna ask, architecture sampling, heartbeats, stale-trial scan, dispatch, completion
handling) against a real SQLite file or a real PostgreSQL database, but the executor is
:class:`SleepExecutor`: each trial runs in a worker process and does what a worker does to the
study (records its worker identity, then after sleeping ``--sleep`` seconds an intermediate
value, and its FID attributes with the final state) without training anything. The limit is then
the controller and the database, not the CPU, so the numbers say how far one controller scales.

* **overhead per trial** (ms): one worker, trials that sleep 0 s; wall time of the loop divided by
  the number of trials. It is everything a trial costs besides its own work: ask + sample +
  dispatch + the worker's writes + the controller noticing the end.
* **efficiency** at W workers: ideal time (trials * sleep / W) divided by the loop's wall time,
  with ``--trials-per-worker`` trials per worker.

Goal: overhead < 50 ms per trial and efficiency >= 0.9 at 16 workers, on both backends.
Writes ``--out`` (default ``benchmarks/results/scale.md``) with the table, the command and the load.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import os
import platform
import pstats
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _arguments import refuse_below, refuse_unknown  # noqa: E402 - the benchmarks' own helper

SPACE_YAML = """\
name: scalebench
description: A small space (the benchmark samples real architectures but trains none).
family: dcgan
generator:
  depth: 2
  base_width: {type: int, low: 8, high: 32, step: 8}
  norm: {type: categorical, choices: [batch, none]}
  activation: {type: categorical, choices: [relu, leaky_relu]}
discriminator:
  depth: 2
  width: {type: int, low: 8, high: 32, step: 8}
training:
  loss: {type: categorical, choices: [bce, hinge]}
  lr_g: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}
  lr_d: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}
"""


_WORKER_STORAGES: dict[str, Any] = {}


def _worker_storage(url: str) -> Any:
    """One storage per worker process and URL, opened on first use (like a Ray worker's)."""
    if url not in _WORKER_STORAGES:
        from storage import open_storage

        _WORKER_STORAGES[url] = open_storage(url)
    return _WORKER_STORAGES[url]


def _warm_up(url: str) -> int:
    _worker_storage(url)
    return os.getpid()


def _sleep_trial(url: str, trial_id: int, number: int, step: int, sleep_s: float) -> dict[str, Any]:
    """What a worker does to the study for one trial, with a sleep instead of the training."""
    from optuna.trial import TrialState

    from nas import attrs
    from storage.rdb_rows import finish_trial, set_user_attrs

    storage = _worker_storage(url)
    worker = f"{platform.node()}:{os.getpid()}"
    # As the real worker does (nas.trial_runner): its identity (with what it built) in one
    # commit, an intermediate value while it "trains", then the attributes with the final state.
    set_user_attrs(storage, trial_id, {attrs.WORKER: worker})
    time.sleep(sleep_s)
    fid = 10.0 + (number * 7919 % 1000) / 100.0
    storage.set_trial_intermediate_value(trial_id, step, fid)
    finish_trial(
        storage, trial_id, TrialState.COMPLETE, [fid], {attrs.STATUS: "completed", attrs.FID: fid}
    )
    return {"number": number, "state": "COMPLETE", "fid": fid, "worker": worker}


class SleepExecutor:
    """An :class:`nas.executors.Executor` whose trials sleep, then write their result like a worker.

    Trials run in a pool of worker processes (separate interpreters with their own database
    connections, as Ray workers are), started and connected before the search so that the
    measurement holds the controller only. It also sums the time the controller spent waiting in
    :meth:`wait`: the rest of the loop's wall time is the controller's own work.
    """

    def __init__(self, storage_url: str, *, sleep_s: float, processes: int) -> None:
        import concurrent.futures
        import multiprocessing

        from storage import open_storage

        self._url = storage_url
        self._sleep_s = sleep_s
        # Create the schema here first: worker processes opening a new SQLite file at the same
        # time race on it ("table ... already exists").
        open_storage(storage_url)
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=processes, mp_context=multiprocessing.get_context("forkserver")
        )
        # Every process starts and opens its storage now, not inside the measured loop.
        warm = [self._pool.submit(_warm_up, storage_url) for _ in range(processes * 3)]
        pids = {f.result() for f in warm}
        self.processes = len(pids)
        self._pending: dict[Any, Any] = {}
        self.waited_s = 0.0

    def compute_reference(self, spec: Any, device: str | None) -> Any:
        from nas.executors import Reference

        return Reference(handle=None, extractor_identity=None)

    def submit(self, job: Any, reference: Any) -> None:
        future = self._pool.submit(
            _sleep_trial, self._url, job.trial_id, job.trial_number, job.budget, self._sleep_s
        )
        self._pending[future] = job

    def wait(self, timeout: float) -> list[Any]:
        import concurrent.futures

        from nas.executors import Finished

        if not self._pending:
            return []
        t0 = time.perf_counter()
        done, _ = concurrent.futures.wait(
            list(self._pending), timeout=timeout, return_when=concurrent.futures.FIRST_COMPLETED
        )
        self.waited_s += time.perf_counter() - t0
        finished = []
        for future in done:
            job = self._pending.pop(future)
            try:
                finished.append(Finished(job, future.result(), None))
            except Exception as exc:  # reported to the controller like a dead worker
                finished.append(Finished(job, None, exc))
        return finished

    def running(self) -> list[Any]:
        return list(self._pending.values())

    def cancel_all(self) -> list[Any]:
        return self.running()

    def shutdown(self) -> None:
        # The search calls this before it returns; joining the simulated workers' processes
        # (~90 ms for 16) is not controller time, so that waits for close().
        self._pool.shutdown(wait=False)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


@dataclass(frozen=True)
class Row:
    backend: str
    workers: int
    trials: int
    sleep_s: float
    wall_s: float
    busy_s: float
    """The loop's wall time minus the time it spent waiting for trials: the controller's work."""
    machine_busy: float = float("nan")
    """Fraction of the machine's CPU time (all cores, all processes) that was busy during the run."""
    runs: str = ""
    """The efficiencies of all repeated runs of this setting (see :func:`_median_of`)."""

    @property
    def ideal_s(self) -> float:
        return self.trials * self.sleep_s / self.workers

    @property
    def efficiency(self) -> float:
        return self.ideal_s / self.wall_s if self.ideal_s else float("nan")

    @property
    def busy_ms(self) -> float:
        """The controller's own work per trial (ask, sample, dispatch, heartbeats, scans)."""
        return 1000.0 * self.busy_s / self.trials

    @property
    def wall_ms(self) -> float:
        return 1000.0 * self.wall_s / self.trials


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat (Linux); None elsewhere."""
    try:
        fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    total = sum(fields[:8])
    return total - idle, total


def _busy_fraction(before: tuple[float, float] | None, after: tuple[float, float] | None) -> float:
    if before is None or after is None or after[1] <= before[1]:
        return float("nan")
    return (after[0] - before[0]) / (after[1] - before[1])


@contextmanager
def database(backend: str, tmp: Path) -> Iterator[str]:
    from storage.testing import postgres_url_for_tests, storage_url_for_mode

    if backend == "postgresql" and postgres_url_for_tests() is None:
        raise SystemExit(
            "PostgreSQL is not reachable on 127.0.0.1:5432 ($GANNAS_TEST_POSTGRES_URL)"
        )
    with storage_url_for_mode(backend, tmp) as url:
        yield url


def measure(
    backend: str,
    *,
    workers: int,
    trials: int,
    sleep_s: float,
    space: Path,
    extractor: Path,
    tmp: Path,
    profile: bool = False,
) -> Row:
    from nas.controller import run_search
    from nas.settings import HowToSearch, ScoringSettings, WhatToSearch, WhereToRun

    what = WhatToSearch(
        space=str(space),
        dataset="digits",
        resolution=16,
        budget=10,
        eval_points=1,
        scoring=ScoringSettings(fid_samples=8, real_samples=16, feature_extractor=str(extractor)),
    )
    how = HowToSearch(trials=trials, study="scale", sampler="random", pruner="none")
    with database(backend, tmp) as url:
        where = WhereToRun(storage=url, artifacts=None, executor="inline", workers=workers)
        executor = SleepExecutor(url, sleep_s=sleep_s, processes=workers)
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        cpu_before = _cpu_times()
        try:
            summary = run_search(what, how, where, executor=executor)
        finally:
            machine_busy = _busy_fraction(cpu_before, _cpu_times())
            executor.close()
        if profiler:
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(35)
            print(out.getvalue())
        if summary.finished != trials:
            raise RuntimeError(f"{backend}: {summary.finished} trials finished, wanted {trials}")
        wall = summary.elapsed_s
        return Row(
            backend, workers, trials, sleep_s, wall, max(0.0, wall - executor.waited_s), machine_busy
        )


def _median_of(repeats: int, run: Any) -> Row:
    """Run a setting ``repeats`` times; the run with the median efficiency, listing all of them.

    One 4-second run on two shared cores varies by a few hundredths from run to run.
    """
    runs = sorted((run() for _ in range(max(1, repeats))), key=lambda r: r.efficiency)
    median = runs[(len(runs) - 1) // 2]
    return dataclasses.replace(median, runs=", ".join(f"{r.efficiency:.3f}" for r in runs))


def _table(rows: list[Row]) -> list[str]:
    lines = [
        "| backend | workers | trial sleep (s) | trials | ideal (s) | wall (s) | efficiency "
        "| controller (ms/trial) | machine CPU busy | efficiency of each run |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.backend} | {r.workers} | {r.sleep_s:g} | {r.trials} | {r.ideal_s:.2f} | "
            f"{r.wall_s:.2f} | {r.efficiency:.3f} | {r.busy_ms:.1f} | {r.machine_busy:.0%} "
            f"| {r.runs} |"
        )
    return lines


def render(
    rows: list[Row],
    longer: list[Row],
    sweep: list[Row],
    overhead: dict[str, Row],
    args: argparse.Namespace,
    load: Any,
) -> str:
    lines = [
        "# Controller scale benchmark",
        "",
        "`benchmarks/scale.py`: the real controller loop (`nas.run_search`) and the real study",
        "database, with trials that sleep instead of training (`SleepExecutor`: a pool of worker",
        "processes, each trial writing its result to the study like a worker), so the limit is",
        "the controller.",
        "",
        f"Command: `{' '.join(['.venv/bin/python', 'benchmarks/scale.py', *sys.argv[1:]])}`  ",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}  ",
        f"Load average (1, 5, 15 min) before / after: {load[0]} / {load[1]}",
        "",
        "## Overhead per trial (1 worker, trials sleep 0 s)",
        "",
        "controller = the loop's own work per trial (wall time minus the time spent waiting for",
        "the worker); end to end = wall time per trial, the worker's writes (its identity, an",
        "intermediate value, the attributes with the final state) included.",
        "",
        "| backend | trials | controller (ms/trial) | end to end (ms/trial) | goal < 50 ms |",
        "|---|---:|---:|---:|---|",
    ]
    for backend, row in overhead.items():
        ok = "yes" if row.busy_ms < 50 else "NO"
        lines.append(
            f"| {backend} | {row.trials} | {row.busy_ms:.1f} | {row.wall_ms:.1f} | {ok} |"
        )
    lines += [
        "",
        f"## Parallel efficiency (trials sleep {args.sleep:g} s, {args.trials_per_worker} per worker)",
        "",
        *_table(rows),
        "",
        f"Each row is the run with the median efficiency of {args.repeats}; the efficiencies of all "
        "runs are in the last column.",
        "Efficiency = ideal time (trials x sleep / workers) / measured wall time of the loop.",
        "Machine CPU busy = share of all cores' time spent busy during the run (controller, the",
        "simulated workers' database writes and the database server together), from /proc/stat.",
        "",
    ]
    if longer:
        lines += [
            f"## Longer searches at {max(r.workers for r in longer)} workers "
            f"(trials sleep {args.sleep:g} s)",
            "",
            "A search's first and last trials cost the same whatever its length: the workers are",
            "handed their first trials one after another, and at the end they run out of trials",
            "at different times. Searches of more trials per worker show the cost per trial.",
            "",
            *_table(longer),
            "",
        ]
    if sweep:
        lines += [
            f"## Trial length at {max(r.workers for r in sweep)} workers "
            f"({args.trials_per_worker} trials per worker)",
            "",
            *_table(sweep),
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--workers", default="1,2,4,8,16")
    parser.add_argument("--sleep", type=float, default=1.0, help="Seconds each trial sleeps.")
    parser.add_argument(
        "--sweep-sleeps",
        default="2,5,10",
        help="Trial lengths (s) also measured at the largest worker count ('' to skip).",
    )
    parser.add_argument("--trials-per-worker", type=int, default=4)
    parser.add_argument(
        "--sweep-trials-per-worker",
        default="16",
        help="Longer searches (trials per worker) also measured at the largest worker count "
        "with --sleep ('' to skip).",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="Runs of each parallel-efficiency setting (not the trial-length sweep); the table "
        "shows the run with the median efficiency.",
    )
    parser.add_argument("--overhead-trials", type=int, default=40)
    parser.add_argument("--profile", type=int, default=0, help="Profile the run with N workers.")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "scale.md"))
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    refuse_unknown(parser, "--backends", backends, ["sqlite", "postgresql"])
    try:
        worker_counts = [int(w) for w in args.workers.split(",")]
        sweep_sleeps = [float(x) for x in args.sweep_sleeps.split(",") if x.strip()]
        sweep_per_worker = [int(x) for x in args.sweep_trials_per_worker.split(",") if x.strip()]
    except ValueError as exc:
        parser.error(
            f"--workers, --sweep-sleeps and --sweep-trials-per-worker take comma lists: {exc}"
        )
    refuse_below(
        parser,
        [
            ("--workers", worker_counts, 1),
            ("--sleep", args.sleep, 0),
            ("--sweep-sleeps", sweep_sleeps or None, 0),
            ("--trials-per-worker", args.trials_per_worker, 1),
            ("--sweep-trials-per-worker", sweep_per_worker or None, 1),
            ("--repeats", args.repeats, 1),
            ("--overhead-trials", args.overhead_trials, 1),
            ("--profile", args.profile, 0),
        ],
    )
    if args.profile and args.profile not in worker_counts:
        parser.error(f"--profile {args.profile} is not one of --workers {args.workers}")

    import logging

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("gannas").setLevel(logging.WARNING)
    from trainers.metrics.testing import write_tiny_torchscript_extractor

    load_before = tuple(round(x, 2) for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="gannas-scale-") as tmp_dir:
        tmp = Path(tmp_dir)
        os.environ["GANNAS_CACHE_DIR"] = str(tmp / "cache")
        space = tmp / "space.yaml"
        space.write_text(SPACE_YAML)
        extractor = tmp / "tiny.pt"
        write_tiny_torchscript_extractor(extractor, dim=8, seed=0)
        common = {"space": space, "extractor": extractor, "tmp": tmp}

        overhead: dict[str, Row] = {}
        rows: list[Row] = []
        sweep: list[Row] = []
        longer: list[Row] = []
        for backend in backends:
            row = measure(backend, workers=1, trials=args.overhead_trials, sleep_s=0.0, **common)
            overhead[backend] = row
            print(
                f"{backend}: controller {row.busy_ms:.1f} ms per trial, "
                f"end to end {row.wall_ms:.1f} ms",
                flush=True,
            )
            for w in worker_counts:
                row = _median_of(
                    args.repeats,
                    lambda: measure(
                        backend,
                        workers=w,
                        trials=w * args.trials_per_worker,
                        sleep_s=args.sleep,
                        profile=(w == args.profile),
                        **common,
                    ),
                )
                rows.append(row)
                print(
                    f"{backend}: {w:2d} workers, {row.trials} trials: wall {row.wall_s:.2f}s, "
                    f"ideal {row.ideal_s:.2f}s, efficiency {row.efficiency:.3f}, "
                    f"controller {row.busy_ms:.1f} ms/trial, machine busy {row.machine_busy:.0%}",
                    flush=True,
                )
            for per_worker in sweep_per_worker:
                w = max(worker_counts)
                row = _median_of(
                    args.repeats,
                    lambda: measure(
                        backend, workers=w, trials=w * per_worker, sleep_s=args.sleep, **common
                    ),
                )
                longer.append(row)
                print(
                    f"{backend}: {w:2d} workers x {per_worker} trials each: efficiency "
                    f"{row.efficiency:.3f} (runs: {row.runs}), machine busy {row.machine_busy:.0%}",
                    flush=True,
                )
            for sleep_s in sweep_sleeps:
                w = max(worker_counts)
                row = measure(
                    backend, workers=w, trials=w * args.trials_per_worker, sleep_s=sleep_s, **common
                )
                sweep.append(row)
                print(
                    f"{backend}: {w:2d} workers x {sleep_s:g} s trials: efficiency "
                    f"{row.efficiency:.3f}, machine busy {row.machine_busy:.0%}",
                    flush=True,
                )
    load_after = tuple(round(x, 2) for x in os.getloadavg())
    text = render(rows, longer, sweep, overhead, args, (load_before, load_after))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
