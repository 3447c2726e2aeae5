"""Build the brand-voice preference dataset: the Jargon File's hacker voice vs a neutral definition.

Run as: .venv/bin/python scripts/build_voice_dataset.py [--dictd DIR | --debs DIR] [--out examples/voice] [--seed 0] [--generate-generic]

The brand is a help desk that answers in the voice of the Jargon File (Debian `dict-jargon`, public domain):
playful, opinionated, with etymologies and usage examples. For each term it defines, the neutral answer to
the same question is the term's definition in FOLDOC (`dict-foldoc`, GFDL) or else WordNet (`dict-wn`, WordNet
licence): the sense that shares the most content words with the jargon answer. FOLDOC copied many entries
from the Jargon File; an entry that cites it or shares two 6-word runs with the jargon text is not neutral
and is skipped. Quotes and dashes are written in ASCII on both sides, so typography cannot tell them apart.

Without --dictd/--debs the dictionaries are read from /usr/share/dictd when installed, else fetched with
`apt-get download dict-jargon dict-foldoc dict-wn` into a temporary directory. Terms are split, never shared:

  train.jsonl         preference pairs (OpenAI format), each term asked in 3 of the 8 phrasings
  valid.jsonl         pairs for held-out terms (2 phrasings each): the reward-accuracy check
  eval_prompts.jsonl  {id, prompt, term, reference}: more held-out terms, to generate answers for the style judge
  style.jsonl         {id, text, label: brand | not_brand, term, source}: texts about terms used nowhere else --
                      jargon (brand) vs FOLDOC definitions and the base model's own generic answers (not_brand)
  terms.jsonl         each paired term, its split and where its neutral answer came from (attribution)
  generic_answers.jsonl  {term, prompt, answer, model, decoding}: the model-written not_brand texts, cached

The not_brand side needs the generic assistant voice as well as the dictionary one: a judge that saw only terse
FOLDOC definitions called 88% of the base model's chatty answers ("The term X refers to...") brand voice.
`--generate-generic` writes generic_answers.jsonl with the embedded base model (greedy, one pass, minutes on a
CPU); without it the build reads that committed file and loads no model. Output is deterministic for a given
--seed, dictionary versions and generic_answers.jsonl.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tunesmith.data.preference import PreferencePair, load_preferences
from tunesmith.models.generate import generate_answers
from tunesmith.models.load import load_model, load_tokenizer
from tunesmith.models.resolve import DEFAULT_BASE

PACKAGES = ("dict-jargon", "dict-foldoc", "dict-wn")
PHRASINGS = (
    'What does "{term}" mean?',
    'What is meant by "{term}"?',
    'Can you explain the term "{term}"?',
    'Define "{term}".',
    'I keep hearing "{term}". What does it mean?',
    'What\'s the meaning of "{term}"?',
    'Explain "{term}" to me.',
    'Tell me what "{term}" means.',
)
MAX_SENTENCES, MAX_CHARS = 3, 420  # a few sentences per answer
MIN_CHARS = 40  # shorter texts are cross-references ("Syn. {foo}.") or fragments
# Content words a neutral sense must share with the jargon answer to be the same sense, not a homonym. FOLDOC is a
# computing dictionary (its senses are rarely far off); WordNet covers all English ("tune" an instrument), so it
# must share more, unless WordNet itself marks the sense as computing. A passing sense of an earlier kind here wins.
MIN_SHARED_WORDS = {"foldoc": 1, "wordnet computing": 1, "wordnet": 2}
# Read and rejected: the best neutral sense still means something else than the jargon answer ("fork" the
# system call for a project fork, "stack" the data structure for a to-do pile, "tune" an instrument for a program).
DIFFERENT_SENSE = {
    "0", "background", "barn", "blue box", "chomp", "console", "defenestration", "delta", "droid", "drum", "engine", "epoch",
    "exec", "fm", "foreground", "fork", "gc", "hacker", "hole", "hotlink", "inflate", "iron", "life", "lossy",
    "nathan hale", "pipe", "quarter", "quine", "screen", "spoof", "stack", "theology", "thumb", "time bomb", "tron",
    "tune", "twiddle", "upstream", "weeble", "zen",
}
ABBREVIATIONS = {"esp", "prob", "e.g", "i.e", "etc", "cf", "syn", "vs", "obs", "approx", "u.s", "mr", "dr", "st", "no", "var", "n", "adj", "v", "vt", "vi"}
STOPWORDS = set(
    "a an the of to in and or is are was be by for on with as at it its this that from which who whom not no but if "
    "then so than such into out up about any all some one two can may also often used use using other more most very "
    "has have had been being when where what how their there they them these those you your his her our we term word".split()
)
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
GENERIC_MODEL = DEFAULT_BASE  # the model the voice example tunes: its own voice is the one the brand must replace
GENERIC_MAX_NEW_TOKENS = 96  # examples/suites/voice.yaml's decoding: the judge learns answers as the suite generates them
GENERIC_FILE = "generic_answers.jsonl"


@dataclass
class Term:
    term: str  # the headword as the Jargon File spells it
    brand: str  # the jargon answer, cleaned and trimmed
    neutral: str | None  # the neutral answer to the same question, when a matching sense exists
    source: str | None  # "foldoc" | "wordnet"


def read_dictd(directory: Path, name: str) -> dict[str, str]:
    """{lower-case headword: entry text} from a dictd database; the first entry of a headword wins."""
    data = gzip.decompress((directory / f"{name}.dict.dz").read_bytes())
    entries: dict[str, str] = {}
    for line in (directory / f"{name}.index").read_text(encoding="utf-8").splitlines():
        head, offset, length = line.split("\t")[:3]
        start = _b64(offset)
        entries.setdefault(head.lower(), data[start : start + _b64(length)].decode("utf-8"))
    return entries


def _b64(text: str) -> int:
    """dictd index offsets and lengths are numbers written in base-64 digits."""
    value = 0
    for char in text:
        value = value * 64 + B64.index(char)
    return value


def ascii_typography(text: str) -> str:
    for curly, plain in (("“", '"'), ("”", '"'), ("‘", "'"), ("’", "'"), ("—", "--"), ("–", "-"), ("·", "")):
        text = text.replace(curly, plain)
    return text


def flat(text: str) -> str:
    """One line: cross-reference braces dropped (`{foo}` -> foo, even when a line break split them), spaces collapsed."""
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\{\s*([^{}]*?)\s*\}", r"\1", text)
    text = re.sub(r"\s*<[^<>\s]+@[^<>\s]+>", "", text)  # e-mail addresses: personal data, not definition
    text = re.sub(r"\s+([,.;:])(?=\s|$)", r"\1", text)  # a space left before punctuation by a removed link
    return ascii_typography(text).strip()


def prose_paragraphs(entry: str, indent: int) -> list[str]:
    """The body's paragraphs (after the headword lines), flattened, up to the first deeper-indented code or table."""
    body = entry.split("\n\n", 1)[1] if "\n\n" in entry else ""
    paragraphs = []
    for paragraph in re.split(r"\n\s*\n", body):
        lines = [line for line in paragraph.splitlines() if line.strip()]
        if lines and all(len(line) - len(line.lstrip()) > indent for line in lines):
            break  # the text after a table or code usually talks about it
        if lines:
            paragraphs.append(flat(paragraph))
    return paragraphs


