"""Loading in a thread that then exits, so that the batcher's OpenMP threads are the only ones the process keeps.

torch's CPU ops run on OpenMP, and GNU OpenMP (libgomp) keeps a pool of worker threads for every thread that
ran a parallel op. Between two ops, those workers wait spinning for about 3 ms, and then sleep. But once the
pooled threads in the process outnumber the CPUs, libgomp lets every pool spin for only 100 turns. After
that, each op has to wake sleeping threads through the kernel.

A model loaded in a route's worker thread (anyio keeps those alive while requests come) leaves such a pool
behind. Then the batcher thread's pool is the second one, and every decoding step pays those wake-ups. Measured
(16 greedy requests × 64 tokens through the engine in its own thread, SmolLM2-135M bf16, 2 threads of a 2-core
AMD EPYC): 93-118 tokens/s with the model loaded in a thread that stays alive, 140-150 tokens/s with the
loading thread gone. The same packed linears alone: 20.5 ms with a second pool, 12.1 ms without it.
"""
from __future__ import annotations

import threading
from typing import Callable, TypeVar

T = TypeVar("T")


def in_passing_thread(work: Callable[[], T]) -> T:
    """work()'s result (or its exception), computed in a new thread that exits afterwards, taking its OpenMP pool with it."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # re-raised in the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=run, name="tunesmith-load")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
