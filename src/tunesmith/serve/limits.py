"""Per-key limits: generation requests at once and tokens per minute, answered with OpenAI's 429 and Retry-After.

A shared server must not let one key take it over: each key may have `max_concurrent` completions in flight
and spend `tokens_per_minute` over any sliding minute (the key's own values from `tunesmith keys limits`,
else the server's defaults). Tokens are counted as OpenAI counts them at admission, prompt + max_tokens × n,
and corrected to the request's usage when it ends. Unfinished fine-tuning jobs per key are counted from the
registry (routes/jobs.py), so they survive a restart.

The two counters here live in this process's memory, on purpose:
- Requests in flight end with the process that serves them, so a restart resets them to the truth (zero).
- The token window is a rate over the last minute. A restart empties it, so a key may spend up to one more
  minute's tokens in the minute around a restart. That is the whole exposure (a restart takes seconds and
  reloads the models), and persisting every admission would put a SQLite write on every completion's path.
- They are correct for one server process only. `tunesmith serve` runs one (serve/app.py passes the app object
  to uvicorn.run, which cannot fork workers); two servers on one home would each grant a key its full limits.
  Several processes would need the counters in a shared store (SQLite or Redis), which this does not claim.
"""
from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

from tunesmith.registry.keys import ApiKey
from tunesmith.serve.errors import APIError

WINDOW_S = 60.0


def rate_limited(kind: str, message: str, retry_after: float) -> APIError:
    """OpenAI's 429: type names what ran out ("requests", "tokens"), code rate_limit_exceeded."""
    seconds = max(1, math.ceil(retry_after))
    return APIError(429, f"{message} Please try again in {seconds}s.", code="rate_limit_exceeded", type=kind,
                    headers={"Retry-After": str(seconds)})


@dataclass
class Spend:
    at: float
    tokens: int


class Reservation:
    """One admitted request: `release` (idempotent) ends it with the tokens it really used."""

    def __init__(self, limits: KeyLimits, key_id: str, spend: Spend):
        self.limits, self.key_id, self.spend, self.released = limits, key_id, spend, False

    def release(self, used_tokens: int | None = None) -> None:
        with self.limits.lock:
            if self.released:
                return
            self.released = True
            self.limits.in_flight[self.key_id] -= 1
            if used_tokens is not None:
                self.spend.tokens = used_tokens


class KeyLimits:
    def __init__(self, max_concurrent: int, tokens_per_minute: int | None, clock=time.monotonic):
        self.max_concurrent, self.tokens_per_minute, self.clock = max_concurrent, tokens_per_minute, clock
        self.lock = threading.Lock()
        self.in_flight: Counter[str] = Counter()
        self.spent: dict[str, deque[Spend]] = {}

    def admit(self, key: ApiKey, tokens: int) -> Reservation:
        """Reserve a slot and `tokens` for the key, or raise the 429 that says when to retry."""
        concurrent = key.max_concurrent or self.max_concurrent
        per_minute = key.tokens_per_minute or self.tokens_per_minute
        with self.lock:
            now = self.clock()
            window = self.spent.setdefault(key.id, deque())
            while window and window[0].at <= now - WINDOW_S:
                window.popleft()
            if self.in_flight[key.id] >= concurrent:
                raise rate_limited("requests", f"Rate limit reached for {key.id} on requests at once: limit "
                                   f"{concurrent}, in flight {self.in_flight[key.id]}.", 1)
            if per_minute is not None:
                self.check_tokens(key.id, window, tokens, per_minute, now)
            spend = Spend(now, tokens)
            window.append(spend)
            self.in_flight[key.id] += 1
        return Reservation(self, key.id, spend)

    @staticmethod
    def check_tokens(key_id: str, window: deque[Spend], tokens: int, per_minute: int, now: float) -> None:
        if tokens > per_minute:
            raise rate_limited("tokens", f"Request too large for {key_id} on tokens per min (TPM): limit "
                               f"{per_minute}, requested {tokens} (prompt + max_tokens × n). Send a shorter "
                               "prompt or a smaller max_tokens or n.", WINDOW_S)
        used = sum(spend.tokens for spend in window)
        if used + tokens <= per_minute:
            return
        freed, wait = 0, WINDOW_S
        for spend in window:  # oldest first: when enough of the window has expired
            freed += spend.tokens
            if used - freed + tokens <= per_minute:
                wait = spend.at + WINDOW_S - now
                break
        raise rate_limited("tokens", f"Rate limit reached for {key_id} on tokens per min (TPM): limit {per_minute}, "
                           f"used {used}, requested {tokens}.", wait)