def sentences(text: str) -> list[str]:
    pieces = re.split(r'(?:(?<=[.!?])|(?<=[.!?]["\')]))\s+(?=["(]?[A-Z0-9])', text)
    merged: list[str] = []
    for piece in pieces:
        last_word = merged[-1].rsplit(" ", 1)[-1].lower().rstrip(".") if merged else ""
        if merged and (last_word in ABBREVIATIONS or len(last_word) == 1):
            merged[-1] += " " + piece
        else:
            merged.append(piece)
    return merged


def trimmed(text: str) -> str:
    """Whole sentences: at most MAX_SENTENCES and (past the first) MAX_CHARS characters, quotes balanced."""
    kept: list[str] = []
    for sentence in sentences(text):
        if kept and (len(kept) == MAX_SENTENCES or len(" ".join(kept + [sentence])) > MAX_CHARS):
            break
        kept.append(sentence)
    # A sentence cut off by a dropped table, or a quotation split across sentences, ends the answer earlier.
    while len(kept) > 1 and (not re.search(r"[.!?][\"')]*$", kept[-1]) or " ".join(kept).count('"') % 2):
        kept.pop()
    return " ".join(kept)


PART_OF_SPEECH = r"(?:(?:pl\.)?(?:n|adj|vt|vi|v|adv|interj|imp|excl|obs)\.,?\s*)+"  # and "obs." (obsolete)


