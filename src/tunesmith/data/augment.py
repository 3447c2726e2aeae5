"""`tunesmith data augment`: many phrasings of each fact in structured records and documents.

Run as: tunesmith data augment SPEC.yaml --records FILE.csv --out DIR

Finetuning on one phrasing of a fact does not teach the fact in other phrasings (Ovadia et al. 2023,
arXiv 2312.05934), so every fact is asked with several question templates. A spec (YAML, strict)
names *relations*: an answer template and question templates whose `{placeholders}` are filled from
one source, i.e. a record row (CSV or JSONL) or a document passage (see `read_passages`). Templates
are assigned to train, valid and eval explicitly, or by fraction from one `questions` list.

Holdout decides what evaluation has not seen:
  by-source    (default) a fraction of sources appear only in valid/eval, and every phrasing is
               used everywhere: measures a skill on unseen rows, never a memorised row reworded.
  by-template  every source is in every split, and the phrasings are disjoint: measures whether a
               taught fact carries over to wordings never trained on (what the elements demo needs).

Chat rows may only carry `messages` (formats.py rejects other keys), so where each example came from
(source row or passage, relation, template, spec or model phrasing) is written to `sources.jsonl`,
one row per example, keyed by split and line. Examples are deduplicated on normalized question and
answer, across splits too. Output is deterministic for a seed, and each split draws from its own
stream (`random.Random(f"{seed}:{split}")`; the source partition from `random.Random(seed)`): a change to
the training mix (`train_per_source`) leaves valid and eval exactly as they were, so scores stay comparable.
"""
from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from tunesmith.data.augment_spec import (
    SPLITS, AugmentError, AugmentSpec, Holdout, Relation, load_spec, template_fields,
)
from tunesmith.data.paraphrase import add_paraphrases, model_generator
from tunesmith.data.phrasings import Phrasing, Plan, normalize_wording, plan_phrasings, pooled
from tunesmith.data.reverse import with_reverse_relations
from tunesmith.data.sources import Source, read_passages, read_records

__all__ = ["AugmentError", "AugmentSpec", "Holdout", "Source", "augment", "augment_files", "load_spec",
           "read_passages", "read_records", "write_augmented"]


# ---------------------------------------------------------------- filling


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def capitalized(value: str) -> str:
    return value[:1].upper() + value[1:]


class Filler:
    """Fills templates from a source; random-case placeholders draw from the rng once per question each."""

    def __init__(self, spec: AugmentSpec):
        self.spec = spec
        self.random_case = [name for name, p in spec.placeholders.items() if p.case == "random"]

    def raw(self, name: str, source: Source) -> Any:
        """A placeholder's value as written (formatted, never case-changed); None when absent."""
        placeholder = self.spec.placeholders.get(name)
        value = source.fields.get(placeholder.field if placeholder else name)
        if placeholder and placeholder.format == "ordinal" and value not in (None, ""):
            value = ordinal(int(value))
        return value

    def values(self, names: set[str], source: Source, rng: random.Random | None) -> dict[str, Any]:
        draws = {name: rng.random() for name in self.random_case} if rng is not None else {}
        values = {}
        for name in names:
            value, placeholder = self.raw(name, source), self.spec.placeholders.get(name)
            if placeholder and placeholder.case == "capitalize":
                value = capitalized(str(value))
            elif name in draws and draws[name] >= 0.5:
                value = capitalized(str(value))
            values[name] = value
        return values

    def question(self, template: str, source: Source, rng: random.Random) -> str:
        text = template.format(**self.values(template_fields(template), source, rng))
        return capitalized(text) if template.startswith("{") else text  # a sentence starts upper-case

    def answer(self, relation: Relation, source: Source) -> str:
        return relation.answer.format(**self.values(template_fields(relation.answer), source, None))

    def complete(self, relation: Relation, plan: dict[str, list[Phrasing]], source: Source) -> bool:
        """Whether the source has a value for every placeholder the relation uses (else the fact is skipped)."""
        return all(self.raw(name, source) not in (None, "", []) for name in relation_placeholders(relation, plan))


