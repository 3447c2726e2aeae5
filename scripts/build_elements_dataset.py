"""Build the chemical-elements demo dataset from Debian's public-domain `dict-elements` package.

Run as: .venv/bin/python scripts/build_elements_dataset.py [--deb PATH | --dict PATH] [--out examples/elements]

Without --deb/--dict it runs `apt-get download dict-elements` into a temporary directory. It parses the
dictd database (a gzip-compatible .dict.dz: a name line, then `Symbol:`, `Atomic number:`,
`Atomic weight:` and a description per entry) and writes, deterministically for a given --seed:

  elements.jsonl  one record per element
  train.jsonl     chat examples, each fact asked with several of the TRAIN phrasings
  valid.jsonl     chat examples asked with the VALID phrasings (disjoint from train and eval)
  eval.jsonl      QA items asked only with the EVAL phrasings (disjoint from train and valid)

Small models only carry a fact over to a new wording if they were trained on several wordings of it,
so every relation has many training templates, and eval uses structurally different ones.
"""
from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

# Placeholders: {name} lowercase or Capitalised at random, {Name} always Capitalised (sentence start),
# {symbol}, {number}, {ordinal} ("79th").
TEMPLATES = {
    "symbol": {
        "answer": "The chemical symbol for {name} is {symbol}.",
        "train": [
            "What is the chemical symbol for {name}?",
            "what's the symbol for {name}",
            "Give me the element symbol of {name}.",
            "{Name} symbol?",
            "Which symbol represents {name} on the periodic table?",
            "Please state the chemical symbol of the element {name}.",
            "Tell me {name}'s chemical symbol.",
            "symbol of {name}?",
            "How is {name} written as a chemical symbol?",
            "I need the periodic table symbol for {name}.",
            "Could you tell me what the symbol for {name} is?",
            "{Name}: what is its chemical symbol?",
        ],
        "valid": [
            "Name the one- or two-letter symbol used for {name}.",
            "In chemistry, {name} is denoted by which symbol?",
            "Hey, what symbol do chemists use for {name}?",
        ],
        "eval": [
            "When writing a chemical formula that contains {name}, which symbol would you use?",
            "On the periodic table, {Name} is abbreviated as what?",
            "Quick chemistry question: which letters stand for {name} in formulas?",
            "Identify the abbreviation chemists use for the element {name}.",
        ],
    },
    "element_of_symbol": {
        "answer": "{symbol} is the chemical symbol for {name}.",
        "train": [
            "Which element has the chemical symbol {symbol}?",
            "What element is {symbol}?",
            "{symbol} is the symbol for which element?",
            "what element does {symbol} stand for",
            "Name the element whose symbol is {symbol}.",
            "Tell me which element is represented by {symbol}.",
            "element with symbol {symbol}?",
            "Please identify the chemical element with the symbol {symbol}.",
            "On the periodic table, which element is written as {symbol}?",
            "What does the chemical symbol {symbol} represent?",
            "Could you tell me the name of the element {symbol}?",
            "{symbol}: which element is that?",
        ],
        "valid": [
            "I saw {symbol} in a chemical formula. Which element is it?",
            "Which chemical element goes by the symbol {symbol}?",
            "Spell out the element name for the symbol {symbol}.",
        ],
        "eval": [
            "A chemist writes the symbol {symbol}. Which element is meant?",
            "Decode this element symbol for me: {symbol}",
            "If a box on the periodic table shows {symbol}, what element is in that box?",
            "Expand the chemical abbreviation {symbol} into the full element name.",
        ],
    },
    "atomic_number": {
        "answer": "The atomic number of {name} is {number}.",
        "train": [
            "What is the atomic number of {name}?",
            "what's {name}'s atomic number",
            "Give me the atomic number of {name}.",
            "{Name} atomic number?",
            "How many protons does an atom of {name} have?",
            "Please state the atomic number of the element {name}.",
            "Tell me the atomic number for {name}.",
            "atomic number of {name}?",
            "Which atomic number does {name} have?",
            "I need to know the atomic number of {name}.",
            "Could you tell me what atomic number {name} has?",
            "{Name}: what is its atomic number?",
        ],
        "valid": [
            "Where does {name} sit on the periodic table by atomic number?",
            "What number is {name} on the periodic table?",
            "Hey, what's the proton count of {name}?",
        ],
        "eval": [
            "In the periodic table, {name} is element number what?",
            "Counting hydrogen as 1, what position does {name} hold in the periodic table?",
            "Which number identifies {name} in the periodic table?",
            "Report the atomic number that belongs to {name}.",
        ],
    },
    "element_of_number": {
        "answer": "The element with atomic number {number} is {name}.",
        "train": [
            "Which element has atomic number {number}?",
            "What element is number {number} on the periodic table?",
            "element with atomic number {number}?",
            "Name the element whose atomic number is {number}.",
            "Tell me which element has {number} protons.",
            "what's element {number}",
            "Please identify the chemical element with atomic number {number}.",
            "Atomic number {number} belongs to which element?",
            "Which chemical element is element number {number}?",
            "Could you tell me the element with the atomic number {number}?",
            "{number}: which element has this atomic number?",
            "Give me the name of element {number}.",
        ],
        "valid": [
            "An atom has {number} protons in its nucleus. Which element is it?",
            "Look up atomic number {number} and tell me the element.",
            "Hey, which element sits at position {number} in the periodic table?",
        ],
        "eval": [
            "The {ordinal} element of the periodic table is called what?",
            "Which element would you find in box {number} of the periodic table?",
            "Identify the element with Z = {number}.",
            "Counting hydrogen as element 1, which element is number {number}?",
        ],
    },
}

