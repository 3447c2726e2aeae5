"""The text_similarity grader's metrics: input vs reference → a score in 0..1, identical texts scoring 1.0.

OpenAI documents only which library each metric uses (fuzzy_match: rapidfuzz; bleu, gleu, meteor: nltk; rouge_*:
rouge-score); the choices inside them are ours:
- fuzzy_match: `rapidfuzz.fuzz.ratio / 100`, the normalized Indel similarity of the two whole strings
  (case-sensitive). Not `WRatio`: it takes the best of several partial matches, so a reference buried in a long
  answer scores 0.9 ("Paris" in "The answer is Paris") — a reward a policy learns to pad for.
- bleu: nltk `sentence_bleu` over word/punctuation tokens (case-sensitive), uniform weights over n-grams up to
  4 — or up to the shorter text's length, so a one-word exact answer scores 1.0 instead of ~0.18 — with Chen &
  Cherry's smoothing method 1 (an epsilon count for n-gram orders without a match), and the brevity penalty.
- gleu: nltk `sentence_gleu` (Google BLEU, n-grams 1..4): the smaller of n-gram precision and recall, which
  needs no smoothing on short texts.
- rouge_1 … rouge_5, rouge_l: Google's `rouge-score` F-measure with its own tokenizer (lowercased, letters and
  digits only — so text in other scripts scores 0.0) and no stemming. rouge_N of a text shorter than N words is 0.0.
Refused: cosine (needs an embeddings model) and meteor (needs nltk's WordNet corpus, which tunesmith does not download).
"""
from __future__ import annotations

import re
from typing import Callable

ROUGE_TYPES = {"rouge_1": "rouge1", "rouge_2": "rouge2", "rouge_3": "rouge3", "rouge_4": "rouge4",
               "rouge_5": "rouge5", "rouge_l": "rougeL"}
SUPPORTED_METRICS = ("fuzzy_match", "bleu", "gleu", *ROUGE_TYPES)
REFUSED_METRICS = {
    "cosine": "compares embeddings from an embeddings model, which tunesmith's graders do not load",
    "meteor": "needs nltk's WordNet corpus, which tunesmith does not download",
}
INSTALL_HINT = "pip install 'tunesmith[graders]'"

Similarity = Callable[[str, str], float]  # (input, reference) -> 0..1


def similarity_function(metric: str) -> Similarity:
    """The metric as a function; ImportError (whose message says what to install) where its library is missing."""
    try:
        if metric == "fuzzy_match":
            from rapidfuzz import fuzz
            return lambda text, reference: fuzz.ratio(text, reference) / 100.0
        if metric in ("bleu", "gleu"):
            from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
            from nltk.translate.gleu_score import sentence_gleu
            if metric == "gleu":
                return lambda text, reference: float(sentence_gleu([words(reference)], words(text)))
            smoothing = SmoothingFunction().method1
            return lambda text, reference: bleu(sentence_bleu, smoothing, text, reference)
        from rouge_score.rouge_scorer import RougeScorer
    except ImportError as exc:
        raise ImportError(f"the {metric} metric needs the {exc.name} package — {INSTALL_HINT}") from None
    rouge_type = ROUGE_TYPES[metric]
    scorer = RougeScorer([rouge_type], use_stemmer=False)
    return lambda text, reference: float(scorer.score(reference, text)[rouge_type].fmeasure)


def words(text: str) -> list[str]:
    """BLEU's tokens: runs of word characters, and each punctuation mark on its own (nltk's word_tokenize needs
    the punkt corpus, which is not installed)."""
    return re.findall(r"\w+|[^\w\s]", text)


def bleu(sentence_bleu, smoothing, text: str, reference: str) -> float:
    hypothesis, expected = words(text), words(reference)
    if not hypothesis or not expected:
        return 0.0
    orders = min(4, len(hypothesis), len(expected))
    return float(sentence_bleu([expected], hypothesis, weights=(1.0 / orders,) * orders, smoothing_function=smoothing))
