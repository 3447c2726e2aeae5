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
one row per example, keyed by split and line. Examples are deduplicated on normalised question and
answer, across splits too. Output is deterministic for a seed: one `random.Random(seed)` is drawn in
a fixed order (source partition, train, valid, eval).
"""
from __future__ import annotations

import csv
import hashlib
import json
import random
import re
import string
from collections import Counter
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tunesmith.config import validation_message

SPLITS = ("train", "valid", "eval")


class AugmentError(ValueError):
    """A spec or input problem, worded for the person running the command."""


class Holdout(str, Enum):
    by_source = "by-source"
    by_template = "by-template"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Placeholder(Strict):
    """How a `{placeholder}` is filled; a placeholder not declared is the record field of the same name."""

    field: str = Field(description="Record field (or passage field) the value comes from.")
    case: Literal["as_is", "capitalize", "random"] = Field(
        "as_is", description="capitalize: first letter upper-cased; random: as written or capitalised, "
        "drawn once per question (answers always use the value as written).")
    format: Literal["plain", "ordinal"] = Field("plain", description="ordinal: 79 -> '79th'.")


class Relation(Strict):
    """One kind of fact: an answer template and the question templates that ask for it."""

    answer: str = Field(description="Answer template of train/valid chat rows, e.g. 'The symbol for {name} is {symbol}.'")
    train: list[str] = Field([], description="Question templates used only for training.")
    valid: list[str] = Field([], description="Question templates used only for validation.")
    eval: list[str] = Field([], description="Question templates used only for evaluation.")
    questions: list[str] = Field([], description="Templates split by `splits.template_fractions` instead.")
    eval_answer: str | None = Field(None, description="Placeholder whose value an eval item expects; "
                                    "default: the whole answer sentence.")
    case_sensitive: bool = Field(False, description="Eval items match case-sensitively ('Co' is not 'CO').")
    eval_aliases: str | None = Field(None, description="Record field listing other accepted eval answers.")
    eval_skip: list[str] = Field([], description="Answer values too ambiguous to score ('I', 'As'): no eval item.")

    @model_validator(mode="after")
    def _one_way_of_splitting(self) -> "Relation":
        explicit = self.train or self.valid or self.eval
        if explicit and self.questions:
            raise ValueError("give either train/valid/eval template lists or one `questions` list, not both")
        if not explicit and not self.questions:
            raise ValueError("no question templates: add train/valid/eval lists or a `questions` list")
        shared = (set(self.train) & set(self.valid)) | (set(self.train) & set(self.eval)) | (set(self.valid) & set(self.eval))
        if shared:
            raise ValueError(f"template in more than one split: {sorted(shared)[0]!r}")
        return self


class TemplateFractions(Strict):
    valid: float = Field(0.2, ge=0, le=1)
    eval: float = Field(0.2, ge=0, le=1)


class Splits(Strict):
    train_per_source: int | None = Field(None, ge=1, description="Training phrasings per source x relation (default all).")
    valid_size: int | None = Field(None, ge=0, description="Valid rows sampled from all facts (default one per fact).")
    template_fractions: TemplateFractions = Field(default_factory=TemplateFractions,
                                                  description="Share of a `questions` list held out per split.")


class EvalItems(Strict):
    id: str = Field("{relation}-{source_index}", description="Template of an eval item's id.")
    fields: dict[str, str] = Field({}, description="Extra item keys: key -> placeholder, e.g. {element: name}.")


class PassageSplitting(Strict):
    max_chars: int = Field(1200, ge=80, description="Longest passage; longer sections split at paragraphs, then sentences.")


class AugmentSpec(Strict):
    placeholders: dict[str, Placeholder] = Field({}, description="Placeholders that are not plain record fields.")
    relations: dict[str, Relation] = Field(description="Kinds of fact, by name.")
    splits: Splits = Field(default_factory=Splits)
    eval_items: EvalItems = Field(default_factory=EvalItems)
    passages: PassageSplitting = Field(default_factory=PassageSplitting)

    @model_validator(mode="after")
    def _templates_parse(self) -> "AugmentSpec":
        for name, relation in self.relations.items():
            for template in [relation.answer, *relation.train, *relation.valid, *relation.eval, *relation.questions]:
                try:
                    template_fields(template)
                except ValueError as exc:
                    raise ValueError(f"relations.{name}: template {template!r}: {exc}") from None
        return self


def _model_at(loc: tuple) -> type[BaseModel]:
    """The model that owns the keys at `loc` (for naming the nearest valid key of a typo)."""
    if len(loc) == 2 and loc[0] in ("relations", "placeholders"):
        return Relation if loc[0] == "relations" else Placeholder
    model: type[BaseModel] = AugmentSpec
    for part in loc:
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    return model


def load_spec(path: Path) -> AugmentSpec:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise AugmentError(f"spec file {path} not found") from None
    except yaml.YAMLError as exc:
        raise AugmentError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise AugmentError(f"{path}: the top level must be a mapping with `relations`")
    try:
        return AugmentSpec.model_validate(raw)
    except ValidationError as exc:
        raise AugmentError(validation_message(exc, str(path), _model_at)) from None


def template_fields(template: str) -> set[str]:
    """Placeholder names in a template; ValueError for unbalanced braces."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


