"""Turn tokenized examples into model inputs, packed or padded, without examples seeing each other.

Packed rows are as wide as the batch's longest example, not data.max_length: padding every example to that
width is what packing saves, while the attention's cost grows with the square of the row width. Measured on
the elements rows (about 52 tokens each, batch 16, LoRA, 2-core CPU): rows packed to 256 tokens trained at
561 tokens/s, unpacked rows at 686; rows as wide as the longest example keep the unpacked speed on uniform
data and still pack short examples beside long ones.

Packed rows carry position ids that restart at 0 for each example and an explicit 4D block-diagonal
causal mask: with sdpa/eager attention, position ids alone do NOT stop packed examples from
attending to each other (measured: logits differ by ~23), the explicit mask does (< 1e-4).

Shared prefixes (`data.share_prefix`): chat examples rendered with one template often begin with the same
untrained tokens (SmolLM2's default system prompt is 21 of the elements rows' ~52). With sharing on, the
examples of a batch that start with the same untrained prefix are packed behind one copy of it: each row
holds the prefix once, then the rest of each example at positions that continue the prefix's, and a mask
that lets each example see the prefix and itself. Every example computes what it would alone (the prefix's
keys and values are the same whoever reads them), while the prefix is computed once per row.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch

from tunesmith.data.render import IGNORE_INDEX, TokenizedExample
from tunesmith.train.grouped_attention import AttentionGroups, attention_groups


@dataclass
class ModelBatch:
    input_ids: torch.Tensor  # (R, T) token ids, padded with pad_id
    targets: torch.Tensor  # (R, T) next-token target per position, IGNORE_INDEX where not trained
    position_ids: torch.Tensor  # (R, T) restarting at 0 for every example
    attention_mask: torch.Tensor  # (R, 1, T, T) bool, True = may attend
    num_real_tokens: int  # tokens of real examples (padding excluded)
    attention_groups: AttentionGroups | None = None  # the same mask as dense groups (train/grouped_attention.py)

    def to(self, device: torch.device | str) -> "ModelBatch":
        """The same batch on `device` (itself when already there)."""
        groups = self.attention_groups.to(device) if self.attention_groups is not None else None
        return replace(self, input_ids=self.input_ids.to(device), targets=self.targets.to(device),
                       position_ids=self.position_ids.to(device), attention_mask=self.attention_mask.to(device),
                       attention_groups=groups)

    @property
    def num_trained(self) -> int:
        return int((self.targets != IGNORE_INDEX).sum())

    @property
    def rows(self) -> int:
        return self.input_ids.shape[0]


class Placement(NamedTuple):
    """Where an example's tokens sit in a collated batch: its row and its columns there (for an example that shares
    the row's prefix, its tokens after the prefix)."""

    row: int
    columns: slice


def next_token_targets(example: TokenizedExample) -> list[int]:
    """Shift labels left inside one example, so no target ever crosses into a packed neighbour."""
    return example.labels[1:] + [IGNORE_INDEX]


