"""Moderation classifiers loaded for serving, each with a batcher that scores concurrent requests together.

A /v1/moderations request, or a guard screening a prompt or an answer, hands its texts to
`ScoringBatcher.score` and waits. The batcher's thread takes the first waiting request, gives its
neighbours `collect_s` to arrive, then runs the classifier once over every waiting text (whole requests,
up to `max_texts`; a larger request runs alone) and hands each request its rows. Scoring is one forward
pass per batch, with no decoding steps, so this is far simpler than the chat batcher (batcher.py), which
must let requests join and leave between steps. Like it, the thread exits after a while without work.
"""
from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tunesmith.models.classifier import Classifier, load_classifier
from tunesmith.serve.passing_thread import in_passing_thread


@dataclass(eq=False)
class ScoringRequest:
    texts: list[str]
    done: threading.Event = field(default_factory=threading.Event)
    scores: torch.Tensor | None = None  # (len(texts), L) once done
    error: BaseException | None = None


class ScoringBatcher:
    def __init__(self, classifier: Classifier, max_texts: int = 64, collect_s: float = 0.01, idle_exit_s: float = 30.0):
        self.classifier, self.max_texts, self.collect_s, self.idle_exit_s = classifier, max_texts, collect_s, idle_exit_s
        self.pending: queue.Queue[ScoringRequest] = queue.Queue()
        self.held: ScoringRequest | None = None  # taken off the queue but past this batch's room: first in the next
        self.batches: deque[int] = deque(maxlen=1024)  # requests per classifier call, latest calls: for tests
        self.thread: threading.Thread | None = None
        self.thread_lock = threading.Lock()  # guards starting and stopping the thread

    def score(self, texts: list[str]) -> torch.Tensor:
        """(N, L) probabilities for `texts`, scored in one batch with whatever else is waiting."""
        request = ScoringRequest(list(texts))
        with self.thread_lock:
            self.pending.put(request)
            if self.thread is None:
                self.thread = threading.Thread(target=self.run, name="tunesmith-scoring", daemon=True)
                self.thread.start()
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.scores

    def next_batch(self) -> list[ScoringRequest]:
        """Block for a first request, wait `collect_s` for neighbours, take what fits; [] = idle, exit."""
        first, self.held = self.held, None
        if first is None:
            try:
                first = self.pending.get(timeout=self.idle_exit_s)
            except queue.Empty:
                with self.thread_lock:
                    if self.pending.empty():
                        self.thread = None
                        return []
                return self.next_batch()
            time.sleep(self.collect_s)
        batch, size = [first], len(first.texts)
        while self.held is None:
            try:
                request = self.pending.get_nowait()
            except queue.Empty:
                break
            if size + len(request.texts) > self.max_texts:
                self.held = request
            else:
                batch.append(request)
                size += len(request.texts)
        return batch

    def run(self) -> None:
        while batch := self.next_batch():
            self.batches.append(len(batch))
            try:
                scores = self.classifier.scores([text for request in batch for text in request.texts], self.max_texts)
            except BaseException as error:  # every request in the batch gets it
                for request in batch:
                    request.error = error
                    request.done.set()
                continue
            start = 0
            for request in batch:
                request.scores = scores[start : start + len(request.texts)]
                start += len(request.texts)
                request.done.set()


@dataclass(eq=False)
class ServedClassifier:
    name: str  # what the request called it (an ft: id, an alias, a directory): for responses and the audit log
    classifier: Classifier
    batcher: ScoringBatcher


class ClassifierPool:
    """Classifiers by directory: loaded once, least recently used dropped past `max_loaded`."""

    def __init__(self, max_loaded: int):
        self.max_loaded = max_loaded
        self.loaded: OrderedDict[Path, tuple[Classifier, ScoringBatcher]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, name: str, directory: Path) -> ServedClassifier:
        """Load under the pool lock, so two requests never load the same classifier twice."""
        directory = directory.resolve()
        with self.lock:
            if directory not in self.loaded:
                classifier = in_passing_thread(lambda: load_classifier(directory))  # serve/passing_thread.py
                self.loaded[directory] = (classifier, ScoringBatcher(classifier))
                while len(self.loaded) > self.max_loaded:
                    self.loaded.popitem(last=False)
            self.loaded.move_to_end(directory)
            return ServedClassifier(name, *self.loaded[directory])