# ---------------------------------------------------------------- sources


@dataclass
class Source:
    fields: dict[str, Any]
    origin: dict  # {"file", "row"} for a record; {"file", "passage", "heading", "sha"} for a passage


def read_records(path: Path) -> list[Source]:
    """Rows of a CSV (header row names the fields) or JSONL file; `row` is the 1-based data row."""
    path = Path(path)
    if not path.is_file():
        raise AugmentError(f"records file {path} not found")
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    elif path.suffix in (".jsonl", ".json"):
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise AugmentError(f"{path}:{number}: not valid JSON: {exc.msg}") from None
                if not isinstance(row, dict):
                    raise AugmentError(f"{path}:{number}: a record must be a JSON object")
                rows.append(row)
    else:
        raise AugmentError(f"{path}: records must be .csv or .jsonl")
    return [Source(row, {"file": path.name, "row": index}) for index, row in enumerate(rows, start=1)]


_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def read_passages(path: Path, max_chars: int = 1200) -> list[Source]:
    """Split a text or markdown file into passages, each a source with these fields:

    document (the first `# ` title, else the file name), heading (the section's heading path, else the
    document), text, opening (first sentence) and rest (the text after it).

    Useful relations over them: "What does {document} say about {heading}?" -> "{text}" teaches a passage
    under several topic phrasings; "Continue this passage from {document}: {opening}" -> "{rest}" teaches
    recall from a cue. "Summarise this passage" is deliberately absent: with no reference summary, the
    only available answer is the passage itself, which would teach recitation under a summary request.
    """
    path = Path(path)
    if not path.is_file():
        raise AugmentError(f"document {path} not found")
    sections = _sections(path.read_text(encoding="utf-8"))
    titles = [heads[0] for heads, _ in sections if heads and heads[0][0] == 1]
    document = titles[0][1] if titles else path.stem.replace("_", " ").replace("-", " ")
    sources = []
    for heads, paragraphs in sections:
        heading = " > ".join(text for _, text in heads) or document
        for text in _pack(paragraphs, max_chars):
            opening, _, rest = text.partition(_first_sentence_end(text))
            sources.append(Source(
                {"document": document, "heading": heading, "text": text, "opening": opening.strip(), "rest": rest.strip()},
                {"file": path.name, "passage": len(sources) + 1, "heading": heading,
                 "sha": hashlib.sha256(text.encode()).hexdigest()[:12]},
            ))
    return sources


def _first_sentence_end(text: str) -> str:
    match = _SENTENCE_END.search(text)
    return match.group(0) if match else "\0"  # no sentence break: everything is the opening


def _sections(text: str) -> list[tuple[list[tuple[int, str]], list[str]]]:
    """(heading path [(level, text)], paragraphs) per section; `#` lines inside code fences are not headings."""
    sections: list[tuple[list[tuple[int, str]], list[str]]] = [([], [])]
    heads: list[tuple[int, str]] = []
    paragraph: list[str] = []
    fenced = False
    for line in [*text.splitlines(), ""]:
        if line.lstrip().startswith("```"):
            fenced = not fenced
        match = None if fenced else _HEADING.match(line)
        if match or (not line.strip() and not fenced):
            if paragraph:
                sections[-1][1].append("\n".join(paragraph).strip())
                paragraph = []
            if match:
                level = len(match.group(1))
                heads = [head for head in heads if head[0] < level] + [(level, match.group(2))]
                sections.append((list(heads), []))
            continue
        paragraph.append(line)
    return [(heads, paragraphs) for heads, paragraphs in sections if paragraphs]


def _pack(paragraphs: list[str], max_chars: int) -> list[str]:
    """Join consecutive paragraphs up to max_chars; an oversized paragraph is cut at sentences, then words."""
    pieces = []
    for paragraph in paragraphs:
        pieces += [paragraph] if len(paragraph) <= max_chars else _cut(paragraph, max_chars)
    passages: list[str] = []
    for piece in pieces:
        if passages and len(passages[-1]) + 2 + len(piece) <= max_chars:
            passages[-1] += "\n\n" + piece
        else:
            passages.append(piece)
    return passages


def _cut(paragraph: str, max_chars: int) -> list[str]:
    words = []
    for sentence in _SENTENCE_END.split(paragraph):
        words += [sentence] if len(sentence) <= max_chars else sentence.split()
    chunks: list[str] = []
    for word in words:
        if chunks and len(chunks[-1]) + 1 + len(word) <= max_chars:
            chunks[-1] += " " + word
        else:
            chunks.append(word[:max_chars])
    return chunks


# ---------------------------------------------------------------- phrasings


@dataclass(frozen=True)
class Phrasing:
    text: str
    origin: Literal["spec", "model"] = "spec"
    paraphrase_of: str | None = None


Plan = dict[str, dict[str, list[Phrasing]]]  # relation -> split -> question phrasings


