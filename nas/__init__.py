"""The search controller and the ``gannas`` CLI.

``run_search`` drives an Optuna study in an SQL database and dispatches trials to Ray workers.
Imported lazily so that ``gannas --help`` does not pay for torch, Ray or Optuna.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "HowToSearch",
    "ScoringSettings",
    "SearchInterrupted",
    "SearchProgress",
    "SearchSummary",
    "WhatToSearch",
    "WhereToRun",
    "export_trial",
    "run_search",
]

_SOURCES = {
    "HowToSearch": "nas.settings",
    "ScoringSettings": "nas.settings",
    "WhatToSearch": "nas.settings",
    "WhereToRun": "nas.settings",
    "SearchInterrupted": "nas.controller",
    "SearchProgress": "nas.controller",
    "SearchSummary": "nas.controller",
    "run_search": "nas.controller",
    "export_trial": "nas.export",
}


def __getattr__(name: str) -> Any:
    if name in _SOURCES:
        import importlib

        return getattr(importlib.import_module(_SOURCES[name]), name)
    raise AttributeError(f"module 'nas' has no attribute {name!r}")
