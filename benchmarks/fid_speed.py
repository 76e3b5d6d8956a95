"""FID speed: ours vs torch-fidelity vs torchmetrics, on the same machine, images and weights.

    .venv/bin/pip install -e .[bench]                         # torchmetrics, for its column
    .venv/bin/python benchmarks/fid_speed.py --quick          # minutes, small counts
    .venv/bin/python benchmarks/fid_speed.py                  # 2k and 10k samples (slow on CPU)
    .venv/bin/python benchmarks/fid_speed.py --sizes 2000 --cache-sizes 2000 500 --compile --jit \
        --batch-sweep 8 16 32 64

Measures (1) feature-extraction throughput in images/s, (2) wall seconds for one FID between two
sets of N images each, with the FID values and their relative difference to torch-fidelity, and
(3) a repeated evaluation against the same reference with and without the statistics cache. Uses
the real Inception weights when they resolve without a download, otherwise a random-weights file
of the real structure (speed and agreement do not depend on the values). Writes a markdown table to
``--out`` (default ``benchmarks/results/fid_speed.md``) including the machine load before and after.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _arguments import refuse_below  # noqa: E402 - the benchmarks' own helper

from gannas.errors import WeightsError  # noqa: E402
from trainers import metrics  # noqa: E402
from trainers.metrics.testing import write_random_inception_weights  # noqa: E402


class _Images(Dataset):  # type: ignore[type-arg]
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


@dataclass
class _Data:
    images: torch.Tensor
    name: str


def make_images(n: int, *, seed: int, size: int = 32) -> torch.Tensor:
    """Blocky random images (4x4 colour grids upscaled) with pixel noise: structured, not white noise."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, 256, (n, 3, 4, 4), generator=gen).float()
    fine = coarse.repeat_interleave(size // 4, 2).repeat_interleave(size // 4, 3)
    noise = torch.randn(fine.shape, generator=gen) * (10 + 10 * seed)
    return (fine + noise).clamp(0, 255).to(torch.uint8)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def resolve_weights(path: str | None, workdir: Path) -> tuple[metrics.WeightsInfo, str]:
    try:
        info = metrics.resolve_inception_weights(path, download=False)
        return info, "official (sha256 verified)"
    except WeightsError as exc:
        if path is not None:
            # Asked for by name: measuring with random weights instead would say nothing of it.
            raise SystemExit(f"--weights {path!r}: {exc}") from None
        random_path = workdir / "random-inception.pth"
        write_random_inception_weights(random_path, seed=0)
        info = metrics.resolve_inception_weights(random_path, download=False, allow_unverified=True)
        return info, "random weights of the real structure (official file not available offline)"


# --------------------------------------------------------------------------- feature extractors


def torch_fidelity_extractor(weights_path: str, device: torch.device) -> Callable[[torch.Tensor], Any]:
    from torch_fidelity.utils import create_feature_extractor

    module = create_feature_extractor(
        "inception-v3-compat",
        ["2048", "logits_unbiased"],
        cuda=device.type == "cuda",
        feature_extractor_weights_path=weights_path,
        verbose=False,
    )

    def run(batch: torch.Tensor) -> Any:
        with torch.no_grad():
            return module(batch.to(device))

    return run


def torchmetrics_fid(weights_path: str, device: torch.device) -> Any:
    from torchmetrics.image.fid import FrechetInceptionDistance

    # antialias=False selects the TF1-compatible resize (torchmetrics' default is antialiased
    # PyTorch interpolation, which gives different numbers).
    return FrechetInceptionDistance(
        feature=2048, feature_extractor_weights_path=weights_path, antialias=False
    ).to(device)


def in_chunks(fn: Callable[[torch.Tensor], Any], size: int) -> Callable[[torch.Tensor], Any]:
    """``fn`` applied to consecutive chunks of ``size`` images (a tool run with a smaller batch size)."""

    def run(batch: torch.Tensor) -> Any:
        return [fn(part) for part in torch.split(batch, size)]

    return run


def statistics_seconds(n: int, dim: int = 2048) -> tuple[float, float, float]:
    """Seconds from two (n, dim) feature sets to FID: torch-fidelity's statistics + scipy ``sqrtm``
    path against ours (float64 statistics, eigen-decomposition). Also returns the FID rel. difference."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    gen = torch.Generator().manual_seed(n)
    # Non-negative, correlated features like Inception's pool3 (ReLU outputs of a linear mix).
    mix = torch.randn(dim, dim, generator=gen) / dim**0.5
    f1 = torch.relu(torch.randn(n, dim, generator=gen) @ mix)
    f2 = torch.relu(torch.randn(n, dim, generator=gen) @ mix + 0.05)
    start = time.perf_counter()
    ref = fid_statistics_to_metric(
        fid_features_to_statistics(f1), fid_features_to_statistics(f2), verbose=False
    )["frechet_inception_distance"]
    t_ref = time.perf_counter() - start
    start = time.perf_counter()
    ours = metrics.frechet_distance_from_features(f1, f2)
    t_ours = time.perf_counter() - start
    return t_ref, t_ours, abs(ours - ref) / abs(ref)


def run_all(fn: Callable[[torch.Tensor], Any], images: torch.Tensor, batch_size: int) -> float:
    """Seconds to push ``images`` through ``fn`` in batches."""
    start = time.perf_counter()
    for i in range(0, len(images), batch_size):
        fn(images[i : i + batch_size])
    return time.perf_counter() - start


def interleaved_rates(
    variants: dict[str, Callable[[torch.Tensor], Any]], images: torch.Tensor, batch_size: int, repeats: int
) -> dict[str, list[float]]:
    """images/s of every variant, alternating variants within each repetition so that a change in the
    machine's load hits all of them alike (other work shares the CPUs)."""
    for fn in variants.values():
        fn(images[: min(4, len(images))])  # warm-up: allocator, oneDNN primitive cache
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            rates[name].append(len(images) / run_all(fn, images, batch_size))
    return rates


def jit_frozen(extractor: Any) -> Callable[[torch.Tensor], Any]:
    """Our BN-folded channels-last trunk traced, frozen and ``optimize_for_inference``d (TorchScript)."""
    from trainers.metrics._extractors import _TRUNK, INCEPTION_SIZE
    from trainers.metrics._resize import resize_tf1_bilinear

    module = extractor._module  # noqa: SLF001 - benchmark only

    class Trunk(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for name in _TRUNK:
                x = getattr(self.inner, name)(x)
            return torch.flatten(x, 1)

    example = torch.zeros(2, 3, INCEPTION_SIZE, INCEPTION_SIZE).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(Trunk().eval(), example)))

    def run(batch: torch.Tensor) -> Any:
        with torch.no_grad():
            x = (resize_tf1_bilinear(batch.float(), INCEPTION_SIZE) - 128) / 128
            return frozen(x.contiguous(memory_format=torch.channels_last))

    return run


