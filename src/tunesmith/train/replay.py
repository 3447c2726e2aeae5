"""Replay: earlier training data and general text mixed into every step of a continued run (`data.replay`).

Each optimizer step of `batch_size` examples takes `per_step` = round(share × batch_size) (at least one) from
the replay sources and the rest from the new data, so epochs over the new data count only its examples.
The replay slots alternate between the sources present (earlier data, general text) — a pool of 20 text
chunks is not drowned by 3,000 earlier chat rows — or, with `general_share` set, general text takes that
fraction of the slots, spread evenly over the run. Which example fills a slot is drawn from a generator
seeded by (seed, step): a resumed run replays exactly what the uninterrupted one would have.

Earlier data is found through the lineage: the training file of the parent and of every earlier ancestor,
as each run.json records it (path and sha256). A file that changed since is refused rather than replayed
as something the ancestor never saw. Rows the new data supersedes (a correction's old facts) are left out
with `drop_matching`. General text is read as `data.pii` left it: the run refuses it with
personal data in it, or replays its redacted copy (train/run_record.py `guard_personal_data`).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from tunesmith.config import ConfigError, DataConfig, ReplayConfig, RunConfig
from tunesmith.data.formats import Record, load_file
from tunesmith.data.hashing import file_sha256
from tunesmith.data.render import TokenizedExample, records_to_examples
from tunesmith.train.base_anchor import AnchoredExample
from tunesmith.train.parent import ancestors


@dataclass
class ReplaySource:
    name: str  # "earlier" or "general"
    files: list[dict]  # {path, sha256, run_dir?}: what was read, for run.json
    examples: list[TokenizedExample]
    dropped: dict[str, int] = field(default_factory=dict)  # drop_matching pattern -> rows it left out


@dataclass
class ReplayPool:
    share: float
    per_step: int
    sources: list[ReplaySource] = field(default_factory=list)
    general_share: float | None = None  # general text's (the last source's) fraction of the slots; None: alternate

    def step_examples(self, step: int, seed: int) -> list[TokenizedExample]:
        """The replayed examples of 0-based optimizer step `step`: a pure function of (seed, step)."""
        sizes = [len(src.examples) for src in self.sources]
        return [self.sources[s].examples[i] for s, i in replay_slots(step, seed, self.per_step, sizes, self.general_share)]

    def record(self) -> dict:
        """run.json's `replay`: what was mixed in, pinned by sha256."""
        return {"share": self.share, "per_step": self.per_step, "general_share": self.general_share,
                "sources": [{"name": s.name, "files": s.files, "examples": len(s.examples),
                             **({"dropped": s.dropped} if s.dropped else {})} for s in self.sources]}


def replay_slots(step: int, seed: int, count: int, sizes: list[int],
                 last_share: float | None = None) -> list[tuple[int, int]]:
    """(source, example index) for each of a step's `count` replay slots.

    Without `last_share` the sources alternate, starting at step % n. With it (two sources), the last source
    takes that fraction of the run's slots, evenly spread: slot g of the run (g = step × count + k) is its
    when ⌊(g+1)·share⌋ > ⌊g·share⌋, so every window of 1/share slots holds one of it."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step + 7_919)  # unlike epoch_order's stream
    slots = []
    for k in range(count):
        if last_share is None:
            source = (step + k) % len(sizes)
        else:
            g = step * count + k
            source = len(sizes) - 1 if math.floor((g + 1) * last_share) > math.floor(g * last_share) else 0
        slots.append((source, int(torch.randint(sizes[source], (1,), generator=generator))))
    return slots


def replay_per_step(share: float, batch_size: int) -> int:
    """Replayed examples per step: round(share × batch), at least 1, leaving at least 1 new example."""
    if batch_size < 2:
        raise ConfigError("data.replay needs train.batch_size of at least 2: one new and one replayed example per step")
    return min(batch_size - 1, max(1, round(share * batch_size)))


def earlier_training_files(parent_run: Path) -> list[dict]:
    """Each ancestor's training file (nearest ancestor first), once per content, checked against its sha256."""
    files, seen = [], set()
    for ancestor in ancestors(parent_run):
        path, recorded = ancestor.record.get("train_file"), ancestor.record.get("train_sha256")
        if not path or not recorded or recorded in seen:
            continue
        if not Path(path).is_file() or file_sha256(Path(path)) != recorded:
            raise ConfigError(f"data.replay: {path} (the training file of {ancestor.run_dir}) is missing or changed "
                              f"since that run (sha256 {recorded[:12]}…) — restore it, or set data.replay.from_parent: false")
        seen.add(recorded)
        files.append({"path": path, "sha256": recorded, "run_dir": str(ancestor.run_dir)})
    return files


