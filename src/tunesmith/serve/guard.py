"""Guarding a served model: its prompt and its answers screened by a moderation model.

Which guard applies: the operator's most specific registry guard for this key and model
(registry/guards.py, `tunesmith guard set`), else the server's `--guard` default, else none.

Input: every message (or the prompt) is scored in one batch; one flagged text refuses the request with
OpenAI's 400 error, code `content_filter`, naming the categories.

Output: each choice's text is held back until screened, so a client never receives text that fails the
screen. It is screened at each sentence end, at least every `screen_every_chars` characters, and at its
end, always as the whole answer so far (a fragment alone hides what it completes). Clean text is
released; a flagged chunk is dropped and the choice ends with finish_reason "content_filter". Streamed
and whole answers pass through the same screen.

Every flag is appended to the audit log with its categories and scores; the text only with
`audit_flagged_text`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Generator, Iterator

from fastapi import Request

from tunesmith.registry import audit
from tunesmith.registry.db import Database
from tunesmith.registry.guards import Guard, find_guard
from tunesmith.serve.classifier_pool import ServedClassifier
from tunesmith.serve.errors import APIError
from tunesmith.serve.moderation import Verdict, load_moderation_model, moderate
from tunesmith.models.decoding.requests import Delta

SENTENCE_END = re.compile(r"[.!?\n][\"')\]]*\s*$")  # text that ends a sentence (or a line) so far


@dataclass
class ScreenedChoice:
    released: str = ""  # screened and sent
    pending: str = ""  # generated, not yet screened
    done: bool = False


@dataclass
class Screen:
    """One request's guard: its moderation model and where flags are recorded."""

    guard: Guard
    served: ServedClassifier
    db: Database
    key: str
    model_id: str
    request_id: str
    every_chars: int
    keep_text: bool

    def check_prompt(self, texts: list[str], param: str) -> None:
        """Raise the `content_filter` error if any text is flagged."""
        if not self.guard.screen_input:
            return
        shown = [(index, text) for index, text in enumerate(texts) if text.strip()]
        verdicts = moderate(self.served, [text for _, text in shown])
        flagged = [(index, text, verdict) for (index, text), verdict in zip(shown, verdicts) if verdict.flagged]
        if not flagged:
            return
        worst: dict[str, float] = {}
        for index, text, verdict in flagged:
            self.record("input", verdict, text, index)
            for category, score in verdict.flagged_scores().items():
                worst[category] = max(worst.get(category, 0.0), score)
        named = ", ".join(f"{category} ({score:.2f})" for category, score in sorted(worst.items(), key=lambda kv: -kv[1]))
        raise APIError(400, f"The request was refused by the content filter ({self.served.name}): {named}. "
                            "Rephrase the prompt.", param=param, code="content_filter")

    def screen_deltas(self, deltas: Generator[Delta, None, None], n: int) -> Iterator[Delta]:
        """`deltas` with each choice's text released only once screened; a flagged choice ends in "content_filter".

        Stops generation (closes `deltas`) once every choice has ended.
        """
        if not self.guard.screen_output:
            yield from deltas
            return
        choices = [ScreenedChoice() for _ in range(n)]
        try:
            for delta in deltas:
                choice = choices[delta.index]
                if choice.done:
                    continue  # cut by the screen: its later tokens are dropped
                choice.pending += delta.text
                due = len(choice.pending) >= self.every_chars or SENTENCE_END.search(choice.pending)
                if choice.pending and (due or delta.finish_reason):
                    released = self.screen_chunk(delta.index, choice)
                    if released is None:
                        yield Delta(delta.index, "", "content_filter")
                    else:
                        yield Delta(delta.index, released, delta.finish_reason)
                elif delta.finish_reason:
                    yield Delta(delta.index, "", delta.finish_reason)
                choice.done = choice.done or delta.finish_reason is not None
                if all(c.done for c in choices):
                    return
        finally:
            deltas.close()

    def screen_chunk(self, index: int, choice: ScreenedChoice) -> str | None:
        """The chunk to release, or None (and the choice ends) when the answer so far is flagged."""
        verdict = moderate(self.served, [choice.released + choice.pending])[0]
        if verdict.flagged:
            self.record("output", verdict, choice.released + choice.pending, index)
            choice.done = True
            return None
        chunk, choice.released, choice.pending = choice.pending, choice.released + choice.pending, ""
        return chunk

    def record(self, stage: str, verdict: Verdict, text: str, index: int) -> None:
        """One audit entry per flagged text: the `index` is the message (input) or choice (output) number."""
        extra = {"text": text} if self.keep_text else {}
        audit.append(self.db, self.key, "moderation.flagged", self.model_id, outcome="flagged", stage=stage,
                     index=index, request_id=self.request_id, moderation_model=self.served.name,
                     categories=verdict.flagged_scores(), **extra)


def screen_for(request: Request, key: str, model_id: str, request_id: str) -> Screen | None:
    """The guard on this key's request to `model_id`, with its moderation model loaded; None when unguarded.

    A guard whose moderation model cannot be loaded fails the request (500): serving unscreened would
    silently drop the operator's policy.
    """
    state = request.app.state
    guard = find_guard(state.db, key, model_id) or state.settings.guard
    if guard is None:
        return None
    try:
        served = load_moderation_model(state.classifiers, state.db, state.settings, guard.moderation_model, owner=None)
    except APIError as exc:
        raise APIError(500, f"The guard on {model_id} names moderation model {guard.moderation_model}, which cannot "
                            f"be loaded ({exc.message}) — the operator must fix it with `tunesmith guard set` "
                            "or `tunesmith guard remove`.", code="guard_unavailable") from None
    return Screen(guard, served, state.db, key, model_id, request_id, state.settings.screen_every_chars,
                  state.settings.audit_flagged_text)
