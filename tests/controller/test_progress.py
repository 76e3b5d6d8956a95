"""The non-interactive progress lines of ``gannas search`` (logs and CI have no terminal)."""

from __future__ import annotations

import pytest

from nas.progress import RichProgress


def test_progress_lines_show_trials_best_fid_and_eta(capsys, monkeypatch):
    clock = iter([100.0, 100.0, 160.0, 160.0])
    monkeypatch.setattr("nas.progress.time.perf_counter", lambda: next(clock))
    with RichProgress() as progress:
        sink = progress.sink()
        sink.on_start("s", 4, 1)
        sink.on_update(1, None, 2)
        sink.on_update(2, 3.25, 2)
    lines = capsys.readouterr().err.splitlines()
    assert "1/4 trials finished so far" in lines[0]
    assert "finished 1/4, best FID -, running 2, ETA unknown" in lines[1]
    # one trial took 60 s in this run, two remain
    assert "finished 2/4, best FID 3.250, running 2, ETA 2m00s" in lines[2]


@pytest.mark.parametrize("finished", [4, 5])
def test_eta_is_zero_once_the_target_is_reached(finished):
    progress = RichProgress()
    progress._target = 4
    assert progress._eta(finished) == "0s"