def read_examples(path: Path, tokenizer, data: DataConfig, keep: Callable[[Record], bool] = lambda _: True
                  ) -> list[TokenizedExample]:
    loaded = load_file(path)
    if loaded.errors and not data.skip_invalid:
        raise ConfigError(f"data.replay: {loaded.errors[0]} ({len(loaded.errors)} invalid row(s) in all)")
    loaded.records = [record for record in loaded.records if keep(record)]
    return records_to_examples(loaded, tokenizer, data.max_length)


def record_content(record: Record) -> str:
    """The text `drop_matching` searches: a chat's message contents, one per line, or a document's text."""
    return "\n".join(m.get("content") or "" for m in record.messages) if record.kind == "chat" else record.text


class SupersededRows:
    """`data.replay.drop_matching`: earlier rows the new data supersedes, left out of the replay and counted
    under the first pattern that matches them, so run.json says what was dropped and a pattern that drops
    nothing (a typo) is refused instead of silently replaying what the update corrects."""

    def __init__(self, patterns: list[str]):
        self.patterns = [re.compile(p) for p in patterns]
        self.dropped = {p: 0 for p in patterns}

    def keep(self, record: Record) -> bool:
        text = record_content(record)
        for pattern in self.patterns:
            if pattern.search(text):
                self.dropped[pattern.pattern] += 1
                return False
        return True

    def check(self, files: list[dict]) -> None:
        idle = [p for p, count in self.dropped.items() if count == 0]
        if idle:
            raise ConfigError(f"data.replay.drop_matching: {idle[0]!r} matches no row of the earlier training files "
                              f"({', '.join(f['path'] for f in files)}) — fix the pattern or remove it")


def anchored(examples: list[TokenizedExample]) -> list[AnchoredExample]:
    return [AnchoredExample(e.input_ids, e.labels, e.truncated) for e in examples]


def load_replay(config: RunConfig, tokenizer) -> ReplayPool | None:
    """The run's replay pool, or None when `data.replay` is not set."""
    replay: ReplayConfig | None = config.data.replay
    if replay is None:
        return None
    sources = []
    if replay.from_parent:
        files = earlier_training_files(config.model.parent.run)
        superseded = SupersededRows(replay.drop_matching)
        examples = [e for f in files for e in read_examples(Path(f["path"]), tokenizer, config.data, superseded.keep)]
        superseded.check(files)
        if replay.earlier_loss == "kl_to_parent":  # towards the parent's answers (base_anchor.py)
            examples = anchored(examples)
        if examples:
            sources.append(ReplaySource("earlier", files, examples, superseded.dropped))
        elif superseded.dropped:
            raise ConfigError(f"data.replay.drop_matching drops every earlier row ({sum(superseded.dropped.values())}): nothing "
                              "of the ancestors' data is left to replay — narrow the patterns, or set from_parent: false")
    if replay.general_text is not None:
        chunked = config.data.model_copy(update={"max_length": replay.general_chunk_tokens or config.data.max_length})
        examples = read_examples(replay.general_text, tokenizer, chunked)
        if replay.general_loss in ("kl_to_base", "kl_to_parent"):  # towards the base or parent model (base_anchor.py)
            examples = anchored(examples)
        sources.append(ReplaySource("general", [{"path": str(replay.general_text),
                                                 "sha256": file_sha256(replay.general_text)}], examples))
    sources = [s for s in sources if s.examples]
    if not sources:
        raise ConfigError("data.replay: nothing to replay — the ancestors record no training file and no "
                          "general_text is set")
    general_share = replay.general_share if len(sources) == 2 else None  # general text is the last source
    return ReplayPool(replay.share, replay_per_step(replay.share, config.train.batch_size), sources, general_share)