def jargon_answer(entry: str) -> str | None:
    """The first sense (or the first few, numbered, when each is short) in the Jargon File's own words."""
    senses, etymology = [], None
    for paragraph in prose_paragraphs(entry, indent=4):
        numbered = re.match(r"^(\d+)\.\s+", paragraph)
        paragraph = paragraph[numbered.end():] if numbered else paragraph
        paragraph = re.sub(r"^" + PART_OF_SPEECH + r"|^\((alt\.|also|Also)[^)]*\)\s*", "", paragraph)
        # Usage labels ([Unix], [common]) are dropped, etymologies ([from ...]) kept for the end; the source
        # closes one bracket with a parenthesis.
        bracket = re.match(r"^\[([^\]]*)\]\s*", paragraph) or re.match(r"^\[([^\])]*)\)\s*", paragraph)
        if bracket:
            if "from" in bracket.group(1).lower() and etymology is None:
                etymology = bracket.group(1)
            paragraph = re.sub(r"^" + PART_OF_SPEECH, "", paragraph[bracket.end():])
        if paragraph:
            senses.append(paragraph)
        if (senses and not numbered) or sum(map(len, senses)) >= 160:
            break  # one unnumbered definition, or enough short numbered ones
    if not senses:
        return None
    senses = [trimmed(sense) for sense in senses]
    while len(senses) > 1 and len(" ".join(senses)) > MAX_CHARS:
        senses.pop()
    text = " ".join(f"{i}. {sense}" for i, sense in enumerate(senses, start=1)) if len(senses) > 1 else senses[0]
    if len(text) < MIN_CHARS or re.match(r"^(See|Syn\b|Var\.|Same as|=)", text):
        return None
    if etymology is not None:
        text += f" ({etymology[0].upper()}{etymology[1:]}.)"
    return text


def foldoc_senses(entry: str) -> list[str]:
    """Each sense of a FOLDOC entry: domain tags, pronunciations, alias notes, references and dates dropped."""
    paragraphs = [p for p in prose_paragraphs(entry, indent=3) if not re.fullmatch(r"\(\d{4}-\d{2}-\d{2}\)|\[.*\]|\(.*\)", p)]
    senses: list[str] = []
    for paragraph in paragraphs:
        numbered = re.match(r"^(\d+)\.\s*", paragraph)
        if numbered or not senses:
            senses.append(paragraph[numbered.end():] if numbered else paragraph)
        elif len(senses[-1]) < MAX_CHARS:
            senses[-1] += " " + paragraph
    cleaned = []
    for sense in senses:
        sense = re.sub(r"\s*\[[^\]]*\]", "", sense)
        while re.match(r"^(<[^>]*>|/[^/]*/|\([^)]*\)|[.,;:])\s*", sense):  # leading tags, pronunciations, asides
            sense = re.sub(r"^(<[^>]*>|/[^/]*/|\([^)]*\)|[.,;:])\s*", "", sense, count=1)
        sense = trimmed(sense)
        if len(sense) >= MIN_CHARS and re.match(r'^["A-Z0-9]', sense) and not sense.startswith(("See ", "Used in ")):
            cleaned.append(sense)
    return cleaned