# --------------------------------------------------------------------------- FID computations


def fid_ours(extractor: Any, a: torch.Tensor, b: torch.Tensor, batch_size: int) -> float:
    fa = metrics.extract_features(extractor, a, batch_size=batch_size)["pool"]
    fb = metrics.extract_features(extractor, b, batch_size=batch_size)["pool"]
    return metrics.frechet_distance_from_features(fa, fb)


def fid_torch_fidelity(weights_path: str, a: torch.Tensor, b: torch.Tensor, batch_size: int, device: torch.device) -> float:
    import torch_fidelity

    out = torch_fidelity.calculate_metrics(
        input1=_Images(a), input2=_Images(b), fid=True, feature_extractor_weights_path=weights_path,
        cuda=device.type == "cuda", cache=False, verbose=False, save_cpu_ram=True, batch_size=batch_size,
    )  # fmt: skip
    return float(out["frechet_inception_distance"])


def fid_torchmetrics(weights_path: str, a: torch.Tensor, b: torch.Tensor, batch_size: int, device: torch.device) -> float:
    metric = torchmetrics_fid(weights_path, device)
    for i in range(0, len(a), batch_size):
        metric.update(a[i : i + batch_size].to(device), real=True)
    for i in range(0, len(b), batch_size):
        metric.update(b[i : i + batch_size].to(device), real=False)
    return float(metric.compute())