def plan_phrasings(spec: AugmentSpec, seed: int) -> Plan:
    """Each relation's templates per split; a `questions` list is split by fraction, seeded per relation."""
    plan: Plan = {}
    for name, relation in spec.relations.items():
        if relation.questions:
            shuffled = list(relation.questions)
            random.Random(f"{seed}:{name}").shuffle(shuffled)
            fractions = spec.splits.template_fractions
            n_valid, n_eval = round(fractions.valid * len(shuffled)), round(fractions.eval * len(shuffled))
            lists = {"valid": shuffled[:n_valid], "eval": shuffled[n_valid : n_valid + n_eval],
                     "train": shuffled[n_valid + n_eval :]}
        else:
            lists = {"train": relation.train, "valid": relation.valid, "eval": relation.eval}
        plan[name] = {split: [Phrasing(text) for text in lists[split]] for split in SPLITS}
    return plan


def pooled(plan: Plan) -> Plan:
    """Every phrasing of a relation in every split (by-source holdout: phrasings are not the held-out axis)."""
    return {name: {split: [p for s in SPLITS for p in splits[s]] for split in SPLITS} for name, splits in plan.items()}


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
        names = template_fields(relation.answer) | ({relation.eval_answer} if relation.eval_answer else set())
        for phrasings in plan.values():
            for phrasing in phrasings:
                names |= template_fields(phrasing.text)
        return all(self.raw(name, source) not in (None, "", []) for name in names)


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
    """Train chat rows, valid chat rows and eval QA items for every source x relation, deduplicated."""
    holdout = Holdout(holdout)
    rng = random.Random(seed)
    plan = plan if plan is not None else plan_phrasings(spec, seed)
    filler = Filler(spec)
    if holdout is Holdout.by_template:
        train_sources = valid_sources = eval_sources = sources
    else:
        train_sources, valid_sources, eval_sources = partition_sources(sources, holdout_fraction, rng)
        plan = pooled(plan)
    result = Augmented(
        train=train_examples(spec, plan, filler, train_sources, rng),
        valid=valid_examples(spec, plan, filler, valid_sources, rng),
        eval=eval_examples(spec, plan, filler, eval_sources, rng),
    )
    return deduplicate(result)


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


def normalise(text: str) -> str:
    """Casefolded words (braces kept, so placeholders stay distinct), punctuation and spacing dropped."""
    return " ".join(re.sub(r"[^\w\s{}]", " ", text.casefold()).split())


def deduplicate(result: Augmented) -> Augmented:
    """Drop rows whose normalised (question, answer) appeared before, in this split or an earlier one."""
    seen: set[tuple[str, str]] = set()
    kept = {}
    for split in SPLITS:
        kept[split] = []
        for example in result.split(split):
            key = (normalise(example.question), normalise(example.answer))
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
    model_phrasings: int = 0  # accepted model paraphrases of question templates
    rejected_paraphrases: dict[str, int] = field(default_factory=dict)  # reason -> count


def summarise(result: Augmented, sources: list[Source], out: Path) -> AugmentSummary:
    by_relation: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        for example in result.split(split):
            counts = by_relation.setdefault(example.relation, dict.fromkeys(SPLITS, 0))
            counts[split] += 1
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
    from tunesmith.data.paraphrase import add_paraphrases, model_generator

    spec = load_spec(spec_path)
    if not records and not documents:
        raise AugmentError("give at least one --records or --documents file")
    sources = [s for path in records for s in read_records(path)]
    sources += [s for path in documents for s in read_passages(path, spec.passages.max_chars)]
    if not sources:
        raise AugmentError("the input files hold no records or passages")
    plan = plan_phrasings(spec, seed)
    rejected: Counter = Counter()
    if paraphrases > 0:
        plan, rejections = add_paraphrases(plan, paraphrases, generate or model_generator(paraphrase_model))
        rejected = Counter(rejection.reason for rejection in rejections)
    result = augment(spec, sources, holdout, holdout_fraction, seed, plan)
    write_augmented(result, Path(out))
    summary = summarise(result, sources, Path(out))
    summary.model_phrasings = sum(p.origin == "model" for splits in plan.values() for ps in splits.values() for p in ps)
    summary.rejected_paraphrases = dict(rejected)
    return summary


def print_summary(summary: AugmentSummary, console) -> None:
    from rich.table import Table

    table = Table(title=f"augmented {summary.sources} sources -> {summary.out}")
    table.add_column("relation")
    for split in SPLITS:
        table.add_column(split, justify="right")
    for relation, counts in summary.by_relation.items():
        table.add_row(relation, *(str(counts[split]) for split in SPLITS))
    table.add_row("[bold]rows[/]", *(f"[bold]{summary.rows[split]}[/]" for split in SPLITS))
    table.add_row("sources", *(str(summary.sources_per_split[split]) for split in SPLITS))
    table.add_row("duplicates dropped", *(str(summary.duplicates.get(split, 0)) for split in SPLITS))
    console.print(table)
    if summary.model_phrasings or summary.rejected_paraphrases:
        rejected = ", ".join(f"{count} {reason}" for reason, count in summary.rejected_paraphrases.items()) or "none"
        console.print(f"model paraphrases kept: {summary.model_phrasings}; rejected: {rejected}")
    console.print("provenance of every row: sources.jsonl")
