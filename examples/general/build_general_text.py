"""Build examples/general/devils_dictionary.txt: public-domain English prose for the forgetting check.

Run as: .venv/bin/python examples/general/build_general_text.py [--deb dict-devil_1.0-13.1_all.deb]

Source: Ambrose Bierce, "The Devil's Dictionary" (1911, public domain), as packaged by Debian in
`dict-devil`. Without --deb/--dict it runs `apt-get download dict-devil` into a temporary directory.
Every `--every`-th dictionary entry is kept (a spread over the alphabet, not one letter), minus entries
that mention a word in EXCLUDED (1911 satire aimed at ethnic or religious groups does not belong in a test corpus).
Each entry becomes one document (blank lines inside it removed); documents are separated by a blank line.
Deterministic: rerunning rewrites the file identically.
"""
from __future__ import annotations

import argparse
import gzip
import re
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENTRY_START = re.compile(r"^[A-Z][A-Z'\- ]+[,.]")  # "ABATIS, n.  Rubbish in front of a fort, ..."
EXCLUDED = re.compile(r"aborigin|negro|indian|chinaman|\bjew|heathen|savage|\brace\b|allah|mahomet", re.IGNORECASE)


def read_dict_text(deb: Path | None, dict_path: Path | None) -> str:
    if dict_path is not None:
        return gzip.decompress(dict_path.read_bytes()).decode("latin-1")
    with tempfile.TemporaryDirectory() as tmp:
        if deb is None:
            subprocess.run(["apt-get", "download", "dict-devil"], cwd=tmp, check=True)
            deb = next(Path(tmp).glob("dict-devil_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp + "/x"], check=True)
        dz = Path(tmp, "x/usr/share/dictd/devil.dict.dz")
        return gzip.decompress(dz.read_bytes()).decode("latin-1")


def split_entries(text: str) -> list[str]:
    """Dictionary entries, from the first ("ABASEMENT") on; the dictd header and preface are dropped."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ABASEMENT,"))
    entries: list[list[str]] = []
    previous_blank = True
    for line in lines[start:]:
        if previous_blank and ENTRY_START.match(line):
            entries.append([])
        if entries and line.strip():
            entries[-1].append(line.rstrip())
        previous_blank = not line.strip()
    return ["\n".join(entry) for entry in entries]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deb", type=Path, help="a downloaded dict-devil .deb (default: apt-get download)")
    parser.add_argument("--dict", type=Path, dest="dict_path", help="a devil.dict.dz file")
    parser.add_argument("--every", type=int, default=16, help="keep every N-th entry")
    parser.add_argument("--out", type=Path, default=HERE / "devils_dictionary.txt")
    args = parser.parse_args()

    entries = split_entries(read_dict_text(args.deb, args.dict_path))
    kept = [entry for entry in entries[:: args.every] if not EXCLUDED.search(entry)]
    args.out.write_text("\n\n".join(kept) + "\n")
    print(f"{len(entries)} entries, kept {len(kept)} ({sum(map(len, kept))} characters) in {args.out}")


if __name__ == "__main__":
    main()
