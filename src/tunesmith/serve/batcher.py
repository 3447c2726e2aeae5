"""The scheduler: one thread per loaded model that runs all its requests together (continuous batching).

A route calls `complete` or `generate_deltas` with the request's `BatchSlot` (its model's batcher and its
LoRA adapter); the request queues while the model is busy. Between decoding steps the thread takes
everything waiting, has the engine (models/decoding/engine.py, `RunningBatch`) prefill it and add its rows to the
running batch, then runs one step for all rows; rows finish on their own (end of turn, stop string, max
tokens) and leave. A request for a LoRA fine-tune runs in the same batch as the base and other adapters
(peft mixed-adapter inference).

Requests of a batch (/v1/batches, marked background) yield to interactive ones: interactive requests are admitted
first; background rows never take the last share of the rows (`BatchShares.reserve`, an eighth by default), so a chat
arriving during a batch job finds a free row at the next step instead of waiting for a batch row to finish; and while
any chat runs or waits, background rows may hold at most `BatchShares.beside_chats` of the rows (a quarter by
default; rows already decoding finish, new background requests wait), so the chat's decoding steps are not those of
a full batch. Both shares are server settings (serve/settings.py).

The thread holds the model's lock for each step, so the pool can add an adapter between steps. It exits
after a while without work and starts again on the next request.
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import AsyncIterator, Iterator

import torch

from tunesmith.models.chat import stop_token_ids
from tunesmith.models.decoding.engine import RunningBatch
from tunesmith.models.decoding.requests import Delta, GenerationRequest, SamplingParams, Usage


@dataclass(frozen=True)
class BatchShares:
    """How much of a model's rows background requests (batches, eval runs) may hold.

    beside_chats: while interactive requests run or wait, background rows hold at most this share of the rows;
    reserve: background rows never hold this last share of the rows (one row at least). Measured with the defaults
    (benchmarks/batch_priority.py, AMD EPYC): beside a 64-request batch, a chat's decoding 6.2-7.1 -> 11.4-11.5
    tokens/s and its first token 0.15-0.19 -> 0.08-0.13 s; the batch alone 8-10% slower."""

    beside_chats: float = 0.25
    reserve: float = 0.125

    def background_rows(self, max_rows: int, beside_chats: bool) -> int:
        """The most rows background requests may hold in a batch of `max_rows`, with chats beside them or not."""
        if beside_chats:
            return int(max_rows * self.beside_chats)
        return max_rows - max(1, int(max_rows * self.reserve))


@dataclass
class BatchStats:
    """What the batcher ran: for tests and for seeing batching work."""

    admitted: deque[int] = field(default_factory=lambda: deque(maxlen=1024))  # requests admitted together, latest admissions
    steps: int = 0  # decoding steps
    largest_batch: int = 0  # most rows decoded in one step


class Batcher:
    def __init__(self, served, max_rows: int = 64, collect_s: float = 0.01, idle_exit_s: float = 30.0,
                 shares: BatchShares = BatchShares()):
        """`served` (a model_pool.ServedModel) has .model (read at every step: the pool may wrap it for
        adapters), .tokenizer and .lock.

        max_rows: most rows (choices) decoded together; collect_s: how long an idle batcher waits for the
        neighbours of a first request; idle_exit_s: how long the thread lives without work; shares: how much of
        the rows background requests may hold.
        """
        self.served, self.max_rows, self.collect_s, self.idle_exit_s = served, max_rows, collect_s, idle_exit_s
        self.shares = shares
        self.end_ids = set(stop_token_ids(served.tokenizer))
        self.pending: queue.Queue[GenerationRequest] = queue.Queue()
        self.stats = BatchStats()
        self.thread: threading.Thread | None = None
        self.thread_lock = threading.Lock()  # guards starting and stopping the thread
        self.waiting = 0  # submitted, not yet admitted
        self.held: list[GenerationRequest] = []  # taken off the queue to wake the thread, admitted first

    def submit(self, prompt_ids: list[int], params: SamplingParams, adapter: str | None, usage: Usage,
               out: queue.Queue | LoopQueue | None = None, background: bool = False) -> GenerationRequest:
        request = GenerationRequest(prompt_ids, params, adapter, usage, background=background,
                                    **({"out": out} if out is not None else {}))
        with self.thread_lock:
            self.waiting += 1
            self.pending.put(request)
            if self.thread is None:
                self.thread = threading.Thread(target=self.run, name="tunesmith-batcher", daemon=True)
                self.thread.start()
        return request

    def take_pending(self, room: int, background_rows: int = 0, interactive_running: bool = False) -> list[GenerationRequest]:
        """Waiting requests, interactive ones first, each kind oldest first, as many as fit in `room` more rows; the
        rest wait for rows to leave. Background requests also wait while they would hold more than their share of
        the rows next to interactive requests (`background_rows` of the running batch are theirs already).

        A request asking for more rows than `max_rows` still runs, alone, when the batch is empty.
        """
        queued, self.held, taken = self.held, [], []
        while True:
            try:
                queued.append(self.pending.get_nowait())
            except queue.Empty:
                break
        live = sorted((request for request in queued if not request.cancelled.is_set()),
                      key=lambda request: request.background)  # interactive first, each kind in arrival order
        share = self.shares.background_rows(self.max_rows, interactive_running or not all(r.background for r in live))
        waiting_kinds = set()  # a kind with a request that did not fit: nothing of that kind overtakes it
        for request in live:
            n, kind = request.params.n, request.background
            within = n <= room and (not kind or background_rows + n <= share)
            if kind in waiting_kinds or not (within or (room == self.max_rows and not taken)):  # oversized: alone
                waiting_kinds.add(kind)
                self.held.append(request)
            else:
                taken.append(request)
                room -= n
                background_rows += n if kind else 0
        with self.thread_lock:
            self.waiting -= len(queued) - len(self.held)
        return taken

    def wait_for_work(self) -> bool:
        """Block until a request arrives (then give its neighbours `collect_s` to arrive); False = idle, exit."""
        try:
            first = self.pending.get(timeout=self.idle_exit_s)
        except queue.Empty:
            with self.thread_lock:
                if self.pending.empty():
                    self.thread = None
                    return False
            return True
        self.held.append(first)
        time.sleep(self.collect_s)
        return True

    def run(self) -> None:
        batch = RunningBatch(self.served.tokenizer, self.end_ids)
        torch.set_grad_enabled(False)
        while True:
            if not batch and not self.held and not self.wait_for_work():
                return
            with self.served.lock, torch.inference_mode():
                model, new = self.served.model, []
                try:
                    background = sum(row.request.background for row in batch.rows)
                    # under the lock: all that queued meanwhile
                    new = self.take_pending(self.max_rows - len(batch), background, background < len(batch))
                    if new:
                        self.stats.admitted.append(len(new))
                        batch.admit(model, new)
                    if batch:
                        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
                        self.stats.steps += 1
                        batch.step(model)
                except BaseException as error:  # every request in the batch gets it
                    for request in new:
                        request.fail(error)
                    batch.fail(error)


@dataclass
class BatchSlot:
    """Where one request runs: its model's batcher, with its adapter (None = the plain base)."""

    batcher: Batcher
    adapter: str | None
    background: bool = False  # a batch's request: it yields rows to interactive ones

    def submit(self, prompt_ids: list[int], params: SamplingParams, usage: Usage,
               out: queue.Queue | LoopQueue | None = None) -> GenerationRequest:
        return self.batcher.submit(prompt_ids, params, self.adapter, usage, out, self.background)