class _ToyGenerator(nn.Module):
    latent_dim = 16

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Linear(16, 3 * 32 * 32)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(z)).view(-1, 3, 32, 32)


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (development)")
    parser.add_argument("--sizes", type=int, nargs="+", help="FID sample counts per set (default 2000 10000)")
    parser.add_argument("--throughput-images", type=int, help="images for the images/s measurement")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--weights", default=None, help="Inception weights file (else hub cache, else random)")
    parser.add_argument("--compile", action="store_true", help="also measure compile=True (slow to compile)")
    parser.add_argument("--jit", action="store_true", help="also measure torch.jit.freeze + optimize_for_inference")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions per throughput variant")
    parser.add_argument("--batch-sweep", type=int, nargs="*", default=[], help="batch sizes for a sweep of ours")
    parser.add_argument("--cache-sizes", type=int, nargs=2, metavar=("REAL", "FAKE"),
                        help="reference and generated counts for the cache measurement (default N N)")
    parser.add_argument("--derived-sizes", type=int, nargs="*", default=[2000, 10000],
                        help="N for the seconds-per-FID table from measured statistics time + images/s")
    parser.add_argument("--fid-torchmetrics", action="store_true", help="also time torchmetrics per FID")
    parser.add_argument("--no-torchmetrics", action="store_true")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "fid_speed.md"))
    args = parser.parse_args()
    refuse_below(
        parser,
        [
            ("--sizes", args.sizes, 2),
            ("--throughput-images", args.throughput_images, 1),
            ("--batch-size", args.batch_size, 1),
            ("--repeats", args.repeats, 1),
            ("--batch-sweep", args.batch_sweep or None, 1),
            ("--cache-sizes", args.cache_sizes, 2),
            ("--derived-sizes", args.derived_sizes or None, 2),
        ],
    )
    from gannas.errors import GannasError
    from nas.settings import check_device

    try:
        check_device(args.device, local=True)  # also a cuda this machine does not have
    except GannasError as exc:
        parser.error(str(exc))

    sizes = args.sizes or ([128] if args.quick else [2000, 10000])
    n_throughput = args.throughput_images or (64 if args.quick else 512)
    device = metrics.resolve_device(args.device)
    load_before = os.getloadavg()
    use_torchmetrics = not args.no_torchmetrics
    if use_torchmetrics:
        try:
            import torchmetrics  # noqa: F401
        except ImportError:
            use_torchmetrics = False

    workdir = Path(tempfile.mkdtemp(prefix="fid_speed_"))
    weights, weights_kind = resolve_weights(args.weights, workdir)
    lines: list[str] = []

    def emit(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    # ---- 1. throughput: all variants interleaved, median of --repeats, at 2 threads and at 1
    images = make_images(n_throughput, seed=0)
    ours = metrics.InceptionFeatureExtractor(weights, device=device)  # the default configuration
    assert ours.variant == "fast+onednn" or device.type != "cpu", ours.variant
    plain = metrics.InceptionFeatureExtractor(weights, device=device, onednn=False)
    tf_run = torch_fidelity_extractor(weights.path, device)
    variants: dict[str, Callable[[torch.Tensor], Any]] = {
        f"torch-fidelity 0.4.0 (its own forward), batch {args.batch_size} (its default)": tf_run,
        "torch-fidelity 0.4.0, batch 8 (faster than its default here)": in_chunks(tf_run, 8),
    }
    if use_torchmetrics:
        import torchmetrics

        tm = torchmetrics_fid(weights.path, device)
        variants[f"torchmetrics {torchmetrics.__version__} (FID.update, TF1 resize)"] = (
            lambda x: tm.update(x.to(device), real=True)
        )
    variants["ours, onednn=False: BN folded + channels-last + separable resize"] = plain.features
    if args.jit:
        variants["ours + torch.jit.freeze + optimize_for_inference"] = jit_frozen(plain)
    whole = metrics.InceptionFeatureExtractor(weights, device=device, micro_batch=0)
    variants["ours, micro_batch=0: + fused prepacked oneDNN conv+ReLU, whole batch"] = whole.features
    variants["**ours, default**: + micro-batches of 4, one per core"] = ours.features
    compile_note = ""
    if args.compile:
        compiled = metrics.InceptionFeatureExtractor(weights, device=device, compile=True)
        _, compile_s = timed(lambda: compiled.features(images[: args.batch_size]))
        compile_note = f" (first call {compile_s:.0f} s incl. compile, excluded)"
        variants["ours, compile=True: torch.compile inductor, freezing" + compile_note] = compiled.features
    medians: dict[int, dict[str, float]] = {}
    thread_counts = [torch.get_num_threads()] + ([1] if torch.get_num_threads() > 1 and not args.quick else [])
    emit(
        f"### Feature extraction ({n_throughput} images 32x32 -> 299x299, batch {args.batch_size}, {device}; "
        f"median of {args.repeats} interleaved runs)"
    )
    emit()
    for threads in thread_counts:
        torch.set_num_threads(threads)
        # At 1 thread only the reference and our default (the fairness check the ratio needs).
        chosen = variants if threads == thread_counts[0] else {k: v for k, v in variants.items() if "torch-fidelity" in k or k.startswith("**ours, default**")}
        tf_names = [k for k in chosen if "torch-fidelity" in k]
        load = os.getloadavg()[0]
        rates = interleaved_rates(chosen, images, args.batch_size, args.repeats)
        base, best_tf = (statistics.median(rates[k]) for k in tf_names)
        medians[threads] = {name: statistics.median(values) for name, values in rates.items()}
        emit(f"torch.set_num_threads({threads}), load average at start {load:.2f}:")
        emit()
        emit("| implementation | images/s (median) | runs | vs torch-fidelity default | vs torch-fidelity batch 8 |")
        emit("|---|---:|---|---:|---:|")
        for name, values in rates.items():
            med = statistics.median(values)
            emit(
                f"| {name} | {med:.2f} | {', '.join(f'{v:.2f}' for v in values)} | {med / base:.2f}x "
                f"| {med / best_tf:.2f}x |"
            )
        emit()
    torch.set_num_threads(thread_counts[0])

    if args.batch_sweep:
        sweep = {f"batch {bs}": (lambda bs=bs: bs) for bs in args.batch_sweep}
        load = os.getloadavg()[0]
        sweep_rates: dict[str, list[float]] = {name: [] for name in sweep}
        ours.features(images[:4])
        for _ in range(args.repeats):
            for name, bs in sweep.items():
                sweep_rates[name].append(len(images) / run_all(ours.features, images, bs()))
        emit(f"Batch size, ours default, {torch.get_num_threads()} threads, load average at start {load:.2f}:")
        emit()
        emit("| batch size | images/s (median) | runs |")
        emit("|---:|---:|---|")
        for name, values in sweep_rates.items():
            emit(f"| {name.split()[1]} | {statistics.median(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} |")
        emit()

    # ---- 2. seconds per FID
    emit(f"### One FID between two sets of N images ({device}, including feature extraction)")
    emit()
    emit("| N | torch-fidelity s | torchmetrics s | ours s | FID torch-fidelity | FID ours | rel. diff | FID torchmetrics |")
    emit("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        a, b = make_images(n, seed=1), make_images(n, seed=2)
        ref_fid, t_tf = timed(lambda: fid_torch_fidelity(weights.path, a, b, args.batch_size, device))
        tm_fid, t_tm = (float("nan"), float("nan"))
        if use_torchmetrics and args.fid_torchmetrics:
            tm_fid, t_tm = timed(lambda: fid_torchmetrics(weights.path, a, b, args.batch_size, device))
        our_fid, t_ours = timed(lambda: fid_ours(ours, a, b, args.batch_size))
        rel = abs(our_fid - ref_fid) / abs(ref_fid)
        emit(
            f"| {n} | {t_tf:.1f} | {t_tm:.1f} | {t_ours:.1f} | {ref_fid:.6f} | {our_fid:.6f} | {rel:.1e} | {tm_fid:.6f} |"
        )
    emit()

    # ---- 2b. 2k / 10k samples: measured statistics time + extraction at the measured images/s
    rates_now = medians[thread_counts[0]]
    tf_default_rate, tf_best_rate = (v for k, v in rates_now.items() if "torch-fidelity" in k)
    our_rate = next(v for k, v in rates_now.items() if k.startswith("**ours, default**"))
    emit(
        f"### Seconds per FID at 2k and 10k samples ({device}, {thread_counts[0]} threads): "
        "statistics measured, extraction from the images/s above"
    )
    emit()
    emit(
        "Two sets of N images each, no cache: 2N images through the network at the median images/s "
        "measured above, plus the *measured* time from two (N, 2048) feature sets to the FID "
        "(torch-fidelity: its statistics + scipy `sqrtm`; ours: float64 statistics + eigendecomposition)."
    )
    emit()
    emit(
        "| N | statistics s, torch-fidelity | statistics s, ours | FID rel. diff | "
        "total s, torch-fidelity (batch 64 / batch 8) | total s, ours | speed-up |"
    )
    emit("|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.derived_sizes:
        t_ref, t_ours_stats, rel = statistics_seconds(n)
        tf_total = 2 * n / tf_default_rate + t_ref
        tf_best_total = 2 * n / tf_best_rate + t_ref
        ours_total = 2 * n / our_rate + t_ours_stats
        emit(
            f"| {n} | {t_ref:.1f} | {t_ours_stats:.1f} | {rel:.1e} | {tf_total:.0f} / {tf_best_total:.0f} "
            f"| {ours_total:.0f} | {tf_total / ours_total:.2f}x / {tf_best_total / ours_total:.2f}x |"
        )
    emit()

    # ---- 3. statistics cache: a search scores many small generated sets against one big reference
    n_real, n_fake = args.cache_sizes or (sizes[0], sizes[0])
    data = _Data(make_images(n_real, seed=1), "bench-blocks")
    cache_dir = workdir / "cache"

    def evaluate() -> float:
        stats = metrics.reference_statistics(data, extractor=ours, num_samples=None, cache_dir=cache_dir, batch_size=args.batch_size)
        evaluator = metrics.FIDEvaluator(ours, stats, num_samples=n_fake, batch_size=args.batch_size, metrics=("fid",))
        return evaluator(_ToyGenerator(), seed=0)["fid"]

    cold, t_cold = timed(evaluate)
    warm, t_warm = timed(evaluate)
    emit(f"### Repeated evaluation against the same reference (N = {n_real} real, {n_fake} generated, ours default)")
    emit()
    emit("| | seconds | FID |")
    emit("|---|---:|---:|")
    emit(f"| reference computed (cold cache) + evaluation | {t_cold:.1f} | {cold:.6f} |")
    emit(f"| reference from cache + evaluation | {t_warm:.1f} | {warm:.6f} |")
    emit(f"| speed-up | {t_cold / t_warm:.2f}x | |")
    emit()

    load_after = os.getloadavg()
    header = [
        "# FID speed benchmark",
        "",
        f"Command: `.venv/bin/python benchmarks/fid_speed.py {' '.join(sys.argv[1:])}`",
        "",
        f"- machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, device {device}",
        f"- load average (1/5/15 min) before: {load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f}, "
        f"after: {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f} "
        "(other work shares the CPUs; timings are noisy when this exceeds the core count)",
        f"- weights: {weights_kind}, sha256 {weights.sha256[:16]}...",
        "",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(header + lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
