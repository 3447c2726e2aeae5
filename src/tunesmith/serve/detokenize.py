"""One choice's generated tokens → the text deltas safe to send, cut at the first stop string.

Decoding token by token can end inside a UTF-8 character (the text ends in U+FFFD) or inside what may
become a stop string; both are held back until the next token settles them, so a client never sees
text it would have to take back.
"""
from __future__ import annotations


class ChoiceText:
    """One choice's tokens → text deltas, holding back an incomplete UTF-8 character or a partial stop string."""

    def __init__(self, tokenizer, stop: list[str]):
        self.tokenizer, self.stop = tokenizer, [s for s in stop if s]
        self.tokens: list[int] = []
        self.emitted = 0
        self.finish_reason: str | None = None

    def text(self) -> str:
        return self.tokenizer.decode(self.tokens, skip_special_tokens=True)

    def add(self, token: int, end_of_turn: bool) -> str:
        """The new text this token makes safe to send; sets finish_reason at end of turn or a stop string."""
        if not end_of_turn:
            self.tokens.append(token)
        text = self.text()
        hits = [i for i in (text.find(s, max(0, self.emitted - len(s))) for s in self.stop) if i >= 0]
        if hits:
            self.finish_reason = "stop"
            return self.flush(text[: min(hits)])
        if end_of_turn:
            self.finish_reason = "stop"
            return self.flush(text)
        safe = len(text) - self.held_back(text)
        if text.endswith("\ufffd") or safe <= self.emitted:
            return ""
        delta, self.emitted = text[self.emitted : safe], safe
        return delta

    def held_back(self, text: str) -> int:
        """Length of the longest tail of `text` that could still grow into a stop string."""
        return max([k for s in self.stop for k in range(1, len(s)) if text.endswith(s[:k])], default=0)

    def flush(self, text: str | None = None) -> str:
        text = self.text() if text is None else text
        delta, self.emitted = text[self.emitted :], max(self.emitted, len(text))
        return delta
