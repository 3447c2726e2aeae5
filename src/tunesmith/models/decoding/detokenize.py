"""One choice's generated tokens → the text deltas safe to send, cut at the first stop string.

Decoding token by token can end inside a UTF-8 character (the text ends in U+FFFD) or inside what may
become a stop string; both are held back until the next token settles them, so a client never sees
text it would have to take back.

The hold-back check runs for every token of every row on the batcher thread, so it is linear in the stop
strings' length (a KMP automaton over the text's last len(stop) - 1 characters), not quadratic: slicing every
prefix of a long stop string per token let one request stall every other.
"""
from __future__ import annotations


class ChoiceText:
    """One choice's tokens → text deltas, holding back an incomplete UTF-8 character or a partial stop string."""

    def __init__(self, tokenizer, stop: list[str]):
        self.tokenizer, self.stop = tokenizer, [s for s in stop if s]
        self.failures = [failure_function(s) for s in self.stop]
        self.tokens: list[int] = []
        self.emitted = 0
        self.finish_reason: str | None = None
        self.cut: int | None = None  # where a stop string began in the text (the answer ends there)

    def text(self) -> str:
        return self.tokenizer.decode(self.tokens, skip_special_tokens=True)

    def add(self, token: int, end_of_turn: bool) -> str:
        """The new text this token makes safe to send; sets finish_reason at end of turn or a stop string."""
        if not end_of_turn:
            self.tokens.append(token)
        text = self.text()
        hits = [i for i in (text.find(s, max(0, self.emitted - len(s))) for s in self.stop) if i >= 0]
        if hits:
            self.finish_reason, self.cut = "stop", min(hits)
            return self.flush(text[: self.cut])
        if end_of_turn:
            self.finish_reason = "stop"
            return self.flush(text)
        safe = len(text) - self.held_back(text)
        if text.endswith("\ufffd") or safe <= self.emitted:
            return ""
        delta, self.emitted = text[self.emitted : safe], safe
        return delta

    def tokens_through(self, end: int) -> int:
        """How many of the tokens it takes to write the text's first `end` characters (the last may run past)."""
        for count in range(len(self.tokens) + 1):
            if len(self.tokenizer.decode(self.tokens[:count], skip_special_tokens=True)) >= end:
                return count
        return len(self.tokens)

    def held_back(self, text: str) -> int:
        """Length of the longest tail of `text` that could still grow into a stop string."""
        return max((prefix_at_end(text, s, failure) for s, failure in zip(self.stop, self.failures)), default=0)

    def flush(self, text: str | None = None) -> str:
        text = self.text() if text is None else text
        delta, self.emitted = text[self.emitted :], max(self.emitted, len(text))
        return delta


def failure_function(stop: str) -> list[int]:
    """KMP: for each prefix of `stop`, the length of its longest proper prefix that is also its suffix."""
    failure, matched = [0] * len(stop), 0
    for i in range(1, len(stop)):
        while matched and stop[i] != stop[matched]:
            matched = failure[matched - 1]
        if stop[i] == stop[matched]:
            matched += 1
        failure[i] = matched
    return failure


def prefix_at_end(text: str, stop: str, failure: list[int]) -> int:
    """Length of the longest proper prefix of `stop` that `text` ends with, in O(len(stop)).

    Scans only the last len(stop) - 1 characters, so the match never reaches the whole stop string
    (a whole one is found, and cut, before this is asked)."""
    matched = 0
    for char in text[max(0, len(text) - len(stop) + 1):]:
        while matched and stop[matched] != char:
            matched = failure[matched - 1]
        if stop[matched] == char:
            matched += 1
    return matched
