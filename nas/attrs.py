"""Names of the attributes gannas stores on Optuna studies and trials.

The Optuna study is the single source of truth: everything needed to rebuild, compare, resume or
export a trial lives in these attributes, never in a second store.
"""

from __future__ import annotations

# --- trial user attributes (shown in optuna-dashboard) ---
ARCH = "gannas.arch"
"""The full ArchConfig as JSON: rebuilds the trial's G and D exactly."""
PROTOCOL = "gannas.protocol"
"""The FID protocol: feature network, weights hash, sample counts, resolution, dataset."""
PARAMS_G = "gannas.params_g"
PARAMS_D = "gannas.params_d"
WALL_TIME = "gannas.wall_time_s"
FID = "gannas.fid"
"""The trial's final FID (the objective's first value; kept even for multi-objective studies)."""
METRICS = "gannas.metrics"
"""Final metrics of the trial: fid, and kid/is when measured."""
HISTORY = "gannas.history"
"""Every evaluation: [[step, {metric: value}], ...]."""
STATUS = "gannas.status"
"""completed / stopped (pruned) / diverged / out_of_memory / error / lost / interrupted."""
STATUS_INTERRUPTED = "interrupted"
"""The status of a trial the user's Ctrl-C stopped: retried without using up an attempt."""
FAIL_REASON = "gannas.fail_reason"
FAIL_KIND = "gannas.fail_kind"
"""``trial`` (the architecture failed: divergence, OOM, an error in training) or ``infra`` (the
worker or controller died). Only ``trial`` failures count as finished; ``infra`` ones are retried."""
WORKER = "gannas.worker"
"""host:pid of the worker process that ran the trial."""
ATTEMPT = "gannas.attempt"
RETRY_OF = "gannas.retry_of"
CHECKPOINT = "gannas.checkpoint_artifact"

# --- study user attributes (the study's identity) ---
STUDY_IDENTITY = "gannas.identity"
"""What must not change when a study is continued: space, dataset, budget and scoring."""
STUDY_OBJECTIVES = "gannas.objectives"
STUDY_SPACE_YAML = "gannas.space_yaml"

FAIL_KIND_TRIAL = "trial"
FAIL_KIND_INFRA = "infra"