def pack_rows(lengths: list[int], max_length: int) -> list[list[int]]:
    """First-fit-decreasing bin packing of example indices into rows of at most max_length tokens.

    Deterministic: ties keep input order. Examples longer than max_length get a row to themselves
    (they were truncated to max_length when rendered).
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    rows: list[list[int]] = []
    room: list[int] = []
    for index in order:
        for row, free in enumerate(room):
            if lengths[index] <= free:
                rows[row].append(index)
                room[row] -= lengths[index]
                break
        else:
            rows.append([index])
            room.append(max_length - lengths[index])
    return rows


def batch_rows(lengths: list[int], max_length: int, packing: bool) -> list[list[int]]:
    """Which examples share each row: packed into rows as wide as the longest example, or one example a row."""
    return pack_rows(lengths, min(max_length, max(lengths))) if packing else [[i] for i in range(len(lengths))]


MIN_SHARED_PREFIX = 8  # tokens: a shorter common prefix is not worth giving up rows as narrow as one example
# Widest row the sharing examples are packed into (unless data.max_length is smaller or one example is wider): a
# row's attention grows with the square of its width. Measured at this width (the demo's and train_throughput's
# max_length, 256): demo steps 831 -> 648 ms, train_throughput 425.7 -> 531.0 tokens/s (benchmarks/README.md).
SHARED_ROW_TOKENS = 256
PREFIX, PADDING = -2, -1  # segment ids of a row's shared prefix and of its padding


def collate(examples: list[TokenizedExample], pad_id: int, max_length: int, packing: bool,
            share_prefix: bool = False, shareable: Sequence[bool] | None = None, min_rows: int = 1) -> ModelBatch:
    return collate_placed(examples, pad_id, max_length, packing, share_prefix, shareable, min_rows)[0]


def collate_placed(examples: list[TokenizedExample], pad_id: int, max_length: int, packing: bool,
                   share_prefix: bool = False, shareable: Sequence[bool] | None = None,
                   min_rows: int = 1) -> tuple[ModelBatch, list[Placement]]:
    """The batch, and where each example landed in it, in the order of `examples`.

    With `share_prefix` (and packing), examples that start with the same untrained prefix share one copy of it
    per row (module doc); such an example's placement covers its tokens after the prefix.
    `shareable[i]` False keeps example i whole (a caller that reads an example's tokens as one span).
    `min_rows`: rows of padding after the examples' until the batch has that many (compiled layers keep their
    graph's row count: train/compiled_layers.py); they change no loss."""
    layout = row_layout(examples, max_length, packing, share_prefix, shareable)
    if (missing := min_rows - len(layout.rows)) > 0:
        layout = replace(layout, rows=layout.rows + [[] for _ in range(missing)],
                         has_prefix=layout.has_prefix + [False] * missing)
    return filled_rows(examples, layout, pad_id)


@dataclass
class RowLayout:
    rows: list[list[int]]  # example indices per row, in order
    has_prefix: list[bool]  # per row: it starts with the shared prefix
    width: int  # the batch's width (its widest row)
    prefix: int  # tokens of the shared prefix (0: none)
    sharing: list[bool]  # per example: it shares the prefix (keeps only its tokens after it)


def row_layout(examples: list[TokenizedExample], max_length: int, packing: bool, share_prefix: bool = False,
               shareable: Sequence[bool] | None = None) -> RowLayout:
    """Where `collate_placed` puts each example (the estimator reads the same layout without building tensors)."""
    lengths = [len(e.input_ids) for e in examples]
    prefix, sharing = 0, [False] * len(examples)
    if share_prefix and packing:
        prefix, sharing = common_prefix(examples, shareable or [True] * len(examples))
    if prefix:
        return RowLayout(*shared_layout(lengths, max_length, prefix, sharing), prefix, sharing)
    rows = batch_rows(lengths, max_length, packing)
    return RowLayout(rows, [False] * len(rows), max(sum(lengths[i] for i in row) for row in rows), 0, sharing)


def common_prefix(examples: list[TokenizedExample], shareable: Sequence[bool]) -> tuple[int, list[bool]]:
    """(length, which examples share it): the longest untrained prefix that the most examples start with.

    Examples are grouped by their first MIN_SHARED_PREFIX tokens; the largest group (at least two) shares the
    tokens all its members start with, up to the first trained target and leaving each member a token of its
    own. (0, none) when no such prefix is MIN_SHARED_PREFIX tokens long."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, example in enumerate(examples):
        if shareable[i] and len(example.input_ids) > MIN_SHARED_PREFIX:
            groups.setdefault(tuple(example.input_ids[:MIN_SHARED_PREFIX]), []).append(i)
    members = max(groups.values(), key=len, default=[])
    if len(members) < 2:
        return 0, [False] * len(examples)
    first = examples[members[0]].input_ids
    length = min(len(examples[i].input_ids) for i in members) - 1
    for i in members:
        ids, targets = examples[i].input_ids, next_token_targets(examples[i])
        length = next((k for k in range(length) if ids[k] != first[k] or targets[k] != IGNORE_INDEX), length)
    if length < MIN_SHARED_PREFIX:
        return 0, [False] * len(examples)
    chosen = set(members)
    return length, [i in chosen for i in range(len(examples))]


def filled_rows(examples: list[TokenizedExample], layout: RowLayout, pad_id: int) -> tuple[ModelBatch, list[Placement]]:
    """The batch for this layout: each row holds its examples in order, after one copy of the sharing examples'
    common prefix where the row has it; a sharing example keeps only its tokens after the prefix."""
    rows, width, prefix, sharing = layout.rows, layout.width, layout.prefix, layout.sharing
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    targets = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    segment = torch.full((len(rows), width), PADDING, dtype=torch.long)
    sees_prefix = torch.zeros((len(rows), width), dtype=torch.bool)
    head_ids = torch.tensor(examples[sharing.index(True)].input_ids[:prefix]) if prefix else None
    placed: list[Placement | None] = [None] * len(examples)
    for r, row in enumerate(rows):
        start = 0
        if layout.has_prefix[r]:
            input_ids[r, :prefix], position_ids[r, :prefix], segment[r, :prefix] = head_ids, torch.arange(prefix), PREFIX
            start = prefix
        for s, index in enumerate(row):
            example, first = examples[index], prefix if sharing[index] else 0
            n = len(example.input_ids) - first
            columns = slice(start, start + n)
            input_ids[r, columns] = torch.tensor(example.input_ids[first:])
            targets[r, columns] = torch.tensor(next_token_targets(example)[first:])
            position_ids[r, columns] = torch.arange(first, first + n)
            segment[r, columns] = s
            sees_prefix[r, columns] = sharing[index]
            placed[index] = Placement(r, columns)
            start += n
    real = sum(len(e.input_ids) for e in examples)  # the examples' tokens, as without sharing: the same work done
    batch = ModelBatch(input_ids, targets, position_ids, block_causal_mask(segment, sees_prefix), real,
                       attention_groups(segment, sees_prefix, PREFIX, PADDING))
    return batch, placed  # type: ignore[return-value]


def shared_layout(lengths: list[int], max_length: int, prefix: int,
                  sharing: list[bool]) -> tuple[list[list[int]], list[bool], int]:
    """(rows of example indices, whether each row starts with the prefix, the batch's width) for examples of
    these lengths when the `sharing` ones keep only their tokens after the prefix."""
    sizes = [length - (prefix if shares else 0) for length, shares in zip(lengths, sharing)]
    widest = min(max_length, max(SHARED_ROW_TOKENS, *lengths))
    rows = pack_rows(sizes, max(widest - prefix, 1))  # every row keeps room for the prefix
    has_prefix = [any(sharing[i] for i in row) for row in rows]
    width = max(prefix * head + sum(sizes[i] for i in row) for row, head in zip(rows, has_prefix))
    return rows, has_prefix, width


def block_causal_mask(segment: torch.Tensor, sees_prefix: torch.Tensor) -> torch.Tensor:
    """(R, T) segment ids → (R, 1, T, T) bool mask: causal, and only within the same segment; the tokens marked
    in `sees_prefix` (R, T) also see their row's shared prefix (segment PREFIX), which sees itself.

    Padding (segment PADDING) attends to itself only, so no softmax row is empty (an all-masked row
    gives NaN under sdpa).
    """
    width = segment.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    same = (segment[:, :, None] == segment[:, None, :]) & (segment[:, :, None] != PADDING)  # (R, T, T)
    to_prefix = sees_prefix[:, :, None] & (segment[:, None, :] == PREFIX)
    pad_self = (segment[:, :, None] == PADDING) & torch.eye(width, dtype=torch.bool)
    return (((same | to_prefix) & causal) | pad_self)[:, None]