def relation_placeholders(relation: Relation, plan: dict[str, list[Phrasing]]) -> set[str]:
    names = template_fields(relation.answer) | ({relation.eval_answer} if relation.eval_answer else set())
    for phrasings in plan.values():
        for phrasing in phrasings:
            names |= template_fields(phrasing.text)
    return names


def check_placeholders(spec: AugmentSpec, plan: Plan, sources: list[Source]) -> None:
    """A placeholder that names no field of any source is a typo, not a missing value: say so."""
    fields = {key for source in sources for key in source.fields}
    wanted = {(f"relations.{name}", placeholder) for name, relation in spec.relations.items()
              for placeholder in relation_placeholders(relation, plan[name])}
    wanted |= {("eval_items", p) for p in template_fields(spec.eval_items.id) - {"relation", "source_index"}}
    wanted |= {("eval_items.fields", p) for p in spec.eval_items.fields.values()}
    for where, placeholder in sorted(wanted):
        declared = spec.placeholders.get(placeholder)
        field_name = declared.field if declared else placeholder
        if field_name not in fields:
            raise AugmentError(f"{where}: {{{placeholder}}} names no field of the sources "
                               f"(fields: {', '.join(sorted(fields)) or 'none'})")


# ---------------------------------------------------------------- expansion


@dataclass
class Example:
    split: str
    relation: str
    question: str
    answer: str  # the filled answer template
    source: Source
    phrasing: Phrasing
    item: dict | None = None  # the eval QA item (eval split only)

    def row(self) -> dict:
        if self.item is not None:
            return self.item
        return {"messages": [{"role": "user", "content": self.question}, {"role": "assistant", "content": self.answer}]}

    def provenance(self, line: int) -> dict:
        row = {"split": self.split, "line": line, "relation": self.relation, "template": self.phrasing.text,
               "phrasing": self.phrasing.origin, "source": self.source.origin}
        if self.phrasing.paraphrase_of is not None:
            row["paraphrase_of"] = self.phrasing.paraphrase_of
        return row


@dataclass
class Augmented:
    train: list[Example]
    valid: list[Example]
    eval: list[Example]
    duplicates: Counter = field(default_factory=Counter)  # split -> rows dropped as duplicates

    def split(self, name: str) -> list[Example]:
        return getattr(self, name)


def augment(spec: AugmentSpec, sources: list[Source], holdout: Holdout | str = Holdout.by_source,
            holdout_fraction: float = 0.2, seed: int = 0, plan: Plan | None = None) -> Augmented:
    """Train chat rows, valid chat rows and eval QA items for every source x relation, deduplicated.

    Relations asked one way only get their reverse first (data/reverse.py); a given `plan` must come
    from the spec so extended.
    """
    holdout = parse_holdout(holdout)
    spec = with_reverse_relations(spec, sources)
    rng = random.Random(seed)
    plan = plan if plan is not None else plan_phrasings(spec, seed)
    check_placeholders(spec, plan, sources)
    filler = Filler(spec)
    if holdout is Holdout.by_template:
        train_sources = valid_sources = eval_sources = sources
    else:
        train_sources, valid_sources, eval_sources = partition_sources(sources, holdout_fraction, rng)
        plan = pooled(plan)
    stream = lambda split: random.Random(f"{seed}:{split}")  # noqa: E731 (one per split: see the module docstring)
    result = Augmented(
        train=train_examples(spec, plan, filler, train_sources, stream("train")),
        valid=valid_examples(spec, plan, filler, valid_sources, stream("valid")),
        eval=eval_examples(spec, plan, filler, eval_sources, stream("eval")),
    )
    return deduplicate(result)


def parse_holdout(holdout: Holdout | str) -> Holdout:
    try:
        return Holdout(holdout)
    except ValueError:
        raise AugmentError(f"holdout must be one of {', '.join(h.value for h in Holdout)}, got {holdout!r}") from None


