from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import pytest
import torch
from torch import nn

from gannas.errors import DatasetError
from search_spaces.config import TrainingConfig
from trainers import (
    ImageData,
    NullReporter,
    RecordingReporter,
    TrainResult,
    load_dataset,
    train_gan,
)
from trainers.loop import resolve_device

CONFIG = TrainingConfig(batch_size=16)


def _run(g: nn.Module, d: nn.Module, data: ImageData, **overrides: object) -> TrainResult:
    kwargs: dict[str, object] = {
        "config": CONFIG,
        "budget": 6,
        "eval_at": [],
        "evaluator": lambda generator, *, seed: {"fid": 1.0},
        "reporter": NullReporter(),
        "seed": 0,
        "device": "cpu",
    }
    kwargs.update(overrides)
    return train_gan(g, d, data, **kwargs)  # type: ignore[arg-type]


def test_completes_budget_and_evaluates_at_eval_points(
    tiny_data: ImageData, make_models: Callable[..., tuple[nn.Module, nn.Module]]
) -> None:
    g, d = make_models()
    seen: list[tuple[bool, int]] = []
    counter = iter(range(100))

    def evaluator(generator: nn.Module, *, seed: int) -> dict[str, float]:
        seen.append((generator.training, seed))
        assert not torch.is_grad_enabled()
        return {"fid": float(next(counter)), "kid": 0.5}

    reporter = RecordingReporter()
    logged: list[tuple[int, float, float]] = []
    result = _run(
        g,
        d,
        tiny_data,
        budget=20,
        eval_at=[10, 5, 5, 50],
        evaluator=evaluator,
        reporter=reporter,
        seed=3,
        on_log=lambda *row: logged.append(row),
    )
    assert result.status == "completed" and result.reason is None
    assert result.steps == 20
    # Duplicates collapse, steps past the budget are dropped, the final step is always evaluated.
    assert [step for step, _ in reporter.reports] == [5, 10, 20]
    assert reporter.reports == result.history
    assert result.history[-1] == (20, {"fid": 2.0, "kid": 0.5})
    assert result.metrics == {"fid": 2.0, "kid": 0.5}
    assert seen == [(False, 3)] * 3  # eval mode, the run's seed
    assert result.generator is g and g.training  # back in train mode afterwards
    assert [row[0] for row in result.losses] == [10, 20]
    assert logged == result.losses
    assert all(math.isfinite(d_loss) and math.isfinite(g_loss) for _, d_loss, g_loss in logged)
    assert result.wall_time_s > 0
    assert all(p.device.type == "cpu" for p in result.generator.parameters())


def test_reporter_stops_training(
    tiny_data: ImageData, make_models: Callable[..., tuple[nn.Module, nn.Module]]
) -> None:
    g, d = make_models()
    reporter = RecordingReporter(stop_after=lambda step, metrics: step >= 10)
    result = _run(g, d, tiny_data, budget=30, eval_at=[5, 10, 15], reporter=reporter)
    assert result.status == "stopped"
    assert result.steps == 10  # of the budget of 30
    assert [step for step, _ in reporter.reports] == [5, 10]
    assert result.reason is not None and "step 10" in result.reason
    assert [row[0] for row in result.losses] == [10]  # logged once, by the schedule


def test_a_stopped_run_records_the_losses_of_its_last_step(
    tiny_data: ImageData, make_models: Callable[..., tuple[nn.Module, nn.Module]]
) -> None:
    # Stopped at step 4, before log_every's first step (10): the curve still has that step.
    g, d = make_models()
    logged: list[tuple[int, float, float]] = []
    reporter = RecordingReporter(stop_after=lambda step, metrics: step >= 4)
    result = _run(
        g, d, tiny_data, budget=30, eval_at=[4, 12, 24], reporter=reporter,
        on_log=lambda *row: logged.append(row),
    )  # fmt: skip
    assert result.status == "stopped" and result.steps == 4
    assert [row[0] for row in result.losses] == [4]
    assert logged == result.losses
    assert all(math.isfinite(v) for v in result.losses[0][1:])
    # Stopped at 14: the schedule's step 10, then the step it stopped at.
    g, d = make_models()
    reporter = RecordingReporter(stop_after=lambda step, metrics: step >= 14)
    result = _run(g, d, tiny_data, budget=30, eval_at=[14, 28], reporter=reporter)
    assert [row[0] for row in result.losses] == [10, 14]


def test_stop_request_at_the_final_evaluation_still_completes(
    tiny_data: ImageData, make_models: Callable[..., tuple[nn.Module, nn.Module]]
) -> None:
    g, d = make_models()
    reporter = RecordingReporter(stop_after=lambda step, metrics: True)
    result = _run(g, d, tiny_data, budget=4, eval_at=[], reporter=reporter)
    assert result.status == "completed" and result.steps == 4


class _PoisonedDiscriminator(nn.Module):
    """Returns ``value`` on its ``poison_call``-th forward (1-based)."""

    def __init__(self, inner: nn.Module, *, poison_call: int, value: float) -> None:
        super().__init__()
        self.inner = inner
        self.poison_call = poison_call
        self.value = value
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.inner(x)
        if self.calls == self.poison_call:
            out = out + self.value
        return out


