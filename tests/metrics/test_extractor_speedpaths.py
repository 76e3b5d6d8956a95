"""The fast CPU paths of the Inception extractor give torch-fidelity's features (float32 rounding only)."""

from __future__ import annotations

import pytest
import torch

from trainers.metrics import InceptionFeatureExtractor, WeightsInfo
from trainers.metrics._inception import onednn_fusion_available

pytestmark = pytest.mark.skipif(not onednn_fusion_available(), reason="torch built without oneDNN")


@pytest.fixture(scope="module")
def reference(random_weights: WeightsInfo) -> InceptionFeatureExtractor:
    return InceptionFeatureExtractor(random_weights, device="cpu", fast=False)


def _assert_close(got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> None:
    for key in ("pool", "logits"):
        assert got[key].shape == ref[key].shape and got[key].dtype == torch.float32
        assert (got[key] - ref[key]).abs().max() <= 1e-5 * ref[key].abs().max(), key


def test_default_cpu_extractor_uses_the_fused_onednn_path(inception: InceptionFeatureExtractor) -> None:
    assert inception.variant == "fast+onednn"


@pytest.fixture(scope="module")
def three_images(image_sets: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return image_sets[1][:3]


@pytest.fixture(scope="module")
def reference_features(reference: InceptionFeatureExtractor, three_images: torch.Tensor) -> dict[str, torch.Tensor]:
    return reference.features(three_images)


def test_onednn_path_matches_reference_for_other_batch_sizes(
    random_weights: WeightsInfo, three_images: torch.Tensor, reference_features: dict[str, torch.Tensor]
) -> None:
    # Weights packed for batch 2, run on a batch of 3: oneDNN must cope with a ragged last batch.
    fused = InceptionFeatureExtractor(random_weights, device="cpu", batch_size_hint=2)
    assert fused.variant == "fast+onednn"
    _assert_close(fused.features(three_images), reference_features)


def test_onednn_path_handles_other_input_sizes(
    inception: InceptionFeatureExtractor, reference: InceptionFeatureExtractor
) -> None:
    images = torch.randint(0, 256, (2, 3, 48, 40), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    _assert_close(inception.features(images), reference.features(images))


def test_plain_fast_path_without_onednn_matches_reference(
    random_weights: WeightsInfo, three_images: torch.Tensor, reference_features: dict[str, torch.Tensor]
) -> None:
    plain = InceptionFeatureExtractor(random_weights, device="cpu", onednn=False)
    assert plain.variant == "fast"
    _assert_close(plain.features(three_images), reference_features)


def test_onednn_on_a_non_cpu_device_is_refused(random_weights: WeightsInfo) -> None:
    with pytest.raises(ValueError, match="onednn=True needs the CPU device"):
        InceptionFeatureExtractor(random_weights, device="meta", onednn=True)


@pytest.fixture()
def two_torch_threads():
    # The root conftest pins torch to one thread; the micro-batch pool only runs with more.
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_micro_batches_on_two_threads_give_the_single_threaded_features_bit_for_bit(
    random_weights: WeightsInfo,
    image_sets: tuple[torch.Tensor, torch.Tensor],
    reference: InceptionFeatureExtractor,
    two_torch_threads: None,
) -> None:
    images = image_sets[1][:5]  # micro-batches of 2, 2 and a ragged 1
    extractor = InceptionFeatureExtractor(random_weights, device="cpu", micro_batch=2)
    parallel = extractor.features(images)
    torch.set_num_threads(1)
    serial = extractor.features(images)
    for key in ("pool", "logits"):
        assert torch.equal(parallel[key], serial[key]), key
        assert not parallel[key].requires_grad
    _assert_close(parallel, reference.features(images))


def test_micro_batch_pool_leaves_the_callers_thread_count_alone(
    random_weights: WeightsInfo, image_sets: tuple[torch.Tensor, torch.Tensor], two_torch_threads: None
) -> None:
    import threading

    extractor = InceptionFeatureExtractor(random_weights, device="cpu", micro_batch=1)
    extractor.features(image_sets[1][:2])
    assert torch.get_num_threads() == 2
    # torch.set_num_threads in the pool threads also sets the default that new threads inherit:
    # the runner must have restored it.
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert seen == [2]


def test_negative_micro_batch_is_refused(random_weights: WeightsInfo) -> None:
    with pytest.raises(ValueError, match="micro_batch must be >= 0"):
        InceptionFeatureExtractor(random_weights, device="cpu", micro_batch=-1)
