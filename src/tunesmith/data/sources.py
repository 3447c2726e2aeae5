"""Sources of facts for `tunesmith data augment`: record rows (CSV, JSONL) and passages of documents.

Run as: library code; `tunesmith data augment SPEC.yaml --records FILE.csv --documents FILE.md ...` reads them.
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.data.augment_spec import AugmentError

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
            end = _SENTENCE_END.search(text)
            opening, rest = (text[: end.start()], text[end.end() :]) if end else (text, "")
            sources.append(Source(
                {"document": document, "heading": heading, "text": text, "opening": opening.strip(), "rest": rest.strip()},
                {"file": path.name, "passage": len(sources) + 1, "heading": heading,
                 "sha": hashlib.sha256(text.encode()).hexdigest()[:12]},
            ))
    return sources


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