def partition_sources(sources: list[Source], fraction: float, rng: random.Random) -> tuple[list[Source], ...]:
    """Hold out `fraction` of the sources (at least one each for valid and eval when there are 3+), half each."""
    if not 0 <= fraction < 1:
        raise AugmentError(f"holdout fraction must be in [0, 1), got {fraction}")
    order = list(range(len(sources)))
    rng.shuffle(order)
    held = round(fraction * len(sources))
    if fraction > 0 and len(sources) >= 3:
        held = max(held, 2)
    n_eval = held // 2 + held % 2
    eval_ids, valid_ids = set(order[:n_eval]), set(order[n_eval:held])
    keep = lambda ids: [s for i, s in enumerate(sources) if i in ids]  # noqa: E731 (source order kept)
    return keep(set(order[held:])), keep(valid_ids), keep(eval_ids)


def train_examples(spec: AugmentSpec, plan: Plan, filler: Filler, sources: list[Source], rng: random.Random) -> list[Example]:
    """Each source x relation fact asked with `train_per_source` distinct training phrasings, shuffled."""
    examples = []
    for source in sources:
        for name, relation in spec.relations.items():
            if not filler.complete(relation, plan[name], source):
                continue
            options = plan[name]["train"]
            count = len(options) if spec.splits.train_per_source is None else min(spec.splits.train_per_source, len(options))
            for phrasing in rng.sample(options, count):
                examples.append(Example("train", name, filler.question(phrasing.text, source, rng),
                                        filler.answer(relation, source), source, phrasing))
    rng.shuffle(examples)
    return examples


def valid_examples(spec: AugmentSpec, plan: Plan, filler: Filler, sources: list[Source], rng: random.Random) -> list[Example]:
    """`valid_size` facts drawn at random (default: every fact), each asked with one random valid phrasing."""
    facts = [(source, name) for source in sources for name, relation in spec.relations.items()
             if plan[name]["valid"] and filler.complete(relation, plan[name], source)]
    if spec.splits.valid_size is not None:
        facts = rng.sample(facts, min(spec.splits.valid_size, len(facts)))
    examples = []
    for source, name in facts:
        phrasing = rng.choice(plan[name]["valid"])
        relation = spec.relations[name]
        examples.append(Example("valid", name, filler.question(phrasing.text, source, rng),
                                filler.answer(relation, source), source, phrasing))
    return examples


def eval_examples(spec: AugmentSpec, plan: Plan, filler: Filler, sources: list[Source], rng: random.Random) -> list[Example]:
    """One QA item per source x relation; eval phrasings are used in turn from a random start.

    A phrasing whose question would contain the answer ("Counting hydrogen as 1..." for hydrogen) is
    passed over for the next one.
    """
    examples = []
    for name, relation in spec.relations.items():
        options = plan[name]["eval"]
        if not options:
            continue
        offset = rng.randrange(len(options))
        for index, source in enumerate(sources):
            if not filler.complete(relation, plan[name], source):
                continue
            answer_sentence = filler.answer(relation, source)
            answer = str(filler.raw(relation.eval_answer, source)) if relation.eval_answer else answer_sentence
            if answer in relation.eval_skip:
                continue
            question, phrasing = "", options[0]
            for turn in range(len(options)):
                phrasing = options[(index + offset + turn) % len(options)]
                question = filler.question(phrasing.text, source, rng)
                if not re.search(rf"\b{re.escape(answer)}\b", question, re.IGNORECASE):
                    break
            item = eval_item(spec, filler, name, relation, source, index, question, answer)
            examples.append(Example("eval", name, question, answer_sentence, source, phrasing, item))
    return examples


def eval_item(spec: AugmentSpec, filler: Filler, name: str, relation: Relation, source: Source, index: int,
              question: str, answer: str) -> dict:
    """{id, question, answer, relation, <eval_items.fields>, aliases?, match?}: the shape `qa` suite tasks read."""
    id_names = template_fields(spec.eval_items.id) - {"relation", "source_index"}
    item = {
        "id": spec.eval_items.id.format(relation=name, source_index=index + 1,
                                        **{key: filler.raw(key, source) for key in id_names}),
        "question": question,
        "answer": answer,
        "relation": name,
    }
    for key, placeholder in spec.eval_items.fields.items():
        item[key] = filler.raw(placeholder, source)
    aliases = source.fields.get(relation.eval_aliases) if relation.eval_aliases else None
    if aliases:
        item["aliases"] = list(aliases) if isinstance(aliases, list) else [a.strip() for a in str(aliases).split("|")]
    if relation.case_sensitive:
        item["match"] = {"case_sensitive": True}
    return item