@pytest.mark.parametrize(
    ("poison_call", "value", "expected"),
    [
        # With d_steps=1 each step calls D three times: real, fake (D loss), fake (G loss).
        (7, math.nan, "discriminator loss is nan at step 3"),
        (9, math.inf, "generator loss is -inf at step 3"),  # hinge G loss is -mean(scores)
        (2, math.inf, "discriminator loss is inf at step 1"),  # the fake pass: relu(1 + inf)
    ],
)
def test_non_finite_loss_diverges(
    tiny_data: ImageData,
    make_models: Callable[..., tuple[nn.Module, nn.Module]],
    poison_call: int,
    value: float,
    expected: str,
) -> None:
    g, d = make_models()
    poisoned = _PoisonedDiscriminator(d, poison_call=poison_call, value=value)
    reporter = RecordingReporter()
    result = _run(
        g, poisoned, tiny_data, budget=10, eval_at=[1, 2, 3, 4], reporter=reporter, log_every=100
    )
    assert result.status == "diverged"
    assert result.reason == expected
    step = int(expected.rsplit(" ", 1)[1])
    assert result.steps == step
    assert [s for s, _ in reporter.reports] == list(range(1, step))
    assert result.losses[-1][0] == step  # the blow-up is recorded in the loss curve
    assert poisoned.calls == 3 * step  # nothing ran after the diverging step


def test_discriminator_step_named_when_several(
    tiny_data: ImageData, make_models: Callable[..., tuple[nn.Module, nn.Module]]
) -> None:
    g, d = make_models()
    # d_steps=2: calls per step are 2 + 2 + 1; call 4 is the second D step's fake pass of step 1.
    poisoned = _PoisonedDiscriminator(d, poison_call=4, value=math.nan)
    result = _run(g, poisoned, tiny_data, config=CONFIG.model_copy(update={"d_steps": 2}))
    assert result.reason == "discriminator loss (D step 2 of 2) is nan at step 1"


def test_non_finite_fid_diverges(
    tiny_data: ImageData, make_models: Callable[..., tuple[nn.Module, nn.Module]]
) -> None:
    g, d = make_models()
    values = iter([3.0, math.nan])
    reporter = RecordingReporter()
    result = _run(
        g,
        d,
        tiny_data,
        budget=10,
        eval_at=[2, 4, 6],
        reporter=reporter,
        evaluator=lambda generator, *, seed: {"fid": next(values)},
    )
    assert result.status == "diverged"
    assert result.reason == "fid is nan at step 4"
    assert result.steps == 4
    assert reporter.reports == [(2, {"fid": 3.0})]  # a non-finite value is never reported
    assert result.history[-1][0] == 4 and math.isnan(result.history[-1][1]["fid"])


class _ExplodingGenerator(nn.Module):
    def __init__(self, inner: nn.Module, *, fail_call: int, error: BaseException) -> None:
        super().__init__()
        self.inner = inner
        self.latent_dim = inner.latent_dim
        self.fail_call = fail_call
        self.error = error
        self.calls = 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_call:
            raise self.error
        return self.inner(z)


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA error: out of memory"),
        RuntimeError("[enforce fail at alloc_cpu.cpp] DefaultCPUAllocator: can't allocate memory"),
    ],
)
def test_out_of_memory_ends_the_run(
    tiny_data: ImageData,
    make_models: Callable[..., tuple[nn.Module, nn.Module]],
    error: BaseException,
) -> None:
    inner, d = make_models()
    g = _ExplodingGenerator(inner, fail_call=5, error=error)  # 2 calls per step: step 3's D pass
    result = _run(g, d, tiny_data, budget=10)
    assert result.status == "out_of_memory"
    assert result.reason is not None
    assert result.reason.startswith("out of memory at step 3: ")
    assert "memory" in result.reason.split(": ", 1)[1]
    assert result.steps == 2
    assert result.generator is g


def test_other_errors_propagate(
    tiny_data: ImageData, make_models: Callable[..., tuple[nn.Module, nn.Module]]
) -> None:
    inner, d = make_models()
    g = _ExplodingGenerator(inner, fail_call=3, error=RuntimeError("shape mismatch"))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        _run(g, d, tiny_data)


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("loss", ["bce", "hinge", "wgan_gp"])
def test_same_seed_is_bitwise_reproducible(
    tiny_data: ImageData, make_models: Callable[..., tuple[nn.Module, nn.Module]], loss: str
) -> None:
    config = TrainingConfig(loss=loss, batch_size=24, d_steps=2)  # 24 does not divide 64
    runs = []
    for seed in (5, 5, 6):
        g, d = make_models(seed=0)
        runs.append(_run(g, d, tiny_data, config=config, budget=8, seed=seed, log_every=1))
    first, second, other = runs
    assert first.losses == second.losses
    assert len(first.losses) == 8
    state_a, state_b = _state(first.generator), _state(second.generator)
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert other.losses != first.losses  # the seed drives batches and noise


