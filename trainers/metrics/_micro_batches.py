"""Run a CPU forward over small micro-batches, one per core, instead of one large intra-op-parallel batch.

Two measurements on the 2-core benchmark machine (``benchmarks/results/fid_speed.md``) motivate this:

* **Small batches are faster on the CPU.** Inception's early activations are large (64 channels at
  147x147 is 5.5 MB per image): at batch 64 every layer streams hundreds of MB through memory, at
  batch 4-8 much of it stays in cache. One torch thread: 7.4 images/s at batch 8 against 6.0 at batch 64;
  two threads, one micro-batch per core: 15.3 images/s at 4, 14.5 at 8, 13.6 at 16.
* **One micro-batch per core beats splitting every op across cores.** Intra-op parallelism puts a
  barrier after each of Inception's ~200 ops; when a core is shared with anything else (a Ray worker,
  the training loop, another trial), every barrier waits for the slowest thread. Running whole
  micro-batches on separate threads, each with one intra-op thread, has no per-op barrier.

Each micro-batch is computed by exactly the same single-threaded kernels whichever thread runs it, so
the features do not depend on the thread count (tested bit-for-bit).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

__all__ = ["MicroBatchRunner"]


def _single_threaded_worker(ready: threading.Barrier) -> None:
    # OpenMP's thread count is per calling thread, so this limits only this pool thread.
    torch.set_num_threads(1)
    ready.wait()


class MicroBatchRunner:
    """Apply ``fn`` to ``images`` in micro-batches of ``micro_batch`` images, one thread per core.

    ``fn`` maps a (n, ...) tensor to a tuple of (n, ...) tensors; the results are concatenated in
    order. The number of threads is the caller's ``torch.get_num_threads()`` at call time (so a trial
    limited to k CPUs uses k), capped by the number of micro-batches; with one, the micro-batches run
    one after another in the calling thread. The pool is created on first use and kept until the
    thread count changes or :meth:`close`.
    """

    def __init__(self, micro_batch: int) -> None:
        if micro_batch < 1:
            raise ValueError(f"micro_batch must be >= 1, got {micro_batch}")
        self.micro_batch = micro_batch
        self._pool: ThreadPoolExecutor | None = None
        self._pool_threads = 0
        self._lock = threading.Lock()

    def _get_pool(self, threads: int) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is not None and self._pool_threads != threads:
                self._pool.shutdown(wait=True)
                self._pool = None
            if self._pool is None:
                # torch.set_num_threads also stores a process-wide default that threads created
                # later inherit; start every pool thread now, wait until each has set its own count,
                # then restore the caller's value so nothing outside the pool sees a change.
                caller_threads = torch.get_num_threads()
                ready = threading.Barrier(threads + 1)
                pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gannas-fid")
                for _ in range(threads):
                    pool.submit(_single_threaded_worker, ready)
                ready.wait()
                torch.set_num_threads(caller_threads)
                self._pool, self._pool_threads = pool, threads
            return self._pool

    def __call__(
        self, fn: Callable[[torch.Tensor], tuple[torch.Tensor, ...]], images: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        chunks = list(torch.split(images, self.micro_batch))
        threads = min(torch.get_num_threads(), len(chunks))
        if threads == 1:
            outputs = [fn(chunk) for chunk in chunks]
        else:

            def run(chunk: torch.Tensor) -> tuple[torch.Tensor, ...]:
                with torch.no_grad():  # grad mode is per thread; the caller's does not carry over
                    return fn(chunk)

            outputs = list(self._get_pool(threads).map(run, chunks))
        return tuple(torch.cat(parts) for parts in zip(*outputs, strict=True))

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def __del__(self) -> None:  # a runner dropped without close() must not leak its threads
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)