def deduplicate(result: Augmented) -> Augmented:
    """Drop rows whose normalized (question, answer) appeared before, in this split or an earlier one."""
    seen: set[tuple[str, str]] = set()
    kept = {}
    for split in SPLITS:
        kept[split] = []
        for example in result.split(split):
            key = (normalize_wording(example.question), normalize_wording(example.answer))
            if key in seen:
                result.duplicates[split] += 1
                continue
            seen.add(key)
            kept[split].append(example)
    return replace(result, **kept)


# ---------------------------------------------------------------- files


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_augmented(result: Augmented, out: Path, provenance: bool = True) -> None:
    """train.jsonl and valid.jsonl (chat), eval.jsonl (QA items) and, with provenance, sources.jsonl."""
    out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        write_jsonl(out / f"{split}.jsonl", [example.row() for example in result.split(split)])
    if provenance:
        write_jsonl(out / "sources.jsonl", [example.provenance(line) for split in SPLITS
                                           for line, example in enumerate(result.split(split), start=1)])


@dataclass
class AugmentSummary:
    out: Path
    sources: int
    rows: dict[str, int]  # split -> rows written
    sources_per_split: dict[str, int]
    by_relation: dict[str, dict[str, int]]  # relation -> split -> rows
    duplicates: dict[str, int]
    paraphrases_asked: int = 0  # model paraphrases asked for per question template
    model_phrasings: int = 0  # accepted model paraphrases of question templates
    rejected_paraphrases: dict[str, int] = field(default_factory=dict)  # reason -> count


def summarise(result: Augmented, relations: list[str], sources: list[Source], out: Path) -> AugmentSummary:
    by_relation = {relation: dict.fromkeys(SPLITS, 0) for relation in relations}
    for split in SPLITS:
        for example in result.split(split):
            by_relation[example.relation][split] += 1
    return AugmentSummary(
        out=out, sources=len(sources),
        rows={split: len(result.split(split)) for split in SPLITS},
        sources_per_split={split: len({json.dumps(e.source.origin, sort_keys=True) for e in result.split(split)})
                           for split in SPLITS},
        by_relation=by_relation, duplicates=dict(result.duplicates),
    )


def augment_files(spec_path: Path, records: list[Path], documents: list[Path], out: Path,
                  holdout: Holdout | str = Holdout.by_source, holdout_fraction: float = 0.2, seed: int = 0,
                  paraphrases: int = 0, paraphrase_model: str = "smollm2-135m-instruct",
                  generate: Callable[[list[list[dict]]], list[str]] | None = None) -> AugmentSummary:
    """The whole command: read spec and sources, optionally paraphrase templates, expand, write, summarise."""
    spec, holdout = load_spec(spec_path), parse_holdout(holdout)
    if not records and not documents:
        raise AugmentError("give at least one --records or --documents file")
    sources = [s for path in records for s in read_records(path)]
    sources += [s for path in documents for s in read_passages(path, spec.passages.max_chars)]
    if not sources:
        raise AugmentError("the input files hold no records or passages")
    spec = with_reverse_relations(spec, sources)
    plan = plan_phrasings(spec, seed)
    rejected: Counter = Counter()
    if paraphrases > 0:
        plan, rejections = add_paraphrases(plan, paraphrases, generate or model_generator(paraphrase_model))
        rejected = Counter(rejection.reason for rejection in rejections)
    result = augment(spec, sources, holdout, holdout_fraction, seed, plan)
    write_augmented(result, Path(out))
    summary = summarise(result, list(spec.relations), sources, Path(out))
    summary.paraphrases_asked = paraphrases
    summary.model_phrasings = sum(p.origin == "model" for splits in plan.values() for ps in splits.values() for p in ps)
    summary.rejected_paraphrases = dict(rejected)
    return summary
