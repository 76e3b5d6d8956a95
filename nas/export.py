"""Export a trial's generator from the study and its artifact store to a self-describing directory."""

from __future__ import annotations

import platform
import tempfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from gannas._files import describe_os_error
from gannas.errors import CheckpointError, GannasError
from nas import attrs

EXPORT_FORMATS = ("torchscript", "onnx")


def pick_trial(study: optuna.Study, number: int | None) -> FrozenTrial:
    """The asked trial, else the best completed one (lowest FID) that still has a checkpoint.

    Without a number, a study with a final stage (``gannas retrain``) that has a completed,
    checkpointed trial gives the best of those instead: it was trained longer and scored on more
    samples than any search trial. ``number`` always refers to the study's own trials.
    """
    if number is None:
        final = best_final_stage_trial(study)
        if final is not None:
            return final
    trials = study.get_trials(deepcopy=False)
    if number is not None:
        for t in trials:
            if t.number == number:
                if t.state != TrialState.COMPLETE:
                    raise GannasError(
                        f"trial {number} of study {study.study_name!r} is {t.state.name}, not "
                        "COMPLETE; only completed trials have a generator to export"
                    )
                return t
        raise GannasError(
            f"study {study.study_name!r} has no trial {number} (it has {len(trials)} trials)"
        )
    from storage.artifacts import is_checkpoint_pruned

    done = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE
        and t.values
        and t.user_attrs.get(attrs.CHECKPOINT)
        and not is_checkpoint_pruned(study, t.number)
    ]
    if not done:
        raise GannasError(
            f"study {study.study_name!r} has no completed trial with a stored checkpoint yet"
        )
    return min(done, key=lambda t: t.values[0])


def best_final_stage_trial(study: optuna.Study) -> FrozenTrial | None:
    from nas.retrain import final_trials, load_final_study
    from storage.artifacts import is_checkpoint_pruned

    final = load_final_study(study)
    if final is None:
        return None
    done = [
        t
        for t, _ in final_trials(final)
        if t.state == TrialState.COMPLETE
        and t.values
        and t.user_attrs.get(attrs.CHECKPOINT)
        and not is_checkpoint_pruned(final, t.number)
    ]
    return min(done, key=lambda t: t.values[0]) if done else None


def _owning_study(study: optuna.Study, trial: FrozenTrial) -> optuna.Study:
    """``study``, or its final stage when ``trial`` is one of the final stage's trials."""
    from nas.retrain import load_final_study

    final = load_final_study(study)
    if final is not None and any(
        t._trial_id == trial._trial_id for t in final.get_trials(deepcopy=False)
    ):
        return final
    return study


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("gannas", "torch", "torchvision", "optuna", "ray", "torch-fidelity"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def load_trial_generator(
    study: optuna.Study, trial: FrozenTrial, artifacts: str
) -> tuple[Any, Any]:
    """Rebuild a trial's generator from its stored architecture and checkpoint artifact."""
    from optuna.artifacts import download_artifact
    from optuna.artifacts.exceptions import ArtifactNotFound
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from search_spaces import ArchConfig, build_generator
    from storage.artifacts import is_checkpoint_pruned, make_artifact_store

    arch_json = trial.user_attrs.get(attrs.ARCH)
    artifact_id = trial.user_attrs.get(attrs.CHECKPOINT)
    if arch_json is None:
        raise CheckpointError(f"trial {trial.number} has no stored architecture ({attrs.ARCH})")
    if artifact_id is None or is_checkpoint_pruned(study, trial.number):
        raise CheckpointError(
            f"trial {trial.number}'s generator checkpoint was not kept (only the best "
            "--keep-checkpoints trials keep theirs); pick another --trial"
        )
    arch = ArchConfig.model_validate(arch_json)
    store = make_artifact_store(artifacts, create=False)  # reading: never create a store
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "generator.safetensors"
        try:
            download_artifact(artifact_store=store, file_path=str(path), artifact_id=artifact_id)
        except (ArtifactNotFound, FileNotFoundError):  # Optuna's stores raise ArtifactNotFound
            raise CheckpointError(
                f"trial {trial.number}'s checkpoint (generator.safetensors, artifact "
                f"{artifact_id}) is missing from the artifact store {artifacts}; pass the store "
                "the search used with --artifacts"
            ) from None
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"trial {trial.number}'s checkpoint is corrupt: {exc}") from None
    generator = build_generator(arch)
    try:
        generator.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(
            f"trial {trial.number}'s checkpoint does not match its architecture: {first}"
        ) from None
    return generator.eval(), arch


def export_trial(
    study: optuna.Study,
    out: Path,
    *,
    trial_number: int | None,
    artifacts: str,
    formats: Sequence[str] = (),
    overwrite: bool = False,
) -> Path:
    from storage import save_generator

    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown:
        raise GannasError(
            f"unknown export format(s) {unknown}; expected some of {', '.join(EXPORT_FORMATS)} "
            "(safetensors is always written)"
        )
    trial = pick_trial(study, trial_number)
    # A final-stage trial belongs to the companion study: its checkpoint bookkeeping and its
    # identity (the longer budget) are there, and the provenance must name it.
    study = _owning_study(study, trial)
    generator, arch = load_trial_generator(study, trial, artifacts)
    identity = study.user_attrs.get(attrs.STUDY_IDENTITY, {})
    extra: dict[str, Any] = {}
    if "torchscript" in formats or "onnx" in formats:
        from storage.exporters import export_onnx, export_torchscript

        if "torchscript" in formats:
            extra["generator.torchscript.pt"] = lambda p: export_torchscript(
                generator, p, latent_dim=generator.latent_dim
            )
        if "onnx" in formats:
            extra["generator.onnx"] = lambda p: export_onnx(
                generator, p, latent_dim=generator.latent_dim
            )
    try:
        return save_generator(
            out,
            generator,
            arch,
            protocol=trial.user_attrs.get(attrs.PROTOCOL, {}),
            score={
                "fid": trial.user_attrs.get(attrs.FID, trial.values[0] if trial.values else None),
                "values": trial.values,
                "metrics": trial.user_attrs.get(attrs.METRICS, {}),
            },
            provenance={
                "study": study.study_name,
                "trial": trial.number,
                "dataset": identity.get("dataset"),
                "budget": identity.get("budget"),
                "versions": _versions(),
            },
            overwrite=overwrite,
            extra_files=extra,
        )
    except OSError as exc:
        # The output path is the user's input (read-only, under a file, no permission);
        # save_generator has already removed whatever it had started to write.
        raise CheckpointError(
            f"cannot write the export to {out}: {describe_os_error(exc)}"
        ) from None
