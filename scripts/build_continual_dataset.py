"""Build examples/continual: three updates of element facts in sequence, the third correcting the second.

Run as: .venv/bin/python scripts/build_continual_dataset.py [--deb-dir DIR] [--out examples/continual]

Without --deb-dir it runs `apt-get download dict-elements python3-periodictable` into a temporary directory.

  u1  elements 1-36 (periods 1-4): name -> symbol and symbol -> name, from dict-elements (public domain)
  u2  a second batch, elements 37-56, plus the three transactinides the 2000 database names with a
      symbol — unnilquadium (Unq, 104), unnilpentium (Unp, 105), unniloctium (Uno, 108): provisional
      IUPAC names of the time, as that database records them
  u3  corrections: the names IUPAC approved in 1997 for elements 104-108 (rutherfordium Rf, dubnium Db,
      seaborgium Sg, bohrium Bh, hassium Hs), from the periodictable package's element table (public
      domain), asked as name -> symbol, symbol -> name and number -> name

Questions are phrased with the templates of examples/elements/augment.yaml (tunesmith's augment library,
by-template holdout: eval phrasings are never trained on). Output is deterministic for a --seed.

The committed files were drawn when augment used one random stream for train, valid and eval in turn;
since commit 2470122 it draws each split from its own stream (no option restores the single one), so a
rebuild has the same facts and row counts but other phrasings, cases and row order.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from tunesmith.data.augment import Holdout, augment, load_spec, write_augmented, write_jsonl
from tunesmith.data.sources import read_records

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_elements_dataset as elements  # noqa: E402  (its dictd parser and spelling aliases)

SPEC = Path(__file__).resolve().parents[1] / "examples/elements/augment.yaml"
PROVISIONAL = {104, 105, 108}  # the 2000 database gives these a provisional name AND a symbol
RENAMED = range(104, 109)
# periodictable/core.py lists elements as `104: ['Rutherfordium', 'Rf', ...]`
TABLE_ROW = re.compile(r"^\s*(\d+): \['([A-Za-z]+)',\s*'([A-Za-z]+)'", re.MULTILINE)
UPDATES = {  # update → (relations asked, training phrasings per fact)
    "u1": (["symbol", "element_of_symbol"], 3),
    "u2": (["symbol", "element_of_symbol"], 3),
    "u3": (["symbol", "element_of_symbol", "element_of_number"], 6),
}


def download(directory: Path) -> tuple[Path, Path]:
    subprocess.run(["apt-get", "download", "dict-elements", "python3-periodictable"], cwd=directory, check=True)
    return next(directory.glob("dict-elements_*.deb")), next(directory.glob("python3-periodictable_*.deb"))


def dict_elements(deb: Path) -> list[elements.Element]:
    """Every element of the 2000 database that has a number and a symbol, provisional names included."""
    text, _ = elements.read_dict_text(deb, None)
    elements.SYSTEMATIC_NAME = re.compile(r"(?!)")  # keep unnilquadium & co: u2 teaches what the source said
    return elements.parse_dict(text)


def approved_names(deb: Path) -> dict[int, tuple[str, str]]:
    """atomic number → (name, symbol) from periodictable's element table."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        core = next(Path(tmp).rglob("periodictable/core.py")).read_text()
    return {int(n): (name.lower(), symbol) for n, name, symbol in TABLE_ROW.findall(core)}


def records_of(update: str, table: list[elements.Element], approved: dict[int, tuple[str, str]]) -> list[dict]:
    by_number = {e.atomic_number: e for e in table}
    if update == "u1":
        chosen = [by_number[n] for n in range(1, 37)]
    elif update == "u2":
        chosen = [by_number[n] for n in [*range(37, 57), *sorted(PROVISIONAL)]]
    else:
        chosen = [elements.Element(*approved[n], n, by_number[n].atomic_weight if n in by_number else "")
                  for n in RENAMED]
    return elements.element_records(chosen)


def build(update: str, records: list[dict], out: Path, seed: int) -> dict[str, int]:
    relations, per_fact = UPDATES[update]
    spec = load_spec(SPEC)
    spec.relations = {name: spec.relations[name] for name in relations}
    spec.splits.train_per_source, spec.splits.valid_size = per_fact, None  # valid: one row per fact
    # Only the relations listed in UPDATES: u3's element_of_number would otherwise get an automatic
    # element_of_number_reverse (its reverse, atomic_number, is not asked here; data/reverse.py).
    spec.reverse = False
    directory = out / update
    directory.mkdir(parents=True, exist_ok=True)
    write_jsonl(directory / "records.jsonl", records)
    result = augment(spec, read_records(directory / "records.jsonl"), Holdout.by_template, seed=seed)
    write_augmented(result, directory, provenance=False)
    if update == "u2":  # the provisional names get their own eval task: u3 retires it on purpose
        provisional = {r["name"] for r in records if r["atomic_number"] in PROVISIONAL}
        items = [json.loads(line) for line in (directory / "eval.jsonl").read_text().splitlines()]
        write_jsonl(directory / "eval.jsonl", [i for i in items if i["element"] not in provisional])
        write_jsonl(directory / "eval_provisional.jsonl", [i for i in items if i["element"] in provisional])
    return {"train": len(result.train), "valid": len(result.valid), "eval": len(result.eval)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deb-dir", type=Path, help="holds dict-elements_*.deb and python3-periodictable_*.deb")
    parser.add_argument("--out", type=Path, default=Path("examples/continual"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.deb_dir is not None:
            debs = (next(args.deb_dir.glob("dict-elements_*.deb")), next(args.deb_dir.glob("python3-periodictable_*.deb")))
        else:
            debs = download(Path(tmp))
        table, approved = dict_elements(debs[0]), approved_names(debs[1])
        for update in UPDATES:
            counts = build(update, records_of(update, table, approved), args.out, args.seed)
            print(f"{update}: {counts}  (from {debs[0].name if update != 'u3' else debs[1].name})")


if __name__ == "__main__":
    main()