def test_ema_is_the_hand_computed_average(
    tiny_data: ImageData, make_models: Callable[..., tuple[nn.Module, nn.Module]]
) -> None:
    g, d = make_models()
    decay = 0.5
    config = CONFIG.model_copy(update={"ema_decay": decay})
    snapshots = [_state(g)]
    evaluated: list[nn.Module] = []

    def evaluator(generator: nn.Module, *, seed: int) -> dict[str, float]:
        evaluated.append(generator)
        return {"fid": 0.0}

    result = _run(
        g,
        d,
        tiny_data,
        config=config,
        budget=2,
        evaluator=evaluator,
        log_every=1,
        on_log=lambda step, d_loss, g_loss: snapshots.append(_state(g)),
    )
    assert result.status == "completed"
    ema = result.generator
    assert ema is not g and evaluated == [ema]
    w0, w1, w2 = snapshots
    ema_state = ema.state_dict()
    param_names = {name for name, _ in g.named_parameters()}
    assert param_names  # the check below covers real parameters
    for name in param_names:
        expected = decay * (decay * w0[name] + (1 - decay) * w1[name]) + (1 - decay) * w2[name]
        assert torch.allclose(ema_state[name], expected, atol=1e-7), name
        assert not torch.equal(ema_state[name], w2[name])  # it really is an average
    buffers = {name for name, _ in g.named_buffers()}
    assert "net.1.running_mean" in buffers
    for name in buffers:  # BatchNorm statistics follow the live model
        assert torch.equal(ema_state[name], w2[name]), name
    assert not any(p.requires_grad for p in ema.parameters())


@pytest.mark.parametrize(("loss", "per_d_step"), [("hinge", 2), ("wgan_gp", 3)])
@pytest.mark.parametrize("d_steps", [1, 3])
def test_d_steps_respected(
    tiny_data: ImageData,
    make_models: Callable[..., tuple[nn.Module, nn.Module]],
    loss: str,
    per_d_step: int,
    d_steps: int,
) -> None:
    g, d = make_models()
    config = TrainingConfig(loss=loss, d_steps=d_steps, batch_size=8)
    result = _run(g, d, tiny_data, config=config, budget=5)
    assert result.status == "completed"
    # Each D step scores real and fake (plus the interpolates for the gradient penalty);
    # each G step scores one fake batch.
    assert d.calls == 5 * (d_steps * per_d_step + 1)


def test_learns_digits(
    make_models: Callable[..., tuple[nn.Module, nn.Module]],
    stand_in_evaluator: Callable[[ImageData], Callable[..., dict[str, float]]],
) -> None:
    data = load_dataset("digits", resolution=16)
    evaluator = stand_in_evaluator(data)
    g, d = make_models(seed=0, latent_dim=16, resolution=16, hidden=64)
    g.eval()
    untrained = evaluator(g, seed=0)["fid"]
    config = TrainingConfig(batch_size=32, lr_g=1e-3, lr_d=1e-3, beta1=0.5, beta2=0.999)
    result = _run(g, d, data, config=config, budget=150, eval_at=[75], evaluator=evaluator)
    assert result.status == "completed"
    assert result.metrics["fid"] < 0.25 * untrained


def test_argument_errors(
    tiny_data: ImageData, make_models: Callable[..., tuple[nn.Module, nn.Module]]
) -> None:
    g, d = make_models()
    with pytest.raises(ValueError, match="budget must be a positive"):
        _run(g, d, tiny_data, budget=0)
    with pytest.raises(ValueError, match=r"eval_at steps must be >= 1, got \[-1, 0\]"):
        _run(g, d, tiny_data, eval_at=[0, 3, -1])
    with pytest.raises(ValueError, match="log_every"):
        _run(g, d, tiny_data, log_every=0)
    with pytest.raises(TypeError, match="latent_dim"):
        _run(nn.Linear(2, 2), d, tiny_data)


def test_shape_mismatch_between_generator_and_data(
    tiny_data: ImageData, make_models: Callable[..., tuple[nn.Module, nn.Module]]
) -> None:
    g, d = make_models(channels=3)
    with pytest.raises(DatasetError, match=r"\(3, 8, 8\) but dataset 'tiny' holds \(1, 8, 8\)"):
        _run(g, d, tiny_data)


def test_device_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None) == torch.device("cuda")
    assert resolve_device("auto") == torch.device("cuda")  # as `gannas search --device auto`
    assert resolve_device("cpu") == torch.device("cpu")


def test_evaluator_metrics_become_floats(
    tiny_data: ImageData, make_models: Callable[..., tuple[nn.Module, nn.Module]]
) -> None:
    g, d = make_models()

    def evaluator(generator: nn.Module, *, seed: int) -> Mapping[str, float]:
        return {"fid": torch.tensor(2.5)}  # type: ignore[dict-item]

    result = _run(g, d, tiny_data, budget=2, evaluator=evaluator)
    assert result.metrics == {"fid": 2.5} and type(result.metrics["fid"]) is float
