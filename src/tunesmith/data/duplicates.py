"""Duplicate rows: exact by normalized content, near by MinHash + LSH over word 3-grams, verified exactly.

Run as: library code; `tunesmith data check` warns with it about duplicates and train/valid leakage.
"""
from __future__ import annotations

import string
from collections import defaultdict
from dataclasses import dataclass
from itertools import count

import numpy as np

from tunesmith.data.formats import Record

NEAR_DUPLICATE_JACCARD = 0.8  # word 3-gram Jaccard similarity from which two rows are near duplicates

_BANDS, _ROWS_PER_BAND = 12, 3  # 36 hashes; a 0.8-Jaccard pair shares a band with probability > 0.999
_PUNCTUATION_TO_SPACE = str.maketrans(string.punctuation, " " * len(string.punctuation))
# odd 64-bit constants that mix a few integers into one hash (products wrap mod 2^64)
_SHINGLE_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9], dtype=np.uint64)
_BAND_MIX = np.array([0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x27D4EB2F165667C5], dtype=np.uint64)


def normalize_record_content(record: Record, system: bool = True) -> str:
    """Lowercased, whitespace-collapsed content; chat roles are kept so a question is not its answer.

    Punctuation is kept (unlike `phrasings.normalize_wording`): an exact duplicate is the same text,
    not merely the same words; near duplicates are what the 3-gram comparison is for. `system=False` leaves the
    system turns out: a system prompt that every row shares (a brand's instructions, the tools a row may call)
    would make any two short rows near duplicates.
    """
    body = record.text if record.kind == "text" else "\n".join(
        f"{m['role']}: {m['content']}" for m in record.messages if system or m["role"] != "system")
    return " ".join(body.lower().split())


def exact_groups(contents: list[str]) -> list[list[int]]:
    """Indices of contents that occur more than once, grouped, in order of first occurrence."""
    positions: dict[str, list[int]] = defaultdict(list)
    for index, content in enumerate(contents):
        positions[content].append(index)
    return [group for group in positions.values() if len(group) > 1]


@dataclass
class ShingleSets:
    """Each row's sorted unique word 3-gram hashes, stored flat: row r owns hashes[starts[r]:ends[r]]."""

    rows: list[int]  # indices into the contents given; rows under 3 words have no 3-grams and are left out
    hashes: np.ndarray  # (S,) uint64
    starts: np.ndarray  # (R,)
    ends: np.ndarray  # (R,)

    def jaccard(self, a: int, b: int) -> float:
        first, second = self.hashes[self.starts[a] : self.ends[a]], self.hashes[self.starts[b] : self.ends[b]]
        shared = len(set(first.tolist()).intersection(second.tolist()))
        return shared / (len(first) + len(second) - shared)


def near_duplicate_clusters(contents: list[str], threshold: float = NEAR_DUPLICATE_JACCARD) -> list[tuple[list[int], float]]:
    """Clusters of indices whose word 3-gram Jaccard similarity is ≥ threshold, each with its weakest verified link.

    Candidates come from MinHash banding (each row is compared with the first row of every bucket it
    lands in, so the work grows linearly), are screened on signature agreement, then verified exactly.
    Contents under 3 words have no 3-grams and are left to the exact check.
    """
    sets = shingle_sets(contents)
    if len(sets.rows) < 2:
        return []
    signatures = _minhash(sets)  # (R, BANDS * ROWS_PER_BAND)
    pairs = _candidate_pairs(signatures)  # (P, 2)
    agreement = (signatures[pairs[:, 0]] == signatures[pairs[:, 1]]).mean(axis=1)
    edges = []
    for a, b in pairs[agreement >= threshold - 0.2].tolist():
        similarity = sets.jaccard(a, b)
        if similarity >= threshold:
            edges.append((a, b, similarity))
    parent = list(range(len(sets.rows)))
    for a, b, _ in edges:
        parent[_find(parent, a)] = _find(parent, b)
    weakest: dict[int, float] = {}
    for a, _, similarity in edges:
        root = _find(parent, a)
        weakest[root] = min(similarity, weakest.get(root, 1.0))
    members: dict[int, list[int]] = defaultdict(list)
    for index, row in enumerate(sets.rows):
        members[_find(parent, index)].append(row)
    return [(group, weakest[root]) for root, group in members.items() if len(group) > 1]


def shingle_sets(contents: list[str]) -> ShingleSets:
    word_ids: defaultdict[str, int] = defaultdict(count().__next__)
    ids, lengths, rows = [], [], []
    for index, content in enumerate(contents):
        words = content.translate(_PUNCTUATION_TO_SPACE).split()
        if len(words) >= 3:
            ids += [word_ids[word] for word in words]
            lengths.append(len(words))
            rows.append(index)
    ids_array = np.array(ids, dtype=np.uint64)
    owners = np.repeat(np.arange(len(rows), dtype=np.uint64), lengths)
    within_row = owners[:-2] == owners[2:]  # 3-grams that do not cross into the next row
    hashes = ids_array[:-2] * _SHINGLE_MIX[0] + ids_array[1:-1] * _SHINGLE_MIX[1] + ids_array[2:] * _SHINGLE_MIX[2]
    # One sort for (row, hash) order and per-row uniqueness: the row in the high bits, the hash in the rest.
    hash_bits = np.uint64(64 - max(1, len(rows).bit_length()))
    keys = np.sort((owners[:-2][within_row] << hash_bits) | (hashes[within_row] >> (np.uint64(64) - hash_bits)))
    if len(keys):  # no row with 3+ words leaves nothing to deduplicate
        keys = keys[np.r_[True, keys[1:] != keys[:-1]]]
    row_of_key = (keys >> hash_bits).astype(np.int64)
    starts = np.searchsorted(row_of_key, np.arange(len(rows)))
    ends = np.r_[starts[1:], len(keys)].astype(starts.dtype)
    return ShingleSets(rows, keys & ((np.uint64(1) << hash_bits) - np.uint64(1)), starts, ends)


def _minhash(sets: ShingleSets) -> np.ndarray:
    """(R, H) signatures: per hash function, the minimum of a multiply-shift hash over each row's 3-grams."""
    rng = np.random.default_rng(0)
    size = _BANDS * _ROWS_PER_BAND
    multipliers = rng.integers(1, 2**63, size=size, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    offsets = rng.integers(0, 2**63, size=size, dtype=np.uint64)
    signatures = np.empty((len(sets.rows), size), dtype=np.uint64)
    for column in range(size):
        hashed = (sets.hashes * multipliers[column] + offsets[column]) >> np.uint64(32)
        signatures[:, column] = np.minimum.reduceat(hashed, sets.starts)
    return signatures


def _candidate_pairs(signatures: np.ndarray) -> np.ndarray:
    """(P, 2) unique (bucket leader, member) pairs over all bands; the leader is a bucket's lowest index."""
    found = []
    indices = np.arange(len(signatures))
    for band in range(_BANDS):
        keys = (signatures[:, band * _ROWS_PER_BAND : (band + 1) * _ROWS_PER_BAND] * _BAND_MIX).sum(axis=1)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        run_start = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
        leaders = order[np.maximum.accumulate(np.where(run_start, indices, 0))]
        member = ~run_start
        found.append(np.stack([leaders[member], order[member]], axis=1))
    pairs = np.concatenate(found)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def _find(parent: list[int], index: int) -> int:
    while parent[index] != index:
        parent[index] = parent[parent[index]]
        index = parent[index]
    return index
