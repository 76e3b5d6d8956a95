"""Optional per-trial TensorBoard scalars (``gannas search --tensorboard DIR``).

Each trial writes one event-file directory, ``DIR/<study>/trial_<number>/``, holding

* ``loss/d`` and ``loss/g``: the discriminator and generator losses at every log step of the
  training loop (passed in through ``train_gan(on_log=...)``);
* ``eval/<metric>`` (``eval/fid``, ``eval/kid``, ``eval/is``): each evaluation's metrics, taken from
  the reporter the training loop already calls.

The worker creates the writer; ``trainers`` never imports this module. The study database stays the
source of truth: these files are a view for people used to watching training in TensorBoard
(``tensorboard --logdir DIR``), and losing them loses nothing a search needs.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from gannas.errors import GannasError

if TYPE_CHECKING:  # pragma: no cover
    from trainers.reporting import Reporter

__all__ = [
    "LOSS_D_TAG",
    "LOSS_G_TAG",
    "EVAL_TAG_PREFIX",
    "ScalarReporter",
    "TrialScalars",
    "require_tensorboard",
    "trial_log_dir",
    "trial_scalars",
]

log = logging.getLogger("gannas.tensorboard")

LOSS_D_TAG = "loss/d"
LOSS_G_TAG = "loss/g"
EVAL_TAG_PREFIX = "eval/"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def require_tensorboard() -> None:
    """Raise :class:`GannasError` unless ``torch.utils.tensorboard`` can write event files.

    Called when a search starts, so a missing package is reported before any trial runs rather
    than as a warning in every worker.
    """
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as exc:
        raise GannasError(
            "--tensorboard needs the 'tensorboard' package, which is not installed "
            f"({type(exc).__name__}: {exc}); run `pip install tensorboard` or drop --tensorboard"
        ) from None


def trial_log_dir(root: str | Path, *, study_name: str, trial_number: int) -> Path:
    """``root/<study>/trial_<number>``; characters other than letters, digits, ``.``, ``_`` and
    ``-`` in the study name become ``_`` so a name can never climb out of ``root``."""
    safe = _UNSAFE.sub("_", study_name).strip(".") or "_"
    return Path(root) / safe / f"trial_{trial_number}"


class TrialScalars:
    """One trial's event-file writer: losses from ``on_log``, metrics from ``on_eval``."""

    def __init__(self, log_dir: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self._writer = SummaryWriter(log_dir=str(self.log_dir))

    def on_log(self, step: int, loss_d: float, loss_g: float) -> None:
        """The ``train_gan(on_log=...)`` callback. Non-finite losses are skipped (the loop ends a
        diverged trial itself; TensorBoard would only draw a spike to infinity)."""
        for tag, value in ((LOSS_D_TAG, loss_d), (LOSS_G_TAG, loss_g)):
            if math.isfinite(value):
                self._writer.add_scalar(tag, float(value), global_step=step)

    def on_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        """Write ``eval/<name>`` for every finite number in one evaluation's metrics."""
        for name, value in sorted(metrics.items()):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if math.isfinite(value):
                    self._writer.add_scalar(
                        f"{EVAL_TAG_PREFIX}{name}", float(value), global_step=step
                    )
        # Evaluations are rare and the interesting moments: make them visible at once.
        self._writer.flush()

    def wrap(self, reporter: Reporter) -> ScalarReporter:
        """A reporter that writes each evaluation here, then passes it on to ``reporter``."""
        return ScalarReporter(reporter, self)

    def close(self) -> None:
        self._writer.close()


class ScalarReporter:
    """A :class:`trainers.Reporter` that logs each report to TensorBoard and forwards it."""

    def __init__(self, inner: Reporter, scalars: TrialScalars) -> None:
        self._inner = inner
        self._scalars = scalars

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        try:
            self._scalars.on_eval(step, metrics)
        except Exception:  # a view of the training, never a reason to fail the trial
            log.warning("could not write TensorBoard scalars of step %d", step, exc_info=True)
        self._inner.report(step, metrics)

    def should_stop(self) -> bool:
        return self._inner.should_stop()


@contextmanager
def trial_scalars(
    root: str | None, *, study_name: str, trial_number: int
) -> Iterator[TrialScalars | None]:
    """The trial's :class:`TrialScalars` (closed on exit), or ``None`` when ``root`` is ``None``.

    A writer that cannot be created (package missing on this worker, unwritable directory) is
    logged and gives ``None``: like the artifacts, TensorBoard files never fail a trial. The
    search checks the package up front (:func:`require_tensorboard`).
    """
    if root is None:
        yield None
        return
    directory = trial_log_dir(root, study_name=study_name, trial_number=trial_number)
    try:
        scalars: TrialScalars | None = TrialScalars(directory)
    except Exception as exc:
        log.warning(
            "trial %d writes no TensorBoard scalars: cannot open %s (%s: %s)",
            trial_number,
            directory,
            type(exc).__name__,
            exc,
        )
        scalars = None
    try:
        yield scalars
    finally:
        if scalars is not None:
            scalars.close()

