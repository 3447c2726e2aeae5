"""Structured outputs: answers held to a JSON schema (OpenAI's `response_format`), token by token.

llguidance compiles the schema into a grammar over the model's own tokenizer. Each constrained row carries its own
matcher: before each choice it masks every token that cannot continue a valid answer (those logits become -inf,
after penalties and logit bias, before greedy, temperature and top_p), and it takes the chosen token after. Once
the JSON is complete, only the end-of-turn tokens remain allowed, so the answer ends there; an answer cut by
max_tokens ends unfinished ("length"), as OpenAI's does. The JSON is written compactly (no whitespace between
tokens of the syntax), so a small model cannot spend its tokens on indentation. Log-probabilities stay the model's
own, as with logit bias.

Cost: one mask per constrained row per step, computed by llguidance's executor (~0.3 ms a row for SmolLM2's 49,152
tokens); rows that ask nothing pay nothing.
"""
from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence

import llguidance
import llguidance.hf
import llguidance.numpy
import numpy as np
import torch

from tunesmith.models.chat import stop_token_ids
from tunesmith.models.tool_calls import COMPACT_JSON as COMPACT  # the JSON's syntax without whitespace: {"a":1}


class SchemaError(ValueError):
    """A schema that cannot constrain an answer: invalid, or using a JSON Schema feature llguidance lacks."""


class Grammar:
    """A compiled grammar for one request: every row (choice) that follows it starts from a copy of its matcher."""

    def __init__(self, matcher: llguidance.LLMatcher):
        self.matcher = matcher

    def start(self) -> llguidance.LLMatcher:
        return self.matcher.deep_copy()


_tokenizers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_tokenizers_lock = threading.Lock()
_executor: llguidance.LLExecutor | None = None


def grammar_tokenizer(tokenizer, vocab_size: int) -> llguidance.LLTokenizer:
    """llguidance's view of a Hugging Face fast tokenizer, with the logits' width and the chat's end-of-turn tokens
    as its end. Built once per tokenizer (~0.5 s for SmolLM2's)."""
    with _tokenizers_lock:
        built = _tokenizers.get(tokenizer)
        if built is None or built[0] != vocab_size:
            try:
                built = (vocab_size, llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size,
                                                                  eos_token=stop_token_ids(tokenizer)))
            except ValueError as error:  # a slow (Python) tokenizer
                raise SchemaError(f"structured outputs need a fast tokenizer ({error})") from error
            _tokenizers[tokenizer] = built
        return built[1]


def json_grammar(schema: dict, tokenizer, vocab_size: int) -> Grammar:
    """A grammar for answers that are JSON valid under `schema` (a JSON Schema; {"type": "object"} for any object).
    Raises SchemaError with llguidance's reason for a schema it cannot follow; nothing is silently left out."""
    try:
        text = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=COMPACT)
    except ValueError as error:
        raise SchemaError(str(error)) from error
    return compiled(text, tokenizer, vocab_size)


def lark_grammar(lark: str, tokenizer, vocab_size: int) -> Grammar:
    """A grammar in llguidance's Lark dialect (which embeds JSON schemas as `%json {...}`): answers that must be tool
    calls, or calls or a response_format's JSON (models/tool_calls.calls_grammar_text)."""
    return compiled(llguidance.LLMatcher.grammar_from_lark(lark), tokenizer, vocab_size)


def compiled(text: str, tokenizer, vocab_size: int) -> Grammar:
    matcher = llguidance.LLMatcher(grammar_tokenizer(tokenizer, vocab_size), text, log_level=0)
    if matcher.is_error():
        raise SchemaError(matcher.get_error())
    return Grammar(matcher)


def constrained(logits: torch.Tensor, asking: Sequence[tuple[int, llguidance.LLMatcher]],
                owned: bool = False) -> torch.Tensor:
    """logits (B, V) with each asking row's disallowed tokens at -inf: `asking` holds (row index, its matcher). A
    float32 copy when a row asks, else `logits` itself; `owned`: logits is already the caller's own float32 copy (the
    penalties' one), masked in place."""
    if not asking:
        return logits
    global _executor
    if _executor is None:
        _executor = llguidance.LLExecutor()
    vocab = logits.shape[-1]
    bitmask = llguidance.numpy.allocate_token_bitmask(len(asking), vocab)  # (k, ceil(V / 32)) int32, bit t = token t
    llguidance.numpy.fill_next_token_bitmask_par(_executor, [(matcher, j) for j, (_, matcher) in enumerate(asking)],
                                                 bitmask)
    allowed = np.unpackbits(bitmask.view(np.uint8), axis=1, bitorder="little")[:, :vocab].astype(bool)  # (k, V)
    rows = torch.tensor([row for row, _ in asking])
    adjusted = logits if owned and logits.dtype == torch.float32 else logits.to(torch.float32, copy=True)
    adjusted[rows] = adjusted[rows].masked_fill(~torch.from_numpy(allowed), float("-inf"))
    return adjusted
