"""Model-written paraphrases of question templates, kept only when they are safe to use.

Run as: library code; `tunesmith data augment SPEC.yaml --records FILE --out DIR --paraphrase 3` uses it.

Each template is sent once, asking for N rewrites one per line, so a batch of greedy generations
(`models.generate.generate_answers`) yields every paraphrase deterministically without sampling
seeds. A candidate is kept only if it is non-empty, parses as a template, has exactly the original's
placeholders (a lost `{name}` would make a question about nothing) and is not a normalized duplicate
of any template of the same relation (a paraphrase equal to an eval template would leak it into
training). A kept paraphrase joins the split of the template it rewrites, so by-template holdout stays
disjoint, and is marked `origin="model"` so sources.jsonl records that a model wrote it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from tunesmith.data.augment_spec import SPLITS, template_fields
from tunesmith.data.phrasings import Phrasing, Plan, normalize_wording

Generate = Callable[[list[list[dict]]], list[str]]  # chat prompts -> one completion each, in order

PROMPT = (
    "Rewrite the question below in {n} different ways with the same meaning. Copy every placeholder in "
    "curly braces, such as {example}, exactly as it is. Write one question per line and nothing else.\n\n"
    "Question: {template}"
)
_LIST_MARKER = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s*")
_LABEL = re.compile(r"^(?:question|q|paraphrase|rewrite|rewritten question)\s*\d*\s*[:.)-]\s*", re.IGNORECASE)  # echoed prompt label


@dataclass
class Rejection:
    template: str
    candidate: str
    reason: str  # "empty", "malformed", "placeholders differ", "duplicate"


def paraphrase_prompt(template: str, n: int) -> list[dict]:
    fields = sorted(template_fields(template))
    example = "{" + fields[0] + "}" if fields else "{name}"
    return [{"role": "user", "content": PROMPT.format(n=n, example=example, template=template)}]


def parse_candidates(completion: str) -> list[str]:
    """One candidate per non-blank line; list markers ("1.", "-"), labels ("Question:") and quotes removed."""
    lines = (_LABEL.sub("", _LIST_MARKER.sub("", line)).strip().strip('"“”').strip() for line in completion.splitlines())
    return [line for line in lines if line]


def rejection_reason(candidate: str, template: str, seen: set[str]) -> str | None:
    """Why a candidate can't be used as a paraphrase of `template` (None: keep it); `seen` holds normalized texts."""
    if not candidate.strip():
        return "empty"
    try:
        fields = template_fields(candidate)
    except ValueError:
        return "malformed"
    if fields != template_fields(template) or re.search(r"\{[^{}]*[!:][^{}]*\}", candidate):
        return "placeholders differ"
    if normalize_wording(candidate) in seen:
        return "duplicate"
    return None


def add_paraphrases(plan: Plan, n: int, generate: Generate) -> tuple[Plan, list[Rejection]]:
    """Up to `n` kept model paraphrases per question template, appended to the template's own split."""
    templates = sorted({p.text for splits in plan.values() for phrasings in splits.values() for p in phrasings})
    completions = dict(zip(templates, generate([paraphrase_prompt(t, n) for t in templates])))
    rejections: list[Rejection] = []
    extended: Plan = {}
    for relation, splits in plan.items():
        seen = {normalize_wording(p.text) for phrasings in splits.values() for p in phrasings}
        extended[relation] = {}
        for split in SPLITS:
            phrasings = list(splits[split])
            for original in splits[split]:
                kept, candidates = 0, parse_candidates(completions[original.text])
                if not candidates:
                    rejections.append(Rejection(original.text, completions[original.text], "empty"))
                for candidate in candidates:
                    if kept == n:
                        break
                    reason = rejection_reason(candidate, original.text, seen)
                    if reason:
                        rejections.append(Rejection(original.text, candidate, reason))
                        continue
                    seen.add(normalize_wording(candidate))
                    phrasings.append(Phrasing(candidate, "model", original.text))
                    kept += 1
            extended[relation][split] = phrasings
    return extended, rejections


def model_generator(model_ref: str, batch_size: int = 16, max_new_tokens: int = 160) -> Generate:
    """Batched greedy chat completions from a model reference (embedded name, local dir, hub id)."""
    from tunesmith.models.generate import generate_answers
    from tunesmith.models.load import load_model, load_tokenizer

    tokenizer, model = load_tokenizer(model_ref), load_model(model_ref)
    return lambda prompts: generate_answers(model, tokenizer, prompts, max_new_tokens, batch_size, progress=False)
