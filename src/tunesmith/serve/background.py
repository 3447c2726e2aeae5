"""Work the server does in the background: batches (serve/batches.py) and eval runs (serve/evals.py). Each key's
pieces run one at a time, oldest first; different keys' pieces run side by side, sharing `batch_concurrency`
requests in flight (`slot()`), so one key's long batch does not hold another key's short one back. A runner waits on
the server's event loop until told that work arrived (or was cancelled); what a stopped server left unfinished is
picked up at its next start, since the registry holds it."""
from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from tunesmith.registry.db import Database
from tunesmith.serve.settings import ServeSettings


class BackgroundRunner:
    kind = "work"  # what the log calls one piece
    path = "/"  # the request scope the routes' code reads: the app (its state)

    def __init__(self, app, db: Database, settings: ServeSettings):
        self.db, self.settings = db, settings
        self.request = Request({"type": "http", "app": app, "method": "POST", "path": self.path, "headers": []})
        self.stopping: set[str] = set()  # ids cancelled while they run
        self.log = logging.getLogger(f"tunesmith.{self.kind}")
        self.loop: asyncio.AbstractEventLoop | None = None
        self.wake: asyncio.Event | None = None
        self.task: asyncio.Task | None = None
        self.running: dict[str, asyncio.Task] = {}  # owner → the task running its piece
        self.slots: asyncio.Semaphore | None = None  # requests in flight, every running piece's together

    def start(self) -> None:
        """On the server's event loop (its lifespan): the runner waits there for work."""
        self.loop, self.wake = asyncio.get_running_loop(), asyncio.Event()
        self.slots = asyncio.Semaphore(self.settings.batch_concurrency)
        self.task = asyncio.create_task(self.run_all())

    async def close(self) -> None:
        """Stop at once: work in flight is taken up again at the next start."""
        tasks = [task for task in (self.task, *self.running.values()) if task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def slot(self) -> asyncio.Semaphore:
        """Held while one of a piece's requests generates (`async with runner.slot():`): at most batch_concurrency,
        whichever pieces they belong to, taken in turn."""
        return self.slots

    def notify(self, cancelled: str | None = None) -> None:
        """Work was created or (`cancelled`) cancelled; safe from any thread."""
        if self.loop is None:
            return

        def wake() -> None:
            if cancelled is not None:
                self.stopping.add(cancelled)
            self.wake.set()

        self.loop.call_soon_threadsafe(wake)

    def unfinished(self) -> list:
        """Every key's unfinished pieces, oldest first."""
        raise NotImplementedError

    async def run(self, piece) -> None:
        raise NotImplementedError

    def fail(self, piece, error: Exception) -> None:
        """Record that the server's own error stopped `piece`."""
        raise NotImplementedError

    async def run_all(self) -> None:
        while True:
            self.wake.clear()  # before looking, so that work created meanwhile wakes the wait below
            try:
                pending = await run_in_threadpool(self.unfinished)
            except Exception:  # the registry unreadable for now (a full disk): look again shortly
                self.log.exception("could not read the %s to run", self.kind)
                await asyncio.sleep(5)
                continue
            for piece in pending:  # each key's oldest piece, where the key runs none
                if piece.owner not in self.running:
                    self.running[piece.owner] = asyncio.create_task(self.run_one(piece))
            await self.wake.wait()  # new work, a cancel, or a piece finished

    async def run_one(self, piece) -> None:
        try:
            await self.run(piece)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug must fail this piece, not retry it for ever
            self.log.exception("%s %s failed", self.kind, piece.id)
            try:
                await run_in_threadpool(self.fail, piece, error)
            except Exception:  # not even recorded (a full disk): tried again shortly
                self.log.exception("%s %s: could not record its failure", self.kind, piece.id)
                await asyncio.sleep(5)
        finally:
            self.running.pop(piece.owner, None)
            self.wake.set()  # the key's next piece, if any