def wordnet_senses(entry: str) -> list[tuple[str, bool]]:
    """(gloss as a sentence, marked as computing) per sense: `n 1: (computer science) a ...; "example"` -> `In computing, a ... .`

    Senses WordNet marks with another field ("(virology)", "(astronomy)") are left out.
    """
    body = re.sub(r"\s+", " ", entry.split("\n", 1)[1] if "\n" in entry else "")
    senses = []
    for match in re.finditer(r"(?:\b([nvar]) )?\b\d+: (.*?)(?= (?:[nvar] )?\d+: |$)", body):
        gloss = re.sub(r"\[(syn|ant|also)[^\]]*\]", "", match.group(2)).split(";")[0].strip()
        computing = re.match(r"^\((computer science|computing)\)\s*", gloss)
        if not computing and gloss.startswith("("):
            continue
        if computing:
            gloss = "In computing, " + gloss[computing.end():]
        elif match.group(1) == "v":
            gloss = "To " + gloss
        if len(gloss) >= MIN_CHARS:
            senses.append((gloss[0].upper() + gloss[1:].rstrip(".") + ".", computing is not None))
    return senses


def content_words(text: str) -> set[str]:
    words = re.findall(r"[a-z][a-z0-9]+", text.lower())
    return {word[:6] for word in words if word not in STOPWORDS and len(word) > 2}  # crude stem: the first 6 letters


def copied_from_jargon(neutral_entry: str, jargon_entry: str) -> bool:
    """FOLDOC imported many Jargon File entries; such text is the brand's voice, not a neutral one."""
    if "jargon file" in neutral_entry.lower():
        return True
    def runs(text: str) -> set[tuple[str, ...]]:
        words = re.findall(r"[a-z0-9]+", ascii_typography(text).lower())
        return set(zip(*(words[i:] for i in range(6))))
    return len(runs(neutral_entry) & runs(jargon_entry)) >= 2


def neutral_answer(term: str, brand: str, jargon_entry: str, foldoc: dict[str, str], wordnet: dict[str, str]) -> tuple[str, str] | None:
    """(text, source) of the neutral sense sharing the most content words with the brand answer, FOLDOC's first."""
    if term.lower() in DIFFERENT_SENSE:
        return None
    own = content_words(term)
    wanted = content_words(brand) - own
    candidates = []
    if term.lower() in foldoc and not copied_from_jargon(foldoc[term.lower()], jargon_entry):
        candidates += [(sense, "foldoc") for sense in foldoc_senses(foldoc[term.lower()])]
    if term.lower() in wordnet:
        candidates += [(sense, "wordnet computing" if computing else "wordnet") for sense, computing in wordnet_senses(wordnet[term.lower()])]
    priority = list(MIN_SHARED_WORDS)
    scored = [(-priority.index(kind), len((content_words(sense) - own) & wanted), -index, sense, kind) for index, (sense, kind) in enumerate(candidates)]
    passing = [score for score in scored if score[1] >= MIN_SHARED_WORDS[score[4]]]
    if not passing:
        return None
    *_, sense, kind = max(passing)
    return sense, kind.split()[0]


def build_terms(jargon: dict[str, str], foldoc: dict[str, str], wordnet: dict[str, str]) -> list[Term]:
    terms = []
    for key, entry in jargon.items():
        if key.startswith("00-"):  # the database's own header entries
            continue
        headword = ascii_typography(entry.split("\n", 1)[0].strip())
        brand = jargon_answer(entry)
        if brand is None or not re.fullmatch(r"[\w .,'/+\-!?#&*@]+", headword):
            continue
        neutral = neutral_answer(headword, brand, entry, foldoc, wordnet)
        terms.append(Term(headword, brand, *(neutral or (None, None))))
    return terms


def neutral_style_texts(jargon: dict[str, str], foldoc: dict[str, str]) -> list[tuple[str, str]]:
    """(headword, FOLDOC's first sense) of terms the Jargon File lacks: the same computing topics in a neutral voice.

    Entries FOLDOC took from the Jargon File (cited) or files as jargon or humour are left out, and so is any
    entry that a Jargon File term also reaches under another of its headwords (an alias: `param`, `parameter`).
    """
    reached = {foldoc[key] for key in jargon if key in foldoc}
    texts = []
    for key, entry in sorted(foldoc.items()):
        if entry in reached or "jargon file" in entry.lower() or re.search(r"<[^>]*\b(jargon|humour|abuse)\b", entry):
            continue
        headword = ascii_typography(entry.split("\n", 1)[0].strip())
        texts += [(headword, sense) for sense in foldoc_senses(entry)[:1]]
    return texts


