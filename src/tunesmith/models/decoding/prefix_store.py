"""Prompts already prefilled, their keys and values kept, so that a later prompt that begins the same way
prefills only the tokens after the part they share.

Chat prompts share their beginnings: the chat template's system prompt (SmolLM2's default makes the first 24 of
the 35-40 tokens of every short question in examples/general/prompts.jsonl), a team's own instructions and
few-shot examples, the earlier turns of a conversation sent again with each new message. vLLM (automatic prefix
caching) and SGLang (RadixAttention) keep these too. Keys and values are a function of the tokens before them, the
model's weights and the adapter, so an entry is found by (adapter, its tokens) and the whole store is dropped
when the engine is handed another model object (a base wrapped by peft, a reload) or the model's adapters change
(one added, deleted or loaded again under its name).

The store holds whole prompts, least recently used first out once their keys and values pass `max_bytes`. A
prompt reuses the longest match over all entries, at most all but its last token (the prefill must compute that
one's logits), and only if it is at least MIN_REUSE tokens: a shorter match saves less than the copy costs.

The longest match is found by walking a token trie of the stored prompts (one per adapter), in as many steps as the
prompt has tokens, whatever the store holds. Comparing the prompt with every entry instead took 3.7 s of 8.1 s of
admissions for the demo's 416 evaluation questions (~128 entries, 778,000 comparisons through burst_leaders).
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

MIN_REUSE = 8
MAX_BYTES = 128 * 2**20  # SmolLM2-135M in bf16: 23 KB of keys and values a token, so ~5,800 tokens


@dataclass
class Prefix:
    tokens: np.ndarray  # (T,) the prompt
    keys: torch.Tensor  # (layers, kv_heads, T, head_dim)
    values: torch.Tensor

    @property
    def nbytes(self) -> int:
        return 2 * self.keys.numel() * self.keys.element_size()


def shared_length(a: np.ndarray, b: np.ndarray) -> int:
    """How many first tokens two prompts share."""
    width = min(len(a), len(b))
    same = a[:width] == b[:width]
    return width if same.all() else int(same.argmin())


class TrieNode:
    """One token of stored prompts: the entries whose prompts pass through it (each shares the path's tokens)."""

    __slots__ = ("children", "keys")

    def __init__(self):
        self.children: dict[int, TrieNode] = {}
        self.keys: dict[tuple[str | None, bytes], None] = {}  # a dict, not a set: ordered, so the choice is repeatable


class PrefixStore:
    def __init__(self, max_bytes: int = MAX_BYTES):
        self.max_bytes = max_bytes
        self.entries: OrderedDict[tuple[str | None, bytes], Prefix] = OrderedDict()  # least recently used first
        self.roots: dict[str | None, TrieNode] = {}  # per adapter: the trie of its entries' prompts
        self.nbytes = 0
        self.model: weakref.ref | None = None
        self.adapters: tuple | None = None

    def bind(self, model, adapters: tuple | None = None) -> None:
        """Drop every entry if the engine now runs another model object, or other adapters (`adapters`: what
        identifies them, models/decoding/stacked_lora.py `adapters_key`), than the entries were computed with."""
        if self.model is None or self.model() is not model or self.adapters != adapters:
            self.entries.clear()
            self.roots.clear()
            self.nbytes = 0
            self.model, self.adapters = weakref.ref(model), adapters

    def longest(self, adapter: str | None, prompt: list[int]) -> tuple[Prefix | None, int]:
        """The entry sharing the most first tokens with the prompt (same adapter), and how many it shares; (None, 0)
        below MIN_REUSE. The prefill reuses at most all but the prompt's last token."""
        node, shared = self.roots.get(adapter), 0
        if node is None:
            return None, 0
        for token in prompt:
            child = node.children.get(token)
            if child is None:
                break
            node, shared = child, shared + 1
        if min(shared, len(prompt) - 1) < MIN_REUSE:
            return None, 0
        key = next(iter(node.keys))  # the earliest stored of those sharing the most
        self.entries.move_to_end(key)
        return self.entries[key], shared

    def add(self, adapter: str | None, prompt: list[int], keys: torch.Tensor, values: torch.Tensor) -> None:
        """Keep a prefilled prompt's keys and values (layers, kv_heads, T, head_dim), copied. A prompt that an entry
        holds whole (it is that entry, or begins it) adds nothing."""
        tokens = np.asarray(prompt)
        if len(prompt) < MIN_REUSE or self.longest(adapter, prompt)[1] == len(prompt):
            return
        entry = Prefix(tokens, keys.clone(), values.clone())
        if entry.nbytes > self.max_bytes:
            return
        key = (adapter, tokens.tobytes())
        self.entries[key] = entry
        node = self.roots.setdefault(adapter, TrieNode())
        for token in prompt:
            node = node.children.setdefault(token, TrieNode())
            node.keys[key] = None
        self.nbytes += entry.nbytes
        while self.nbytes > self.max_bytes:
            self.evict()

    def evict(self) -> None:
        """The least recently used entry out, and out of its adapter's trie (nodes no entry passes through go)."""
        key, entry = self.entries.popitem(last=False)
        self.nbytes -= entry.nbytes
        node = self.roots[key[0]]
        for token in entry.tokens.tolist():
            child = node.children[token]
            child.keys.pop(key, None)
            if not child.keys:
                del node.children[token]
                break
            node = child
