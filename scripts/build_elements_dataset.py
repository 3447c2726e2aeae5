"""Build the chemical-elements demo dataset from Debian's public-domain `dict-elements` package.

Run as: .venv/bin/python scripts/build_elements_dataset.py [--deb PATH | --dict PATH | --records JSONL] [--out examples/elements]

Without --deb/--dict/--records it runs `apt-get download dict-elements` into a temporary directory. It
parses the dictd database (a gzip-compatible .dict.dz: a name line, then `Symbol:`, `Atomic number:`,
`Atomic weight:` and a description per entry) into one record per element, then expands the question
templates of examples/elements/augment.yaml with tunesmith's augment library (by-template holdout),
deterministically for a given --seed:

  elements.jsonl  one record per element (with --records, that file is read instead and left as is)
  train.jsonl     chat examples, each fact asked with several of the TRAIN phrasings
  valid.jsonl     chat examples asked with the VALID phrasings (disjoint from train and eval)
  eval.jsonl      QA items asked only with the EVAL phrasings (disjoint from train and valid)

The same files come from `tunesmith data augment examples/elements/augment.yaml --records
examples/elements/elements.jsonl --holdout by-template --out DIR` (which also writes sources.jsonl).
"""
from __future__ import annotations

import argparse
import gzip
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from tunesmith.data.augment import Holdout, augment, load_spec, read_records, write_augmented, write_jsonl

SPEC = Path(__file__).resolve().parents[1] / "examples/elements/augment.yaml"

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


def element_records(elements: list[Element]) -> list[dict]:
    return [asdict(e) | {"aliases": ALIASES.get(e.name, [])} for e in elements]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deb", type=Path, help="a downloaded dict-elements .deb (default: apt-get download)")
    parser.add_argument("--dict", type=Path, dest="dict_path", help="an elements.dict.dz file")
    parser.add_argument("--records", type=Path, help="an elements.jsonl written before: skip the dictd parsing")
    parser.add_argument("--spec", type=Path, default=SPEC, help="question templates (augment spec YAML)")
    parser.add_argument("--out", type=Path, default=Path("examples/elements"))
    parser.add_argument("--per-fact", type=int,
                        help="training phrasings per element x relation (default: the spec's train_per_source)")
    parser.add_argument("--valid-size", type=int, help="valid rows (default: the spec's 300)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    spec = load_spec(args.spec)
    spec.splits.train_per_source = args.per_fact or spec.splits.train_per_source
    spec.splits.valid_size = args.valid_size if args.valid_size is not None else spec.splits.valid_size
    args.out.mkdir(parents=True, exist_ok=True)
    if args.records is not None:
        source = f"records {args.records}"
        records_path = args.records
    else:
        text, source = read_dict_text(args.deb, args.dict_path)
        records_path = args.out / "elements.jsonl"
        write_jsonl(records_path, element_records(parse_dict(text)))
    sources = read_records(records_path)
    result = augment(spec, sources, Holdout.by_template, seed=args.seed)
    write_augmented(result, args.out, provenance=False)  # the demo's eval items name relation and element
    numbers = [s.fields["atomic_number"] for s in sources]
    print(f"source: {source}")
    print(f"elements: {len(sources)} (atomic numbers {numbers[0]}-{numbers[-1]})")
    print(f"train: {len(result.train)}  valid: {len(result.valid)}  eval: {len(result.eval)}  -> {args.out}")


if __name__ == "__main__":
    main()
