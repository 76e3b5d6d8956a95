"""Seconds for one FID between two sets of N images, timed directly, per tool (no derived numbers).

    .venv/bin/python benchmarks/fid_direct.py --sizes 2000 --tools ours torch-fidelity torchmetrics

``benchmarks/fid_speed.py`` times a direct FID only at small N and derives 2k/10k from images/s
plus the measured statistics time; this script runs the whole thing at the given N, one tool
after another, on the same images and weights (a random-valued weights file of the real structure
when the real one does not resolve offline). Appends one markdown row per (N, tool) to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _arguments import refuse_below, refuse_unknown  # noqa: E402 - the benchmarks' own helper
from fid_speed import (  # noqa: E402 - the benchmark's own helpers
    fid_ours,
    fid_torch_fidelity,
    fid_torchmetrics,
    make_images,
    metrics,
    resolve_weights,
    timed,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000])
    parser.add_argument("--tools", nargs="+", default=["ours", "torch-fidelity", "torchmetrics"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "fid_direct.md"))
    args = parser.parse_args()
    refuse_below(parser, [("--sizes", args.sizes, 2), ("--batch-size", args.batch_size, 1)])
    refuse_unknown(parser, "--tools", args.tools, ["ours", "torch-fidelity", "torchmetrics"])

    device = torch.device("cpu")
    weights, kind = resolve_weights(args.weights, Path(tempfile.mkdtemp(prefix="fid_direct_")))
    out = Path(args.out)
    if not out.exists():
        out.write_text(
            "# One FID between two sets of N images, timed directly\n\n"
            f"Weights: {kind}. Images: 32x32 synthetic (`fid_speed.make_images`), batch {args.batch_size}, "
            f"CPU, torch {torch.__version__} with {torch.get_num_threads()} threads.\n\n"
            "| N | tool | seconds | FID | load average before |\n|---:|---|---:|---:|---:|\n"
        )
    ours = metrics.InceptionFeatureExtractor(weights, device=device)
    runners = {
        "ours": lambda a, b: fid_ours(ours, a, b, args.batch_size),
        "torch-fidelity": lambda a, b: fid_torch_fidelity(weights.path, a, b, args.batch_size, device),
        "torchmetrics": lambda a, b: fid_torchmetrics(weights.path, a, b, args.batch_size, device),
    }
    for n in args.sizes:
        a, b = make_images(n, seed=1), make_images(n, seed=2)
        for tool in args.tools:
            load = os.getloadavg()[0]
            value, seconds = timed(lambda: runners[tool](a, b))
            row = f"| {n} | {tool} | {seconds:.1f} | {value:.6f} | {load:.2f} |\n"
            print(row, end="", flush=True)
            with out.open("a") as fh:
                fh.write(row)


if __name__ == "__main__":
    main()
