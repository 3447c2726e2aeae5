"""Build examples/general/jargon_replay.txt: public-domain English prose replayed during the demo's training.

Run as: .venv/bin/python examples/general/build_replay_text.py [--deb dict-jargon_4.4.7-3.1_all.deb]

Source: The Jargon File 4.4.7 (Eric S. Raymond et al., public domain), as packaged by Debian in
`dict-jargon`. Without --deb/--dict it runs `apt-get download dict-jargon` into a temporary directory.
The elements demo mixes these paragraphs into its training steps (`data.replay.general_text`) so that
LoRA on short chat answers does not unlearn ordinary English. It must not be the text the forgetting
check scores (devils_dictionary.txt): replaying the test text would hide forgetting instead of preventing it.

Kept: prose paragraphs of `--min-words` to `--max-words` words (one short document each, ~60-160 tokens,
so a replay slot costs about two training rows), cross-reference braces `{hack}` unwrapped, no URLs,
e-mail addresses, markup or numbered senses, none matching EXCLUDED (profanity, slurs, religion, violence),
in dictionary order. Deterministic: rerunning rewrites the file identically.
"""
from __future__ import annotations

import argparse
import gzip
import re
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXCLUDED = re.compile(r"fuck|shit|cunt|nigg|fag|rape|porn|sex|nazi|hitler|\bjew|\bgay|\bhomo|whore|bitch|"
                      r"\bkill|suicide|\bdrug|religio|\bgod\b|\bchrist", re.IGNORECASE)
NOT_PROSE = re.compile(r"https?:|www\.|@\w|\.(com|org|net|edu)\b|[<>|\\$#_=*]|/\w+/|^\d+\.")
BRACED = re.compile(r"\{\s*([^{}]*?)\s*\}")


def read_dict_text(deb: Path | None, dict_path: Path | None) -> str:
    """The dictd database text (UTF-8: the Jargon File's curly quotes and dashes)."""
    if dict_path is not None:
        return gzip.decompress(dict_path.read_bytes()).decode("utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        if deb is None:
            subprocess.run(["apt-get", "download", "dict-jargon"], cwd=tmp, check=True)
            deb = next(Path(tmp).glob("dict-jargon_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp + "/x"], check=True)
        dz = Path(tmp, "x/usr/share/dictd/jargon.dict.dz")
        return gzip.decompress(dz.read_bytes()).decode("utf-8")


def prose_paragraphs(text: str) -> list[str]:
    """Indented body paragraphs of every entry, each joined into one line; headwords and the preamble dropped."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = block.splitlines()
        if not lines or not all(line.startswith("    ") for line in lines):
            continue  # headword, part-of-speech and pronunciation lines are not indented
        joined = " ".join(line.strip() for line in lines)
        paragraphs.append(re.sub(r"\s+", " ", BRACED.sub(r"\1", joined)).strip())
    return paragraphs


def is_plain_prose(paragraph: str, min_words: int, max_words: int) -> bool:
    words = paragraph.split()
    return (min_words <= len(words) <= max_words and paragraph[-1] in ".!?" and paragraph[0].isupper()
            and not NOT_PROSE.search(paragraph) and not EXCLUDED.search(paragraph) and "[" not in paragraph)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deb", type=Path, help="a downloaded dict-jargon .deb (default: apt-get download)")
    parser.add_argument("--dict", type=Path, dest="dict_path", help="a jargon.dict.dz file")
    parser.add_argument("--min-words", type=int, default=40)
    parser.add_argument("--max-words", type=int, default=110)
    parser.add_argument("--out", type=Path, default=HERE / "jargon_replay.txt")
    args = parser.parse_args()

    paragraphs = prose_paragraphs(read_dict_text(args.deb, args.dict_path))
    kept = [p for p in paragraphs if is_plain_prose(p, args.min_words, args.max_words)]
    args.out.write_text("\n\n".join(kept) + "\n", encoding="utf-8")
    print(f"{len(paragraphs)} paragraphs, kept {len(kept)} plain prose "
          f"({sum(len(p.split()) for p in kept)} words) in {args.out}")


if __name__ == "__main__":
    main()
