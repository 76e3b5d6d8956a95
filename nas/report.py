"""A self-contained HTML report of a study: best trials, FID history, importances, Pareto front,
sample grids.

The page is one ``index.html`` with every image inlined as a base64 PNG and its CSS in a
``<style>`` block: no script, no external file, no network (a Content-Security-Policy meta tag
forbids loading anything else), so it can be mailed, attached to a CI run or opened from disk.
Everything it shows is read from the study database (the source of truth) and, for sample grids,
from the artifact store; every piece of text from there is HTML-escaped.
"""

from __future__ import annotations

import base64
import datetime as _dt
import functools
import html
import io
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gannas._files import describe_os_error, make_dirs, mkstemp, remove_dirs
from gannas.errors import GannasError

if TYPE_CHECKING:  # pragma: no cover
    import optuna
    from matplotlib.figure import Figure
    from optuna.artifacts._protocol import ArtifactStore
    from optuna.trial import FrozenTrial

__all__ = ["REPORT_FILENAME", "write_report"]

REPORT_FILENAME = "index.html"

_PARAMS_G = "gannas.params_g"
_PARAMS_D = "gannas.params_d"
_WALL_TIME = "gannas.wall_time_s"
_FAIL_REASON = "gannas.fail_reason"

_INLINE_IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}
_MAX_INLINE_BYTES = 8 * 1024 * 1024  # a sample grid is ~100 KB; refuse to bloat the page
_MAX_FAILED_ROWS = 20
_MAX_PLOTTED_OBJECTIVES = 4

_CSS = """
body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", Arial, sans-serif; margin: 2em;
       color: #222; max-width: 1200px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
h3 { font-size: 1.05em; margin: 0.8em 0 0.3em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.meta { color: #555; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5em 0.8em; }
.empty { background: #eef4ff; border-left: 4px solid #4a7bd0; padding: 0.8em 1em; }
.params { font-family: "DejaVu Sans Mono", monospace; font-size: 0.85em; white-space: pre-line; }
.plots img { max-width: 100%; border: 1px solid #ddd; }
/* Sample grids are small (e.g. 8x8 images of 32 px): enlarge them without blurring. */
.samples img { min-width: 192px; max-width: 100%; image-rendering: pixelated;
               border: 1px solid #ddd; }
.samples { display: flex; flex-wrap: wrap; gap: 1.2em; }
.samples figure { margin: 0; }
figcaption { font-size: 0.85em; color: #444; margin-top: 0.2em; }
"""

# No script, no remote or local files: only inline styles and data: images may load.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


def _fmt_float(value: float | None) -> str:
    if value is None:
        return "—"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}"


def _fmt_value(value: object) -> str:
    if isinstance(value, float):
        return _fmt_float(value)
    return str(value)


