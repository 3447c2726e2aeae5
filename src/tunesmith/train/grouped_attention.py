"""Attention over packed rows as one small dense block per example, instead of the whole row's masked square.

A packed row holds several examples (and, with data.share_prefix, one copy of their common prefix); its 4D mask
lets each example see its own tokens and that prefix. sdpa computes the whole (T, T) square of scores and masks
most of it away: on the demo's rows (2 rows of ~248 tokens: a 21-token prefix and ~6 examples of ~38 each) about
a fifth of the square is ever read. Here each example is a group: its queries, the keys it may see (the
prefix's, then its own) and a causal mask between them, all groups padded to one size and computed in two
batched products. Scores, softmax and the weighted sum run in float32 (the bf16 inputs upcast exactly), where
the CPU flash kernel keeps float32 scores too but rounds the probabilities to bf16 before their product.

Measured (2026-12-06, AMD EPYC 2 cores, one layer's attention forward + backward on the demo's shapes, bf16
inputs): sdpa's flash kernel 8.9-11 ms, the groups 3.8-5.5 ms; the same outputs within bf16 rounding of the
inputs (tests/train/test_grouped_attention.py checks float32 equality with sdpa and packed == unpacked).

Training forwards on the CPU use it (forward.py) where every group sees at most GROUPED_MAX_KEYS keys; wider
groups, forwards without gradients, other devices, attention dropout, sliding windows and soft-capped scores keep
transformers' sdpa, which this implementation calls for them. The width limit, measured the same way (one packed
row, bf16, forward + backward, 2 threads): examples of 64 / 128 / 256 / 512 tokens took 3.4 / 8.3 / 11.3 / 42.6 ms
grouped against flash's 16.7 / 18.0 / 18.1 / 55.1 ms, one of 1024 tokens 138 against 57 ms, and a group's float32
scores grow with the square of its width (9 heads x 1024^2 x 4 bytes = 38 MB a layer, kept for the backward),
where flash keeps tiles.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "tunesmith_grouped"  # the attention implementation's name in transformers' registry
GROUPED_MAX_KEYS = 512  # wider groups attend through sdpa (module doc)


@dataclass(frozen=True)
class AttentionGroups:
    """A packed batch's attention as G groups. Positions are flat: row * T + column."""

    queries: torch.Tensor  # (G, Lq) each group's query positions; padded slots repeat a real one
    keys: torch.Tensor  # (G, Lk) the positions each group's queries may see; padded slots repeat a real one
    blocked: torch.Tensor  # (G, 1, Lq, Lk) bool: True where a query may NOT see a key
    outputs: torch.Tensor  # (R * T,) each position's slot in the groups' (G * Lq) outputs; G * Lq: none (padding)

    @property
    def widest(self) -> int:
        """Keys of the widest group."""
        return self.keys.shape[1]

    def to(self, device: torch.device | str) -> "AttentionGroups":
        return replace(self, **{name: getattr(self, name).to(device) for name in ("queries", "keys", "blocked", "outputs")})

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float) -> torch.Tensor:
        """Attention outputs (R, T, heads, D) for query (R, heads, T, D) and key, value (R, kv heads, T, D)."""
        rows, heads, width, dim = query.shape
        kv_heads = key.shape[1]
        repeats = heads // kv_heads
        groups, lq = self.queries.shape
        lk = self.widest

        def gathered(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
            flat = x.transpose(1, 2).reshape(rows * width, x.shape[1] * dim)
            return flat.index_select(0, positions.reshape(-1)).float()

        # query heads grouped by the kv head they read (transformers' repeat_kv order): (G * kv, repeats * Lq, D)
        q = gathered(query, self.queries).view(groups, lq, kv_heads, repeats, dim).permute(0, 2, 3, 1, 4)
        q = q.reshape(groups * kv_heads, repeats * lq, dim)
        k = gathered(key, self.keys).view(groups, lk, kv_heads, dim).transpose(1, 2).reshape(groups * kv_heads, lk, dim)
        v = gathered(value, self.keys).view(groups, lk, kv_heads, dim).transpose(1, 2).reshape(groups * kv_heads, lk, dim)
        scores = torch.bmm(q, k.transpose(1, 2)).view(groups, heads, lq, lk) * scaling
        probs = scores.masked_fill(self.blocked, float("-inf")).softmax(-1).view(groups * kv_heads, repeats * lq, lk)
        out = torch.bmm(probs, v).view(groups, kv_heads, repeats, lq, dim).permute(0, 3, 1, 2, 4)
        out = out.reshape(groups * lq, heads * dim).to(query.dtype)
        out = torch.cat([out, out.new_zeros(1, heads * dim)])  # the slot padding positions take
        return out.index_select(0, self.outputs).view(rows, width, heads, dim)


def attention_groups(segment: torch.Tensor, sees_prefix: torch.Tensor, prefix_id: int, padding_id: int) -> AttentionGroups:
    """The groups of a packed batch whose (R, T) `segment` ids mark each row's examples (contiguous columns), its
    shared prefix (`prefix_id`) and padding (`padding_id`); an example whose tokens are marked in `sees_prefix`
    sees its row's prefix: the same attention as packing.block_causal_mask, padding excepted (no group)."""
    rows, width = segment.shape
    queries, keys, prefix_lengths = [], [], []
    for r in range(rows):
        ids = segment[r]
        prefix = torch.nonzero(ids == prefix_id).flatten() + r * width
        kinds, counts = torch.unique_consecutive(ids, return_counts=True)
        start = 0
        for kind, count in zip(kinds.tolist(), counts.tolist()):
            if kind != padding_id:
                columns = torch.arange(start, start + count) + r * width
                seen = prefix if kind != prefix_id and bool(sees_prefix[r, start]) else columns[:0]
                queries.append(columns)
                keys.append(torch.cat([seen, columns]))
                prefix_lengths.append(len(seen))
            start += count
    lq, lk = max(len(q) for q in queries), max(len(k) for k in keys)
    padded_queries = torch.stack([torch.cat([q, q[:1].expand(lq - len(q))]) for q in queries])
    padded_keys = torch.stack([torch.cat([k, k[:1].expand(lk - len(k))]) for k in keys])
    allowed = torch.zeros(len(queries), lq, lk, dtype=torch.bool)
    outputs = torch.full((rows * width,), len(queries) * lq, dtype=torch.long)
    for g, (q, seen) in enumerate(zip(queries, prefix_lengths)):
        n = len(q)
        allowed[g, :n, :seen] = True
        allowed[g, :n, seen:seen + n] = torch.ones(n, n, dtype=torch.bool).tril()
        allowed[g, n:, 0] = True  # padded queries see one key: no empty softmax row (NaN in the backward)
        outputs[q] = g * lq + torch.arange(n)
    return AttentionGroups(padded_queries, padded_keys, ~allowed[:, None], outputs)


def grouped_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                      attention_groups: AttentionGroups | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' attention interface: the groups where a forward passes them and nothing asks for more, else sdpa."""
    if attention_groups is None or dropout > 0 or kwargs.get("sliding_window") is not None \
            or kwargs.get("softcap") is not None or kwargs.get("s_aux") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    return attention_groups.attend(query, key, value, scale), None


AttentionInterface.register(NAME, grouped_attention)
AttentionMaskInterface.register(NAME, sdpa_mask)  # masks it builds itself (no 4D mask given) are sdpa's


def use_grouped_attention(causal_lm) -> bool:
    """Switch a model on sdpa to this implementation (sdpa wherever a forward passes no groups); True if switched.
    The choice lives in the model's config object only while it trains: transformers does not save it."""
    if causal_lm.config._attn_implementation != "sdpa":
        return False
    causal_lm.config._attn_implementation = NAME
    return True


def uses_grouped_attention(causal_lm) -> bool:
    return causal_lm.config._attn_implementation == NAME
