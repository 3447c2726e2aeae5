import pytest

from tunesmith.evaluate.matching import contains_answer, exact, match, normalize_answer, normalized, numeric, regex


def test_normalize_drops_case_punctuation_articles_and_keeps_decimals():
    assert normalize_answer("  The symbol is **Au**!  ") == "symbol is au"
    assert normalize_answer("An atomic weight of 26.98, or 1,000 g.") == "atomic weight of 26.98 or 1000 g"
    assert normalize_answer("The Au", case_sensitive=True) == "Au"


def test_exact_and_normalized():
    assert exact(" Au ", "Au")
    assert not exact("au", "Au")
    assert normalized("The gold.", "gold")
    assert not normalized("gold leaf", "gold")


@pytest.mark.parametrize(
    "prediction, answer, expected",
    [
        ("The chemical symbol for gold is Au.", "Au", True),
        ('Chemists write "Au".', "au", True),
        ("Australia is a country.", "Au", False),
        ("The atomic number of iron is 26.", "26", True),
        ("Element 126 does not exist.", "26", False),
        ("Its weight is 26.98.", "26", False),
        ("It is element 26, iron.", "26", True),
        ("Sulfur, also spelled sulphur.", "sulphur", True),
        ("The element is Iron-56.", "iron", True),
        ("ironic", "iron", False),
        ("anything", "", False),
        ("Carbon dioxide", "carbon dioxide", True),
        ("carbon and dioxide", "carbon dioxide", False),
    ],
)
def test_contains_answer_whole_tokens(prediction, answer, expected):
    assert contains_answer(prediction, answer) is expected


def test_contains_answer_case_sensitive_for_symbols():
    assert contains_answer("Cobalt is Co.", "Co", case_sensitive=True)
    assert not contains_answer("CO is carbon monoxide.", "Co", case_sensitive=True)
    assert contains_answer("CO is carbon monoxide.", "Co")


def test_regex():
    assert regex("The answer is AU.", r"\bau\b")
    assert not regex("Australia", r"\bau\b")


@pytest.mark.parametrize(
    "prediction, answer, opts, expected",
    [
        ("The atomic weight is 196.97 u.", "196.967", {"rel_tol": 1e-3}, True),
        ("The atomic weight is 196.97 u.", "196.967", {}, False),
        ("about 197", 196.967, {"abs_tol": 0.5}, True),
        ("It is -3 degrees", "-3", {}, True),
        ("Roughly 1,000 atoms", "1000", {}, True),
        ("no number here", "5", {}, False),
        ("26 and 79", "79", {}, False),  # only the first number counts
    ],
)
def test_numeric(prediction, answer, opts, expected):
    assert numeric(prediction, answer, **opts) is expected


def test_match_dispatches_and_rejects_unknown_methods():
    assert match("The symbol is Au.", "Au")
    assert match("Au", "Au", "exact")
    assert match("about 197", "196.967", "numeric", abs_tol=0.5)
    with pytest.raises(ValueError, match="unknown match method"):
        match("Au", "Au", "fuzzy")
