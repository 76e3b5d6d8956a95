"""How noisy is one trial's FID? Repeats of the same architectures with other training seeds.

    .venv/bin/python benchmarks/seed_noise.py                       # ~4 minutes on 2 cores
    .venv/bin/python benchmarks/seed_noise.py --fid-samples 1024    # is it the FID estimate?
    .venv/bin/python benchmarks/seed_noise.py --ema-decay 0.9       # does a weight average help?

Runs the search-efficiency benchmark's setting (``search_efficiency.FULL``: ``digits`` at 8x8,
space ``dcgan-cpu``, the tiny proxy extractor) as a random search of ``--trials`` trials with
``--eval-points`` FID evaluations, then runs each of its ``--top`` best architectures ``--repeats``
more times. Every trial has its own training seed (the search seed plus its trial number), so a
repeat differs from the original only in the seed. Prints the quantiles of the random trials'
final FIDs, the Spearman correlation of each evaluation step's FID with the final one, and each
repeated architecture's FIDs. With ``--fid-samples`` raised, the spread that remains comes from
training, not from the FID's sampling. With ``--ema-decay``, every generator is scored as an
exponential moving average of its weights (as ``search_efficiency.py --ema-decay``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import search_efficiency as bench  # noqa: E402 - the benchmark's own setting and helpers
from _arguments import refuse_below  # noqa: E402 - the benchmarks' own helper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--eval-points", type=int, default=5)
    parser.add_argument("--fid-samples", type=int, default=bench.FULL.fid_samples)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--ema-decay", type=float, help="Score an EMA of the generator's weights.")
    args = parser.parse_args()
    if problem := bench.ema_decay_problem(args.ema_decay):
        parser.error(problem)
    refuse_below(
        parser,
        [
            ("--trials", args.trials, 1),
            ("--top", args.top, 1),
            ("--repeats", args.repeats, 1),
            ("--eval-points", args.eval_points, 1),
            ("--fid-samples", args.fid_samples, 2),
            ("--seed", args.seed, 0),
        ],
    )
    if args.top > args.trials:
        parser.error(f"--top {args.top} is more than --trials {args.trials}")

    import optuna
    from scipy.stats import spearmanr

    from nas.controller import run_search
    from nas.settings import HowToSearch, WhereToRun
    from trainers.metrics.testing import write_tiny_torchscript_extractor

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="gannas-seed-noise-"))
    os.environ["GANNAS_CACHE_DIR"] = str(work / "cache")
    extractor = str(work / "tiny.pt")
    write_tiny_torchscript_extractor(extractor, dim=32, seed=0)
    space = work / "dcgan-cpu.yaml"
    cfg = bench.Config(
        **{
            **asdict(bench.FULL),
            "eval_points": args.eval_points,
            "fid_samples": args.fid_samples,
            "ema_decay": args.ema_decay,
        }
    )
    space.write_text(bench.space_yaml(cfg))
    what = bench._settings(cfg, extractor, str(space), args.seed)
    url = f"sqlite:///{work / 'noise.db'}"
    where = WhereToRun(storage=url, executor="inline", workers=1)

    def search(trials: int) -> optuna.Study:
        how = HowToSearch(trials=trials, study="noise", sampler="random", pruner="none")
        run_search(what, how, where)
        return optuna.load_study(study_name="noise", storage=url)

    study = search(args.trials)
    done = sorted(
        (t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE),
        key=lambda t: t.value,
    )
    for trial in done[: args.top]:
        for _ in range(args.repeats):
            study.enqueue_trial(trial.params, user_attrs={"repeat_of": trial.number})
    study = search(args.trials + args.top * args.repeats)

    values = [t.value for t in done]
    quantiles = {q: values[round(q * (len(values) - 1))] for q in (0.0, 0.05, 0.1, 0.25, 0.5)}
    print(f"{len(done)} random trials, final FID quantiles: "
          + ", ".join(f"{q:.0%} {v:.4f}" for q, v in quantiles.items()))  # fmt: skip
    for step in sorted({s for t in done for s in t.intermediate_values})[:-1]:
        pairs = [(t.intermediate_values[step], t.value) for t in done if step in t.intermediate_values]
        rho = spearmanr(*zip(*pairs)).statistic
        print(f"FID at step {step}: Spearman {rho:.2f} with the final FID")
    repeats: dict[int, list[float]] = {}
    for t in study.trials:
        if "repeat_of" in t.user_attrs and t.value is not None:
            repeats.setdefault(t.user_attrs["repeat_of"], []).append(t.value)
    for number, again in repeats.items():
        first = study.trials[number].value
        print(f"trial {number}: FID {first:.4f}; other seeds "
              + " ".join(f"{v:.4f}" for v in again)
              + f" (median {statistics.median(again):.4f}, range {min(again + [first]):.4f}"
              f"-{max(again + [first]):.4f})")  # fmt: skip


if __name__ == "__main__":
    main()
