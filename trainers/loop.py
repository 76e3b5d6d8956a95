"""The short-budget GAN training loop: a fixed number of generator steps, evaluated at set points.

One generator step is preceded by ``config.d_steps`` discriminator steps. Batches and latent
vectors come from one seeded :class:`torch.Generator`, so on CPU the same seed (and the same
initial weights, which are the caller's job) gives bitwise-identical losses and weights.

A run never raises for a diverging or out-of-memory model: it ends with a :class:`TrainResult`
whose ``status`` says why (``diverged``, ``out_of_memory``), so a search can record the trial and
move on. A reporter (see :mod:`trainers.reporting`) receives each evaluation and may stop the run
early (``stopped``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from gannas.errors import DatasetError
from search_spaces.config import TrainingConfig
from trainers.datasets import ImageData
from trainers.ema import EMA
from trainers.images import images_to_float
from trainers.losses import LOSSES, gradient_penalty
from trainers.reporting import Reporter

__all__ = ["Evaluator", "TrainResult", "TrainStatus", "resolve_device", "train_gan"]

TrainStatus = Literal["completed", "stopped", "diverged", "out_of_memory"]

Evaluator = Callable[..., Mapping[str, float]]
"""``evaluator(generator, *, seed) -> {"fid": ...}``, called with the generator in eval mode."""


@dataclass(frozen=True)
class TrainResult:
    """The outcome of :func:`train_gan`.

    ``steps`` is the number of generator steps run (for ``diverged``, the step that produced the
    non-finite value). ``metrics`` is the last evaluation (empty if none happened), ``history``
    every evaluation as ``(step, metrics)``, ``losses`` the logged ``(step, d_loss, g_loss)``.
    ``generator`` is the evaluated generator (the EMA copy when ``ema_decay`` is set), on CPU.
    """

    status: TrainStatus
    reason: str | None
    steps: int
    metrics: dict[str, float]
    history: list[tuple[int, dict[str, float]]] = field(repr=False)
    losses: list[tuple[int, float, float]] = field(repr=False)
    wall_time_s: float
    generator: nn.Module = field(repr=False)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"`` means the GPU when there is one, else the CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class _Diverged(Exception):
    def __init__(self, reason: str, step: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.step = step


class _BatchSampler:
    """Draws batches without replacement within an epoch; reshuffles (seeded) when exhausted."""

    def __init__(self, images: torch.Tensor, generator: torch.Generator) -> None:
        self._images = images
        self._generator = generator
        self._order = torch.empty(0, dtype=torch.long, device=images.device)
        self._pos = 0

    def next(self, batch_size: int) -> torch.Tensor:
        parts: list[torch.Tensor] = []
        needed = batch_size
        while needed > 0:
            if self._pos >= self._order.numel():
                self._order = torch.randperm(
                    self._images.shape[0], generator=self._generator, device=self._images.device
                )
                self._pos = 0
            take = self._order[self._pos : self._pos + needed]
            self._pos += take.numel()
            needed -= take.numel()
            parts.append(take)
        index = parts[0] if len(parts) == 1 else torch.cat(parts)
        return images_to_float(self._images[index])


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    if isinstance(exc, RuntimeError):
        message = str(exc).lower()
        return "out of memory" in message or "can't allocate memory" in message
    return False


def train_gan(
    generator: nn.Module,
    discriminator: nn.Module,
    data: ImageData,
    *,
    config: TrainingConfig,
    budget: int,
    eval_at: Sequence[int],
    evaluator: Evaluator,
    reporter: Reporter,
    seed: int,
    device: str | torch.device | None = None,
    log_every: int = 10,
    on_log: Callable[[int, float, float], None] | None = None,
) -> TrainResult:
    """Train ``generator`` against ``discriminator`` for ``budget`` generator steps on ``data``.

    ``generator`` needs attribute ``latent_dim`` and maps ``(N, latent_dim)`` to images in
    ``[-1, 1]`` shaped like ``data.images``; ``discriminator`` maps images to ``(N,)`` raw scores.
    Both are moved to ``device`` and trained in place (G ends on CPU).

    Evaluations run after each step in ``eval_at`` (steps beyond ``budget`` are ignored) and always
    after the last step: ``metrics = evaluator(eval_generator, seed=seed)``, then
    ``reporter.report(step, metrics)``; when steps remain and ``reporter.should_stop()`` is true,
    training ends with status ``stopped``. A non-finite D or G loss, or a non-finite ``"fid"``, ends
    it with ``diverged``; running out of memory with ``out_of_memory``. ``losses`` are recorded
    (and passed to ``on_log``) every ``log_every`` steps and at the last step run.
    """
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be a positive number of generator steps, got {budget!r}")
    if log_every < 1:
        raise ValueError(f"log_every must be >= 1, got {log_every}")
    bad_points = [s for s in eval_at if s < 1]
    if bad_points:
        raise ValueError(f"eval_at steps must be >= 1, got {sorted(bad_points)}")
    if len(data) == 0:
        raise DatasetError(f"dataset {data.name!r} holds no images")
    latent_dim = getattr(generator, "latent_dim", None)
    if not isinstance(latent_dim, int) or latent_dim < 1:
        raise TypeError(
            f"the generator must have an integer attribute latent_dim >= 1, found {latent_dim!r}"
        )
    eval_points = sorted({s for s in eval_at if s <= budget} | {budget})

    dev = resolve_device(device)
    start = time.perf_counter()
    progress = _Progress()
    status: TrainStatus = "completed"
    reason: str | None = None
    ema: EMA | None = None
    try:
        generator.to(dev).train()
        discriminator.to(dev).train()
        ema = EMA(generator, decay=config.ema_decay) if config.ema_decay is not None else None
        # The steps run in their own frame so that, on out-of-memory, every batch tensor is freed
        # before the cache is emptied below.
        stopped_at = _run_steps(
            generator,
            discriminator,
            data,
            ema,
            progress,
            config=config,
            latent_dim=latent_dim,
            budget=budget,
            eval_points=eval_points,
            evaluator=evaluator,
            reporter=reporter,
            seed=seed,
            device=dev,
            log_every=log_every,
            on_log=on_log,
        )
        if stopped_at is not None:
            status = "stopped"
            reason = f"stopped by the reporter after the evaluation at step {stopped_at}"
            # A pruned trial's curve ends where it stopped, not at the last multiple of log_every
            # (a trial pruned at step 8 would otherwise have no curve at all).
            _log_last_step(progress, on_log)
    except _Diverged as exc:
        status, reason, progress.completed_steps = "diverged", exc.reason, exc.step
        # Record the diverging step's losses (non-finite ones included) so curves show the blow-up.
        _log_last_step(progress, on_log)
    except Exception as exc:  # only out-of-memory is swallowed
        if not _is_out_of_memory(exc):
            raise
        status = "out_of_memory"
        where = (
            f"at step {progress.step}"
            if progress.step
            else "before the first step (moving the models and images to the device)"
        )
        reason = f"out of memory {where}: {' '.join(str(exc).split())[:300]}"
    finally:
        # Leave nothing on the accelerator: the caller gets CPU modules either way.
        evaluated_module = ema.module if ema is not None else generator
        evaluated_module.to("cpu")
        generator.to("cpu")
        discriminator.to("cpu")
        if dev.type == "cuda":
            torch.cuda.empty_cache()

    return TrainResult(
        status=status,
        reason=reason,
        steps=progress.completed_steps,
        metrics=progress.metrics,
        history=progress.history,
        losses=progress.losses,
        wall_time_s=time.perf_counter() - start,
        generator=evaluated_module,
    )


@dataclass
class _Progress:
    """What a run has produced so far; kept outside the step loop so it survives an exception."""

    step: int = 0
    """The generator step running (1-based), 0 before the first."""
    completed_steps: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    losses: list[tuple[int, float, float]] = field(default_factory=list)
    last_losses: tuple[int, float, float] | None = None


def _run_steps(
    generator: nn.Module,
    discriminator: nn.Module,
    data: ImageData,
    ema: EMA | None,
    progress: _Progress,
    *,
    config: TrainingConfig,
    latent_dim: int,
    budget: int,
    eval_points: list[int],
    evaluator: Evaluator,
    reporter: Reporter,
    seed: int,
    device: torch.device,
    log_every: int,
    on_log: Callable[[int, float, float], None] | None,
) -> int | None:
    """Run the generator steps; return the step the reporter stopped at, or ``None``."""
    loss = LOSSES[config.loss]
    use_gp = config.loss == "wgan_gp" and config.gp_weight > 0.0
    betas = (config.beta1, config.beta2)
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr_g, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr_d, betas=betas)
    rng = torch.Generator(device=device).manual_seed(seed)
    sampler = _BatchSampler(data.images.to(device), rng)
    batch_size = config.batch_size
    next_eval = 0

    def sample_fake() -> torch.Tensor:
        z = torch.randn(batch_size, latent_dim, generator=rng, device=device)
        return generator(z)  # type: ignore[no-any-return]

    for step in range(1, budget + 1):
        progress.step = step
        # --- discriminator ---
        d_losses: list[torch.Tensor] = []
        for _ in range(config.d_steps):
            real = sampler.next(batch_size)
            with torch.no_grad():
                fake = sample_fake()
            if step == 1 and not d_losses and fake.shape[1:] != real.shape[1:]:
                raise DatasetError(
                    f"the generator makes images shaped {tuple(fake.shape[1:])} but dataset "
                    f"{data.name!r} holds {tuple(real.shape[1:])}: build the models with the "
                    f"dataset's channels and resolution"
                )
            d_loss = loss.discriminator(discriminator(real), discriminator(fake))
            if use_gp:
                d_loss = d_loss + config.gp_weight * gradient_penalty(
                    discriminator, real, fake, generator=rng
                )
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            d_losses.append(d_loss.detach())

        # --- generator --- (D's parameters need no gradients here)
        discriminator.requires_grad_(False)
        try:
            g_loss = loss.generator(discriminator(sample_fake()))
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
        finally:
            discriminator.requires_grad_(True)
        if ema is not None:
            ema.update(generator)

        # One device sync per generator step checks every loss of the step.
        step_losses = torch.stack([*d_losses, g_loss.detach()]).float().cpu()
        progress.last_losses = (step, float(step_losses[-2]), float(step_losses[-1]))
        if not bool(torch.isfinite(step_losses).all()):
            raise _Diverged(_non_finite_reason(step_losses, step), step)
        progress.completed_steps = step

        if step % log_every == 0 or step == budget:
            _log(progress.losses, on_log, *progress.last_losses)

        if step == eval_points[next_eval]:
            next_eval += 1
            evaluated = ema.module if ema is not None else generator
            metrics = _evaluate(evaluated, evaluator, seed=seed)
            progress.metrics = metrics
            progress.history.append((step, metrics))
            fid = metrics.get("fid")
            if fid is not None and not math.isfinite(fid):
                raise _Diverged(f"fid is {fid} at step {step}", step)
            reporter.report(step, metrics)
            if step < budget and reporter.should_stop():
                return step
    return None


def _non_finite_reason(step_losses: torch.Tensor, step: int) -> str:
    """``step_losses`` holds the D losses of the step, then the G loss."""
    bad = int((~torch.isfinite(step_losses)).nonzero()[0, 0])
    d_steps = step_losses.numel() - 1
    if bad == d_steps:
        which = "generator loss"
    elif d_steps > 1:
        which = f"discriminator loss (D step {bad + 1} of {d_steps})"
    else:
        which = "discriminator loss"
    return f"{which} is {float(step_losses[bad])} at step {step}"


def _evaluate(module: nn.Module, evaluator: Evaluator, *, seed: int) -> dict[str, float]:
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            raw = evaluator(module, seed=seed)
    finally:
        module.train(was_training)
    return {str(k): float(v) for k, v in raw.items()}


def _log_last_step(progress: _Progress, on_log: Callable[[int, float, float], None] | None) -> None:
    """Record the last step run, unless the log_every schedule already did."""
    last = progress.last_losses
    if last is not None and (not progress.losses or progress.losses[-1][0] != last[0]):
        _log(progress.losses, on_log, *last)


def _log(
    losses: list[tuple[int, float, float]],
    on_log: Callable[[int, float, float], None] | None,
    step: int,
    d_loss: float,
    g_loss: float,
) -> None:
    losses.append((step, d_loss, g_loss))
    if on_log is not None:
        on_log(step, d_loss, g_loss)
