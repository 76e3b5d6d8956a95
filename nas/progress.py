"""The progress bar of ``gannas search``: trials finished, best FID so far, ETA."""

from __future__ import annotations

import sys
import time
from typing import Any

from nas.controller import SearchProgress


class RichProgress:
    """A rich progress bar on a terminal; plain timestamped lines otherwise (logs, CI)."""

    def __init__(self) -> None:
        self._progress: Any = None
        self._task: Any = None
        self._started = time.perf_counter()
        self._first_finished = 0
        self._target = 0
        self._interactive = sys.stderr.isatty()

    def __enter__(self) -> RichProgress:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._console = Console(stderr=True)
        if self._interactive:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("best FID {task.fields[best]}"),
                TextColumn("running {task.fields[running]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self._console,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def _line(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        if self._progress is not None:
            self._progress.console.print(f"[dim]{stamp}[/dim] {text}", highlight=False)
        else:
            print(f"{stamp} {text}", file=sys.stderr, flush=True)

    def _eta(self, finished: int) -> str:
        """Remaining time at the rate of the trials finished by this run (unknown before one)."""
        done_now = finished - self._first_finished
        remaining = self._target - finished
        if remaining <= 0:
            return "0s"
        if done_now <= 0:
            return "unknown"
        seconds = (time.perf_counter() - self._started) / done_now * remaining
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"

    def sink(self) -> SearchProgress:
        state = {"last": None}

        def on_start(study: str, target: int, finished: int) -> None:
            self._first_finished = finished
            self._target = target
            self._started = time.perf_counter()
            if finished >= target:
                # Continued with a smaller --trials than it has run: nothing to do ("16/5").
                self._line(
                    f"study {study!r}: {finished} trials finished, --trials {target} reached"
                )
            else:
                self._line(f"study {study!r}: {finished}/{target} trials finished so far")
            if self._progress is not None:
                self._task = self._progress.add_task(
                    study, total=target, completed=finished, best="-", running=0
                )

        def on_update(finished: int, best: float | None, running: int) -> None:
            best_text = f"{best:.3f}" if best is not None else "-"
            if self._progress is not None and self._task is not None:
                self._progress.update(
                    self._task, completed=finished, best=best_text, running=running
                )
            elif state["last"] != (finished, best_text):
                state["last"] = (finished, best_text)
                self._line(
                    f"finished {finished}/{self._target}, best FID {best_text}, "
                    f"running {running}, ETA {self._eta(finished)}"
                )

        return SearchProgress(on_start=on_start, on_update=on_update, on_message=self._line)