def generic_questions(terms: list[Term], seed: int) -> list[dict]:
    """{term, prompt} per term, phrased as the eval prompts are; an own random stream, so the other files' draws stay put."""
    rng = random.Random(seed)
    return [{"term": term.term, "prompt": rng.choice(PHRASINGS).format(term=term.term)} for term in terms]


def generate_generic_answers(questions: list[dict], path: Path) -> None:
    """The base model's greedy answers to `questions`, written to `path` as they came (typography untouched)."""
    model, tokenizer = load_model(GENERIC_MODEL), load_tokenizer(GENERIC_MODEL)
    prompts = [[{"role": "user", "content": question["prompt"]}] for question in questions]
    answers = generate_answers(model, tokenizer, prompts, GENERIC_MAX_NEW_TOKENS, batch_size=16, progress=False)
    decoding = f"greedy, max_new_tokens {GENERIC_MAX_NEW_TOKENS}, template's default system prompt"
    write_jsonl(path, [{**question, "answer": answer, "model": GENERIC_MODEL, "decoding": decoding}
                       for question, answer in zip(questions, answers)])


def cached_generic_answers(questions: list[dict], path: Path) -> list[str]:
    """The answers cached in `path`, which must be for exactly `questions` (same terms, same phrasings, same order)."""
    if not path.exists():
        sys.exit(f"{path}: missing -- copy the committed examples/voice/{GENERIC_FILE} there, or rerun with --generate-generic")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    if [{"term": row["term"], "prompt": row["prompt"]} for row in rows] != questions:
        sys.exit(f"{path}: answers other questions than the {len(questions)} this build asks "
                 "(another --seed, size or dictionary version) -- rerun with --generate-generic to write them")
    empty = [row["term"] for row in rows if not row["answer"].strip()]
    if empty:
        sys.exit(f"{path}: empty answers for {empty} -- rerun with --generate-generic, or pick another --seed")
    return [row["answer"] for row in rows]


