from pathlib import Path

import pytest

from tunesmith.evaluate.classification import NO_LABEL, classification_metrics, read_label
from tunesmith.evaluate.gates import check_gates
from tunesmith.evaluate.suite import Gate, SuiteError, load_suite

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def write_suite(tmp_path, body: str) -> Path:
    (tmp_path / "qa.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    (tmp_path / "text.txt").write_text("Some text.\n")
    path = tmp_path / "suite.yaml"
    path.write_text(body)
    return path


VALID = """
name: demo
decoding: {max_new_tokens: 8}
tasks:
  - {kind: qa, name: facts, data: qa.jsonl}
  - {kind: loss, name: held_out, data: text.txt}
gates:
  - {metric: facts.accuracy, min_gain: 0.1, min: 0.5}
  - {metric: held_out.perplexity, max_forgetting: 0.1, relative: true}
"""


def test_suite_loads_with_paths_relative_to_the_suite_file(tmp_path, monkeypatch):
    monkeypatch.chdir("/")
    suite = load_suite(write_suite(tmp_path, VALID))
    assert suite.tasks[0].data == tmp_path / "qa.jsonl"
    assert suite.tasks[0].method == "contains_answer"
    assert suite.decoding.max_new_tokens == 8 and suite.decoding.batch_size == 32


@pytest.mark.parametrize("change, message", [
    (("data: qa.jsonl}", "data: qa.jsonl, methd: exact}"), "unknown key 'tasks.0.qa.methd' — did you mean 'method'?"),
    (("decoding: {max_new_tokens: 8}", "decoding: {max_new_token: 8}"), "did you mean 'max_new_tokens'?"),
    (("min_gain: 0.1,", "min_gian: 0.1,"), "did you mean 'min_gain'?"),
    (("facts.accuracy", "facts.acuracy"), "a qa task has metrics accuracy"),
    (("held_out.perplexity", "missing.perplexity"), "no task named 'missing'"),
    (("kind: loss, name: held_out", "kind: loss, name: facts"), "two tasks are named 'facts'"),
    (("kind: qa,", "kind: quiz,"), "does not match any of the expected tags"),
    (("data: text.txt", "data: nowhere.txt"), "data file(s) not found"),
    (("{metric: facts.accuracy, min_gain: 0.1, min: 0.5}", "{metric: facts.accuracy}"), "needs at least one of"),
])
def test_suite_errors_say_what_is_wrong(tmp_path, change, message):
    old, new = change
    assert old in VALID
    with pytest.raises(SuiteError) as error:
        load_suite(write_suite(tmp_path, VALID.replace(old, new)))
    assert message in str(error.value)


@pytest.mark.parametrize("path", sorted((EXAMPLES / "suites").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_suites_are_valid(path):
    suite = load_suite(path)
    assert all(file.is_file() for file in suite.data_files())


def test_read_label_takes_the_earliest_declared_label_as_whole_words():
    labels = ["positive", "negative", "very positive"]
    assert read_label("The review is negative, not positive.", labels) == "negative"
    assert read_label("Very positive!", labels) == "very positive"
    assert read_label("Positively glowing", labels) == NO_LABEL


def test_classification_metrics_match_hand_computed_values():
    truths = ["a", "a", "a", "b", "b", "c"]
    predicted = ["a", "a", "b", "b", NO_LABEL, "a"]
    scores = classification_metrics(truths, predicted, ["a", "b", "c"])
    assert scores["accuracy"] == pytest.approx(3 / 6)
    assert scores["confusion"]["matrix"] == [[2, 1, 0, 0], [0, 1, 0, 1], [1, 0, 0, 0]]
    a, b, c = (scores["per_class"][label] for label in "abc")
    assert (a["precision"], a["recall"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert (b["precision"], b["recall"], b["support"]) == (pytest.approx(1 / 2), pytest.approx(1 / 2), 2)
    assert c == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)


KINDS = {"facts": "qa", "general": "general"}


def gates_for(*gates, candidate, baseline):
    return check_gates(list(gates), KINDS, candidate, baseline)


def test_min_gain_and_floor_on_a_higher_is_better_metric():
    base = {"facts": {"accuracy": 0.30}, "general": {"perplexity": 20.0}}
    better = {"facts": {"accuracy": 0.55}, "general": {"perplexity": 20.0}}
    gate = Gate(metric="facts.accuracy", min_gain=0.2, min=0.5)
    assert all(result.passed for result in gates_for(gate, candidate=better, baseline=base))
    worse = {"facts": {"accuracy": 0.45}, "general": {"perplexity": 20.0}}
    gain, floor = gates_for(gate, candidate=worse, baseline=base)
    assert not gain.passed and gain.measured == pytest.approx(0.15)
    assert not floor.passed and floor.measured == 0.45
    assert "facts.accuracy min_gain FAILED" in gain.describe() and "threshold 0.2" in gain.describe()


def test_relative_forgetting_on_a_lower_is_better_metric():
    gate = Gate(metric="general.perplexity", max_forgetting=0.10, relative=True)
    base = {"facts": {"accuracy": 0.3}, "general": {"perplexity": 20.0}}
    (ok,) = gates_for(gate, candidate={"facts": {"accuracy": 0.3}, "general": {"perplexity": 21.0}}, baseline=base)
    assert ok.passed and ok.measured == pytest.approx(0.05)
    (bad,) = gates_for(gate, candidate={"facts": {"accuracy": 0.3}, "general": {"perplexity": 30.0}}, baseline=base)
    assert not bad.passed and bad.measured == pytest.approx(0.5)
    assert "measured 50% <= threshold 10% required (baseline 20 -> candidate 30)" in bad.describe()
    (improved,) = gates_for(gate, candidate={"facts": {"accuracy": 0.3}, "general": {"perplexity": 10.0}}, baseline=base)
    assert improved.passed and improved.measured == pytest.approx(-0.5)


def test_a_nan_metric_fails_its_gate():
    gate = Gate(metric="general.perplexity", max=100)
    (result,) = gates_for(gate, candidate={"general": {"perplexity": float("nan")}}, baseline=None)
    assert not result.passed