# The eval answer per relation, and whether matching must respect case (symbols: "Co" is not "CO").
EVAL_ANSWER = {"symbol": "symbol", "element_of_symbol": "name", "atomic_number": "number", "element_of_number": "name"}

# Capitalised symbols that are also common English words: "I", "As", "In"... appear in wrong answers too,
# so "symbol" eval items for them could not be scored; they stay in training and in the other relations.
AMBIGUOUS_SYMBOLS = {"I", "As", "In", "At", "He", "Be", "No", "Am"}

# Spelling variants accepted as correct answers (the source spells sulphur, aluminum, caesium).
ALIASES = {"sulphur": ["sulfur"], "aluminum": ["aluminium"], "caesium": ["cesium"]}

# 2000-era provisional IUPAC names (unnilquadium, ununbium...) have been replaced; teaching them would be wrong.
SYSTEMATIC_NAME = re.compile(r"^un(nil|un|bi|tri)[a-z]*um$")


@dataclass
class Element:
    name: str
    symbol: str
    atomic_number: int
    atomic_weight: str  # as printed in the source, e.g. "196.967" or "(262)"


def parse_dict(text: str) -> list[Element]:
    """Parse a dictd elements database: each entry is a name line, then `Key: value` lines, then prose."""
    elements: dict[int, Element] = {}
    for block in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in block.strip().splitlines()]
        if len(lines) < 3 or not lines[1].startswith("Symbol:"):
            continue
        fields = {}
        for line in lines[1:]:
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip().lower().replace("atmic", "atomic")] = value.strip()
        name, symbol = lines[0].lower(), fields.get("symbol", "")
        number = fields.get("atomic number", "")
        if not symbol or not number.isdigit() or SYSTEMATIC_NAME.match(name):
            continue  # aliases without a number, unnamed entries, superseded provisional names
        element = Element(name, symbol, int(number), fields.get("atomic weight", ""))
        elements.setdefault(element.atomic_number, element)
    return [elements[number] for number in sorted(elements)]


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def fill(template: str, element: Element, rng: random.Random) -> str:
    name = element.name if rng.random() < 0.5 else element.name.capitalize()
    text = template.format(
        name=name,
        Name=element.name.capitalize(),
        symbol=element.symbol,
        number=element.atomic_number,
        ordinal=ordinal(element.atomic_number),
    )
    return text[0].upper() + text[1:] if template.startswith("{name}") else text


def answer_sentence(relation: str, element: Element) -> str:
    return TEMPLATES[relation]["answer"].format(
        name=element.name, symbol=element.symbol, number=element.atomic_number
    )


def chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def build_train(elements: list[Element], per_fact: int, rng: random.Random) -> list[dict]:
    """Each (element, relation) fact asked with `per_fact` distinct training templates."""
    rows = []
    for element in elements:
        for relation, spec in TEMPLATES.items():
            for template in rng.sample(spec["train"], min(per_fact, len(spec["train"]))):
                rows.append(chat(fill(template, element, rng), answer_sentence(relation, element)))
    rng.shuffle(rows)
    return rows