def _fmt_count(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "—"
    if value >= 1e6:
        return f"{value / 1e6:.2f} M"
    return f"{value:,.0f}"


def _fmt_seconds(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "—"
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(int(round(value)), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _objective_names(study: optuna.Study) -> list[str]:
    from nas.pareto import objective_names

    return objective_names(study)


# --------------------------------------------------------------------------------------------
# Plots (matplotlib's Agg canvas, no pyplot global state)
# --------------------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _img(data: bytes, alt: str, *, mimetype: str = "image/png") -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:{_e(mimetype)};base64,{encoded}">'


def _finite(values: Iterable[tuple[float, float]]) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for x, y in values:
        if math.isfinite(y):
            xs.append(x)
            ys.append(y)
    return xs, ys


def _history_png(
    study: optuna.Study,
    completed: Sequence[FrozenTrial],
    pruned: Sequence[FrozenTrial],
    *,
    x_of: Callable[[FrozenTrial], float | None],
    xlabel: str,
) -> bytes:
    """One panel per objective: completed trials, pruned trials at their last reported value, and
    the best-so-far curve (single objective)."""
    from optuna.study import StudyDirection

    names = _objective_names(study)[:_MAX_PLOTTED_OBJECTIVES]
    fig = _figure(7.0, 2.8 * len(names))
    for i, name in enumerate(names):
        ax = fig.add_subplot(len(names), 1, i + 1)
        points = sorted(
            (x, t.values[i]) for t in completed if t.values and (x := x_of(t)) is not None
        )
        xs, ys = _finite(points)
        ax.scatter(xs, ys, s=18, color="#1f77b4", label="complete", zorder=3)
        if len(study.directions) == 1:
            better = min if study.direction == StudyDirection.MINIMIZE else max
            best: list[float] = []
            for y in ys:
                best.append(y if not best else better(best[-1], y))
            if best:
                ax.step(xs, best, where="post", color="#d62728", linewidth=1.2, label="best so far")
            last = [
                (x, t.intermediate_values[max(t.intermediate_values)])
                for t in pruned
                if t.intermediate_values and (x := x_of(t)) is not None
            ]
            px, py = _finite(last)
            if px:
                ax.scatter(px, py, s=22, marker="x", color="#888888", label="pruned (last report)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    return _png(fig)


def _bar_png(labels: Sequence[str], values: Sequence[float], *, xlabel: str) -> bytes:
    fig = _figure(7.0, 0.45 * len(labels) + 1.2)
    ax = fig.add_subplot(1, 1, 1)
    order = list(range(len(labels)))[::-1]  # largest on top
    ax.barh([labels[i] for i in order], [values[i] for i in order], color="#1f77b4")
    ax.set_xlabel(xlabel)
    ax.grid(True, axis="x", alpha=0.3)
    return _png(fig)


def _pareto_png(
    study: optuna.Study, completed: Sequence[FrozenTrial], front: Sequence[FrozenTrial]
) -> bytes:
    names = _objective_names(study)
    front_ids = {t._trial_id for t in front}
    fig = _figure(6.0, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    rest = [
        (t.values[0], t.values[1]) for t in completed if t._trial_id not in front_ids and t.values
    ]
    best = sorted((t.values[0], t.values[1]) for t in front if t.values)
    rx, ry = zip(*rest, strict=True) if rest else ((), ())
    ax.scatter(rx, ry, s=18, color="#aaaaaa", label="dominated")
    if best:
        bx, by = zip(*best, strict=True)
        ax.scatter(bx, by, s=30, color="#d62728", label="Pareto front", zorder=3)
        ax.plot(bx, by, color="#d62728", linewidth=0.8, alpha=0.6)
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _png(fig)


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


def _params_cell(params: dict[str, Any]) -> str:
    if not params:
        return "—"
    return "\n".join(f"{_e(k)} = {_e(_fmt_value(v))}" for k, v in sorted(params.items()))


def _checkpoint_cell(study: optuna.Study, trial: FrozenTrial, store: ArtifactStore | None) -> str:
    from storage.artifacts import is_checkpoint_artifact, is_checkpoint_pruned, trial_artifacts

    if is_checkpoint_pruned(study, trial.number):
        return "pruned"
    if any(is_checkpoint_artifact(m) for m in trial_artifacts(study, trial)):
        return "stored" if store is not None else "stored (store not given)"
    return "—"


def _trials_table(
    study: optuna.Study, trials: Sequence[FrozenTrial], store: ArtifactStore | None
) -> str:
    names = _objective_names(study)
    head = "".join(f"<th>{_e(n)}</th>" for n in names)
    rows = []
    for rank, t in enumerate(trials, start=1):
        values = t.values or [None] * len(names)
        cells = "".join(f'<td class="num">{_e(_fmt_float(v))}</td>' for v in values)
        wall = t.user_attrs.get(_WALL_TIME)
        if wall is None and t.duration is not None:
            wall = t.duration.total_seconds()
        rows.append(
            f'<tr class="trial-row" data-trial="{t.number}"><td class="num">{rank}</td>'
            f'<td class="num">{t.number}</td><td>{_e(t.state.name)}</td>{cells}'
            f'<td class="params">{_params_cell(t.params)}</td>'
            f'<td class="num" title="{_e(t.user_attrs.get(_PARAMS_G, ""))}">'
            f"{_e(_fmt_count(t.user_attrs.get(_PARAMS_G)))}</td>"
            f'<td class="num" title="{_e(t.user_attrs.get(_PARAMS_D, ""))}">'
            f"{_e(_fmt_count(t.user_attrs.get(_PARAMS_D)))}</td>"
            f'<td class="num">{_e(_fmt_seconds(wall))}</td>'
            f"<td>{_e(_checkpoint_cell(study, t, store))}</td></tr>"
        )
    return (
        '<table class="trials"><thead><tr><th>rank</th><th>trial</th><th>state</th>'
        f"{head}<th>parameters</th><th>G params</th><th>D params</th><th>wall time</th>"
        f"<th>checkpoint</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _objective_value(trial: FrozenTrial, *, index: int) -> float:
    assert trial.values is not None  # optuna passes COMPLETE trials only
    return trial.values[index]


def _importance_section(study: optuna.Study, n_completed: int) -> str:
    import optuna

    parts = ["<h2>Parameter importances</h2>"]
    if n_completed < 2:
        parts.append(
            '<p class="note">Parameter importances need at least 2 completed trials; this study '
            f"has {n_completed}.</p>"
        )
        return "".join(parts)
    names = _objective_names(study)
    for i, name in enumerate(names[:_MAX_PLOTTED_OBJECTIVES]):
        if len(names) > 1:
            parts.append(f"<h3>{_e(name)}</h3>")
        target: Callable[[FrozenTrial], float] | None = None
        if len(names) > 1:
            target = functools.partial(_objective_value, index=i)
        try:
            importances = optuna.importance.get_param_importances(
                study,
                evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
                target=target,
            )
        except Exception as exc:  # noqa: BLE001 - a report must render whatever the study holds
            parts.append(
                f'<p class="note">Parameter importances could not be computed: '
                f"{_e(type(exc).__name__)}: {_e(exc)}</p>"
            )
            continue
        if not importances:
            parts.append(
                '<p class="note">No parameter was sampled in every completed trial (or none was '
                "searched), so there is nothing to rank.</p>"
            )
            continue
        labels, values = list(importances), [float(v) for v in importances.values()]
        parts.append(
            '<div class="plots">'
            + _img(
                _bar_png(labels, values, xlabel=f"importance for {name} (fANOVA)"),
                f"importances {name}",
            )
            + "</div>"
        )
        rows = "".join(
            f'<tr><td>{_e(k)}</td><td class="num">{v:.3f}</td></tr>'
            for k, v in zip(labels, values, strict=True)
        )
        parts.append(
            f'<table class="importances"><thead><tr><th>parameter</th><th>importance</th></tr>'
            f"</thead><tbody>{rows}</tbody></table>"
        )
    return "".join(parts)


def _samples_section(
    study: optuna.Study, trials: Sequence[FrozenTrial], store: ArtifactStore | None
) -> str:
    from optuna.artifacts.exceptions import ArtifactNotFound

    from storage.artifacts import latest_artifact, read_artifact_bytes

    parts = ["<h2>Samples of the best trials</h2>"]
    if store is None:
        parts.append('<p class="note">No artifact store was given, so no samples are shown.</p>')
        return "".join(parts)
    figures = []
    for t in trials:
        shown = []
        for prefix, what in (("samples", "samples"), ("loss_curve", "loss curve")):
            meta = latest_artifact(study, t, prefix=prefix)
            if meta is None:
                if prefix == "samples":
                    shown.append('<p class="note">no samples stored</p>')
                continue
            caption = f"{what}: {meta.filename}"
            if meta.mimetype not in _INLINE_IMAGE_TYPES:
                shown.append(
                    f'<p class="note">{_e(caption)} is {_e(meta.mimetype)}, not an image</p>'
                )
                continue
            try:
                data = read_artifact_bytes(store, meta.artifact_id)
            except ArtifactNotFound:
                shown.append(
                    f'<p class="note">{_e(caption)} is missing from the artifact store</p>'
                )
                continue
            if len(data) > _MAX_INLINE_BYTES:
                shown.append(
                    f'<p class="note">{_e(caption)} is too large to inline ({len(data)} bytes)</p>'
                )
                continue
            shown.append(
                f"<div>{_img(data, f'trial {t.number} {caption}', mimetype=meta.mimetype)}"
                f"<figcaption>{_e(caption)}</figcaption></div>"
            )
        figures.append(
            f'<figure data-trial="{t.number}"><h3>trial {t.number}</h3>{"".join(shown)}</figure>'
        )
    parts.append(f'<div class="samples">{"".join(figures)}</div>')
    return "".join(parts)


def _pareto_section(
    study: optuna.Study, completed: Sequence[FrozenTrial], store: ArtifactStore | None
) -> str:
    front = sorted(
        study.best_trials, key=lambda t: (t.values[0] if t.values else math.inf, t.number)
    )
    parts = [
        '<h2 id="pareto">Pareto front</h2>',
        f"<p>{len(front)} of {len(completed)} completed trials are not dominated in any "
        "objective.</p>",
    ]
    if len(study.directions) > 2:
        parts.append('<p class="note">The plot shows the first two objectives only.</p>')
    parts.append(
        '<div class="plots">'
        + _img(_pareto_png(study, completed, front), "Pareto front")
        + "</div>"
    )
    parts.append(_trials_table(study, front, store))
    return "".join(parts)


def _final_stage_section(study: optuna.Study, store: ArtifactStore | None) -> str:
    """The final stage (``gannas retrain``): each retrained architecture's search and final
    scores, best final FID first, and which trial ``gannas export`` takes. Empty without one."""
    from nas.attrs import STUDY_IDENTITY
    from nas.export import best_final_stage_trial
    from nas.retrain import SEARCH_FID, load_final_study
    from nas.retrain import final_trials as retrained

    final = load_final_study(study)
    if final is None:
        return ""
    rows_of = retrained(final)
    identity = final.user_attrs.get(STUDY_IDENTITY) or {}
    searched = study.user_attrs.get(STUDY_IDENTITY) or {}
    parts = ['<h2 id="final-stage">Final stage</h2>']
    if not rows_of:
        parts.append(
            f'<p class="note">Study {_e(final.study_name)} holds no retrained trial yet; run '
            "<code>gannas retrain</code> again to train them.</p>"
        )
        return "".join(parts)

    def protocol(ident: dict[str, Any]) -> str:
        budget, samples = ident.get("budget"), ident.get("fid_samples")
        shown = [_e(v if v is not None else "?") for v in (budget, samples)]
        return f"{shown[0]} steps, {shown[1]} FID samples"

    exported = best_final_stage_trial(study)
    parts.append(
        f"<p>{len(rows_of)} trial(s) of study {_e(final.study_name)} retrain top architectures "
        f"of this search from scratch: {protocol(identity)} (the search: {protocol(searched)}). "
        + (
            f"<code>gannas export</code> takes final-stage trial {exported.number}, the best "
            "completed one with a stored checkpoint.</p>"
            if exported is not None
            else "No final-stage trial has completed with a stored checkpoint, so "
            "<code>gannas export</code> takes the search's best trial.</p>"
        )
    )
    names = _objective_names(final)
    # Finished trials by their first objective, then the rest (running, failed) by number.
    ordered = sorted(
        rows_of,
        key=lambda ts: (
            ts[0].values is None,
            ts[0].values[0] if ts[0].values else 0.0,
            ts[0].number,
        ),
    )
    rows = []
    for rank, (t, source) in enumerate(ordered, start=1):
        values = t.values or [None] * len(names)
        cells = "".join(f'<td class="num">{_e(_fmt_float(v))}</td>' for v in values)
        search_fid = t.user_attrs.get(SEARCH_FID)
        search_fid = float(search_fid) if isinstance(search_fid, (int, float)) else None
        rows.append(
            f'<tr class="trial-row" data-trial="{t.number}"><td class="num">{rank}</td>'
            f'<td class="num">{source}</td>'
            f'<td class="num">{_e(_fmt_float(search_fid))}</td>'
            f'<td class="num">{t.number}</td><td>{_e(t.state.name)}</td>{cells}'
            f"<td>{_e(_checkpoint_cell(final, t, store))}</td></tr>"
        )
    head = "".join(f"<th>final {_e(n)}</th>" for n in names)
    parts.append(
        '<table class="final"><thead><tr><th>rank</th><th>source trial</th><th>search fid</th>'
        f"<th>final trial</th><th>state</th>{head}<th>checkpoint</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    return "".join(parts)


def _fail_reason(trial: FrozenTrial) -> str:
    # gannas records its own reason; Optuna's is set when an objective function raised.
    reason = trial.user_attrs.get(_FAIL_REASON) or trial.system_attrs.get("fail_reason")
    return str(reason) if reason else "—"


def _failed_section(trials: Sequence[FrozenTrial]) -> str:
    failed = [t for t in trials if t.state.name == "FAIL"][-_MAX_FAILED_ROWS:]
    if not failed:
        return ""
    rows = "".join(
        f'<tr><td class="num">{t.number}</td><td>{_e(_fail_reason(t))}</td></tr>' for t in failed
    )
    return (
        f'<h2>Failed trials (last {len(failed)})</h2><table class="failed"><thead><tr>'
        f"<th>trial</th><th>reason</th></tr></thead><tbody>{rows}</tbody></table>"
    )


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def _header(study: optuna.Study, trials: Sequence[FrozenTrial]) -> str:
    counts = Counter(t.state.name for t in trials)
    states = ", ".join(f"{n} {_e(s.lower())}" for s, n in sorted(counts.items())) or "no trials"
    directions = ", ".join(
        f"{_e(name)} ({_e(d.name.lower())})"
        for name, d in zip(_objective_names(study), study.directions, strict=True)
    )
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"<h1>Study {_e(study.study_name)}</h1>"
        f'<p class="meta">{len(trials)} trials: {states}. Objectives: {directions}. '
        f"Report written {_e(now)}.</p>"
    )


def write_report(
    study: optuna.Study,
    out_dir: str | os.PathLike[str],
    *,
    artifact_store: ArtifactStore | None = None,
    top_k: int = 5,
) -> Path:
    """Write ``out_dir/index.html`` for ``study`` and return its path.

    Contents: the ``top_k`` best completed trials (number, state, values, parameters, G/D parameter
    counts from ``gannas.params_g``/``gannas.params_d``, wall time from ``gannas.wall_time_s``,
    checkpoint status); objective values against trial number and against elapsed time since the
    first trial started (pruned trials at their last reported value); fANOVA parameter importances
    (or a note when they cannot be computed); for multi-objective studies the Pareto front; the
    most recent ``samples*`` image (and ``loss_curve*``) of each top trial from
    ``artifact_store``; and the latest failure reasons. A study without completed trials gets a
    short page that says so. The file is written atomically (temp file + rename).
    """
    from optuna.trial import TrialState

    from storage.artifacts import rank_completed_trials

    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():  # before the slow part: this cannot succeed
        raise GannasError(
            f"cannot write the report to {out}: it is a file; expected a directory to hold "
            f"{REPORT_FILENAME} (created if missing)"
        )

    trials = study.get_trials(deepcopy=False)
    ranked = rank_completed_trials(study)
    title = f"gannas report: {study.study_name}"
    body = [_header(study, trials)]

    if not ranked:
        body.append(
            '<div class="empty" id="no-completed"><p><strong>No completed trials yet.</strong> '
            "Best trials, FID curves, importances and samples appear here once at least one trial "
            "has completed. Run or resume the search, then write this report again.</p></div>"
        )
        body.append(_failed_section(trials))
    else:
        top = ranked[:top_k]
        pruned = [t for t in trials if t.state == TrialState.PRUNED]
        body.append(f"<h2>Best trials (top {len(top)} of {len(ranked)} completed)</h2>")
        body.append(_trials_table(study, top, artifact_store))

        starts = [t.datetime_start for t in trials if t.datetime_start is not None]
        t0 = min(starts) if starts else None

        ends = [t.datetime_complete for t in [*ranked, *pruned] if t.datetime_complete is not None]
        span_s = (max(ends) - t0).total_seconds() if ends and t0 is not None else 0.0
        # Short smoke runs and week-long searches both get readable tick labels.
        unit, scale = (
            ("seconds", 1.0)
            if span_s < 120
            else ("minutes", 60.0)
            if span_s < 7200
            else ("hours", 3600.0)
        )

        def elapsed(t: FrozenTrial) -> float | None:
            end = t.datetime_complete
            if t0 is None or end is None:
                return None
            return (end - t0).total_seconds() / scale

        body.append("<h2>FID history</h2>")
        body.append(
            '<div class="plots">'
            + _img(
                _history_png(
                    study, ranked, pruned, x_of=lambda t: float(t.number), xlabel="trial number"
                ),
                "objective against trial number",
            )
            + _img(
                _history_png(study, ranked, pruned, x_of=elapsed, xlabel=f"elapsed time ({unit})"),
                "objective against elapsed time",
            )
            + "</div>"
        )
        n_inf = sum(1 for t in ranked if t.values and not all(math.isfinite(v) for v in t.values))
        if n_inf:
            body.append(
                f'<p class="note">{n_inf} completed trial(s) with a non-finite value are not '
                "plotted.</p>"
            )
        body.append(_importance_section(study, len(ranked)))
        if len(study.directions) > 1:
            body.append(_pareto_section(study, ranked, artifact_store))
        body.append(_samples_section(study, top, artifact_store))
        body.append(_final_stage_section(study, artifact_store))
        body.append(_failed_section(trials))

    text = _page(title, "\n".join(part for part in body if part))
    target = out / REPORT_FILENAME
    created: list[Path] = []
    try:
        # Made only now, and removed again if the write fails: a failed report leaves nothing.
        created = make_dirs(out)
        # The umask's mode (mkstemp alone gives 0600): a report is meant to be shared.
        fd, tmp = mkstemp(prefix=f".{REPORT_FILENAME}.", suffix=".tmp", dir=out)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        remove_dirs(created)
        raise GannasError(
            f"cannot write the report to {out}: {describe_os_error(exc)}"
        ) from None
    except BaseException:
        remove_dirs(created)
        raise
    return target