def generate_deltas(prompt_ids: list[int], params: SamplingParams, usage: Usage, slot: BatchSlot) -> Iterator[Delta]:
    """Yield deltas for every choice as tokens are generated; every choice ends with one finish_reason.

    One code path serves streaming and non-streaming requests (`complete` joins these deltas). `usage` is
    filled in as tokens arrive. Leaving the loop early (client gone) takes the request's rows out of the batch.
    """
    request = slot.submit(prompt_ids, params, usage)
    try:
        while (item := request.out.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        request.cancelled.set()


class LoopQueue:
    """A request's `out` for a coroutine: the batcher thread puts, the event loop's task awaits `get`.

    An async route waits on this instead of blocking a worker thread on queue.Queue.get for the whole
    generation, so generations never fill the server's thread pool."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop, self.items = loop, asyncio.Queue()

    def put(self, item) -> None:
        try:
            self.loop.call_soon_threadsafe(self.items.put_nowait, item)
        except RuntimeError:  # the loop is closed: the server is shutting down, nobody reads this any more
            pass

    async def get(self):
        return await self.items.get()


async def stream_deltas(prompt_ids: list[int], params: SamplingParams, usage: Usage, slot: BatchSlot) -> AsyncIterator[Delta]:
    """`generate_deltas` for a coroutine; cancelling or closing it takes the request's rows out of the batch."""
    out = LoopQueue(asyncio.get_running_loop())
    request = slot.submit(prompt_ids, params, usage, out)
    try:
        while (item := await out.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        request.cancelled.set()


def join_deltas(deltas: Iterator[Delta], n: int) -> list[tuple[str, str]]:
    """[(text, finish_reason)] per choice, from the deltas of `n` choices."""
    texts, reasons = [""] * n, ["length"] * n
    for delta in deltas:
        texts[delta.index] += delta.text
        if delta.finish_reason:
            reasons[delta.index] = delta.finish_reason
    return list(zip(texts, reasons))


def complete(prompt_ids: list[int], params: SamplingParams, slot: BatchSlot) -> tuple[list[tuple[str, str]], Usage]:
    """[(text, finish_reason)] per choice, and the token usage."""
    usage = Usage()
    return join_deltas(generate_deltas(prompt_ids, params, usage, slot), params.n), usage