def pairs_for(terms: list[Term], per_term: int, rng: random.Random) -> list[dict]:
    """`per_term` phrasings of the question for each term, as OpenAI-format preference rows."""
    rows = []
    for term in terms:
        for phrasing in rng.sample(PHRASINGS, per_term):
            prompt = [{"role": "user", "content": phrasing.format(term=term.term)}]
            rows.append(PreferencePair(0, prompt, term.brand, term.neutral).openai_row())
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def dictd_directory(dictd: Path | None, debs: Path | None, tmp: str) -> tuple[Path, str]:
    """Where the dictionaries are and how they were obtained (for SOURCE.md)."""
    if dictd is not None:
        return dictd, f"dictd files in {dictd}"
    if debs is None and (Path("/usr/share/dictd") / "jargon.dict.dz").exists():
        return Path("/usr/share/dictd"), "installed packages (/usr/share/dictd)"
    if debs is None:
        debs = Path(tmp)
        subprocess.run(["apt-get", "download", *PACKAGES], cwd=tmp, check=True)
    described = []
    for package in PACKAGES:
        deb = next(debs.glob(f"{package}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), f"{tmp}/x"], check=True)
        described.append(f"{deb.name} sha256 {hashlib.sha256(deb.read_bytes()).hexdigest()}")
    return Path(tmp) / "x/usr/share/dictd", "; ".join(described)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dictd", type=Path, help="directory with jargon/foldoc/wn .dict.dz and .index files")
    parser.add_argument("--debs", type=Path, help="directory with the downloaded dict-jargon/dict-foldoc/dict-wn .deb files")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "examples/voice")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--valid-terms", type=int, default=30, help="paired terms held out for valid.jsonl")
    parser.add_argument("--train-phrasings", type=int, default=3, help="phrasings per term in train.jsonl")
    parser.add_argument("--valid-phrasings", type=int, default=2, help="phrasings per term in valid.jsonl")
    parser.add_argument("--eval-terms", type=int, default=60, help="unpaired terms held out for eval_prompts.jsonl")
    parser.add_argument("--style-size", type=int, default=270, help="texts per label in style.jsonl")
    parser.add_argument("--generic-answers", type=int, default=120, help="of the not_brand texts, how many the base model writes")
    parser.add_argument("--generate-generic", action="store_true",
                        help=f"generate {GENERIC_FILE} with {GENERIC_MODEL} (minutes) instead of reading the committed one")
    args = parser.parse_args()
    if not 0 <= args.generic_answers <= args.style_size:
        parser.error(f"--generic-answers {args.generic_answers}: must be between 0 and --style-size ({args.style_size})")

    with tempfile.TemporaryDirectory() as tmp:
        directory, obtained = dictd_directory(args.dictd, args.debs, tmp)
        jargon, foldoc, wordnet = (read_dictd(directory, name) for name in ("jargon", "foldoc", "wn"))
    terms = build_terms(jargon, foldoc, wordnet)
    rng = random.Random(args.seed)
    paired = [term for term in terms if term.neutral is not None]
    unpaired = [term for term in terms if term.neutral is None]
    aliases: dict[str, list[Term]] = {}  # terms sharing one neutral answer (`BSOD`, `Blue Screen of Death`) share a split
    for term in paired:
        aliases.setdefault(term.neutral, []).append(term)
    groups = list(aliases.values())
    rng.shuffle(groups)
    rng.shuffle(unpaired)
    valid, train = [], []
    for group in groups:
        (valid if len(valid) < args.valid_terms else train).extend(group)
    evaluated = unpaired[: args.eval_terms]
    style_end = args.eval_terms + args.style_size
    style_brand = unpaired[args.eval_terms : style_end]
    style_neutral = rng.sample(neutral_style_texts(jargon, foldoc), args.style_size - args.generic_answers)
    questions = generic_questions(unpaired[style_end : style_end + args.generic_answers], args.seed)

    args.out.mkdir(parents=True, exist_ok=True)
    if args.generate_generic:
        generate_generic_answers(questions, args.out / GENERIC_FILE)
    style_generic = cached_generic_answers(questions, args.out / GENERIC_FILE)
    write_jsonl(args.out / "train.jsonl", pairs_for(train, args.train_phrasings, rng))
    write_jsonl(args.out / "valid.jsonl", pairs_for(valid, args.valid_phrasings, rng))
    write_jsonl(args.out / "eval_prompts.jsonl", [
        {"id": f"voice-{i}", "prompt": rng.choice(PHRASINGS).format(term=term.term), "term": term.term, "reference": term.brand}
        for i, term in enumerate(evaluated, start=1)
    ])
    style = (
        [{"text": term.brand, "label": "brand", "term": term.term, "source": "jargon"} for term in style_brand]
        + [{"text": text, "label": "not_brand", "term": term, "source": "foldoc"} for term, text in style_neutral]
        + [{"text": ascii_typography(answer), "label": "not_brand", "term": question["term"],
            "source": f"generated by {GENERIC_MODEL}"} for question, answer in zip(questions, style_generic)]
    )
    rng.shuffle(style)
    write_jsonl(args.out / "style.jsonl", [{"id": f"style-{i}", **row} for i, row in enumerate(style, start=1)])
    write_jsonl(args.out / "terms.jsonl", [
        {"term": term.term, "split": split, "neutral_source": term.source}
        for split, group in (("train", train), ("valid", valid)) for term in sorted(group, key=lambda t: t.term.lower())
    ])
    for name in ("train.jsonl", "valid.jsonl"):
        errors = load_preferences(args.out / name).errors
        if errors:
            sys.exit("\n".join(map(str, errors)))
    sources = {source: sum(term.source == source for term in paired) for source in ("foldoc", "wordnet")}
    print(json.dumps({"obtained": obtained, "jargon_terms": len(terms), "paired_terms": len(paired), "neutral_sources": sources,
                      "train_terms": len(train), "valid_terms": len(valid), "eval_terms": len(evaluated),
                      "style": {"brand": len(style_brand), "not_brand": {"foldoc": len(style_neutral), "generated": len(style_generic)}}},
                     indent=1))


if __name__ == "__main__":
    main()