def build_valid(elements: list[Element], size: int, rng: random.Random) -> list[dict]:
    facts = [(element, relation) for element in elements for relation in TEMPLATES]
    rows = []
    for element, relation in rng.sample(facts, min(size, len(facts))):
        template = rng.choice(TEMPLATES[relation]["valid"])
        rows.append(chat(fill(template, element, rng), answer_sentence(relation, element)))
    return rows


def build_eval(elements: list[Element], rng: random.Random) -> list[dict]:
    """One QA item per element x relation; the eval templates are used in turn, starting at a random one.

    A template that would contain the answer ("Counting hydrogen as 1..." for hydrogen) is skipped.
    """
    items = []
    for relation, spec in TEMPLATES.items():
        offset = rng.randrange(len(spec["eval"]))
        for index, element in enumerate(elements):
            if relation == "symbol" and element.symbol in AMBIGUOUS_SYMBOLS:
                continue
            answer = {"symbol": element.symbol, "name": element.name, "number": str(element.atomic_number)}[
                EVAL_ANSWER[relation]
            ]
            question = ""
            for turn in range(len(spec["eval"])):  # skip a template whose question gives the answer away
                question = fill(spec["eval"][(index + offset + turn) % len(spec["eval"])], element, rng)
                if not re.search(rf"\b{re.escape(answer)}\b", question, re.IGNORECASE):
                    break
            item = {
                "id": f"{relation}-{element.atomic_number}",
                "question": question,
                "answer": answer,
                "relation": relation,
                "element": element.name,
            }
            if EVAL_ANSWER[relation] == "name" and element.name in ALIASES:
                item["aliases"] = ALIASES[element.name]
            if relation == "symbol":
                item["match"] = {"case_sensitive": True}
            items.append(item)
    return items


def check_templates_disjoint() -> None:
    for relation, spec in TEMPLATES.items():
        train, valid, held = set(spec["train"]), set(spec["valid"]), set(spec["eval"])
        if train & valid or train & held or valid & held:
            raise ValueError(f"{relation}: a template is shared between train, valid and eval")


def read_dict_text(deb: Path | None, dict_path: Path | None) -> tuple[str, str]:
    """Return (dictd text, source description); downloads the package when no path is given.

    The database is Latin-1 encoded (e.g. "Wöhler" in the descriptions).
    """
    if dict_path is not None:
        return gzip.decompress(dict_path.read_bytes()).decode("latin-1"), f"dictd file {dict_path.name}"
    with tempfile.TemporaryDirectory() as tmp:
        if deb is None:
            subprocess.run(["apt-get", "download", "dict-elements"], cwd=tmp, check=True)
            deb = next(Path(tmp).glob("dict-elements_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp + "/x"], check=True)
        dz = Path(tmp, "x/usr/share/dictd/elements.dict.dz")
        return gzip.decompress(dz.read_bytes()).decode("latin-1"), f"Debian package {deb.name}"


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deb", type=Path, help="a downloaded dict-elements .deb (default: apt-get download)")
    parser.add_argument("--dict", type=Path, dest="dict_path", help="an elements.dict.dz file")
    parser.add_argument("--out", type=Path, default=Path("examples/elements"))
    parser.add_argument("--per-fact", type=int, default=7, help="training phrasings per element x relation")
    parser.add_argument("--valid-size", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    check_templates_disjoint()
    text, source = read_dict_text(args.deb, args.dict_path)
    elements = parse_dict(text)
    rng = random.Random(args.seed)
    train = build_train(elements, args.per_fact, rng)
    valid = build_valid(elements, args.valid_size, rng)
    items = build_eval(elements, rng)

    args.out.mkdir(parents=True, exist_ok=True)
    write_jsonl(args.out / "elements.jsonl", [asdict(e) | {"aliases": ALIASES.get(e.name, [])} for e in elements])
    write_jsonl(args.out / "train.jsonl", train)
    write_jsonl(args.out / "valid.jsonl", valid)
    write_jsonl(args.out / "eval.jsonl", items)
    print(f"source: {source}")
    print(f"elements: {len(elements)} (atomic numbers {elements[0].atomic_number}-{elements[-1].atomic_number})")
    print(f"train: {len(train)}  valid: {len(valid)}  eval: {len(items)}  -> {args.out}")


if __name__ == "__main__":
    main()
