"""OpenAI's graders (train/graders.py): each type on real values, batching, templates, and parse errors by path."""
import time

import pytest

from tunesmith.train.graders import GraderError, check_templates, grade_many, parse_grader

OUTPUT, ANSWER = "{{ sample.output_text }}", "{{ item.answer }}"


def string_check(operation, name="check"):
    return {"type": "string_check", "name": name, "operation": operation, "input": OUTPUT, "reference": ANSWER}


def similarity(metric, name="close"):
    return {"type": "text_similarity", "name": name, "evaluation_metric": metric, "input": OUTPUT, "reference": ANSWER}


def python(source, name="code"):
    return {"type": "python", "name": name, "source": source}


def rewards(spec, samples, answer):
    return [grade.reward for grade in grade_many(parse_grader(spec), samples, [{"answer": answer}] * len(samples))]


def parse_error(spec) -> GraderError:
    with pytest.raises(GraderError) as raised:
        parse_grader(spec)
    return raised.value


def test_string_check_operations():
    samples = ["Paris", "paris", "The capital is PARIS.", "Lyon"]
    assert rewards(string_check("eq"), samples, "Paris") == [1.0, 0.0, 0.0, 0.0]
    assert rewards(string_check("ne"), samples, "Paris") == [0.0, 1.0, 1.0, 1.0]
    assert rewards(string_check("like"), samples, "Paris") == [1.0, 0.0, 0.0, 0.0]
    assert rewards(string_check("ilike"), samples, "Paris") == [1.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize("metric", ["fuzzy_match", "bleu", "gleu", "rouge_1", "rouge_2", "rouge_l"])
def test_similarity_identical_scores_one_and_closer_scores_higher(metric):
    reference = "the quick brown fox jumps over the lazy dog"
    samples = [reference, "the quick brown fox jumped over a lazy dog", "a slow red cat sat on the mat", ""]
    identical, close, far, empty = rewards(similarity(metric), samples, reference)
    assert identical == pytest.approx(1.0)
    assert 1.0 > close > far >= 0.0 and empty == 0.0


def test_similarity_on_short_answers_and_longer_n_grams():
    assert rewards(similarity("bleu"), ["Paris", "Lyon"], "Paris") == [pytest.approx(1.0), 0.0]  # smoothing
    five_words = "one two three four five six"
    assert rewards(similarity("rouge_5"), [five_words, "one two three four"], five_words) == \
        [pytest.approx(1.0), 0.0]  # rouge-score: four words hold no 5-gram
    # rouge-score lowercases and drops punctuation; fuzzy_match (rapidfuzz ratio) sees every character
    assert rewards(similarity("rouge_1"), ["PARIS!"], "paris") == [pytest.approx(1.0)]
    assert rewards(similarity("fuzzy_match"), ["Pariss"], "Paris") == [pytest.approx(1 - 1 / 11)]


@pytest.mark.parametrize("metric, reason", [("cosine", "embeddings model"), ("meteor", "WordNet")])
def test_metrics_that_need_a_model_or_a_corpus_are_refused(metric, reason):
    error = parse_error(similarity(metric))
    assert error.path == "grader.evaluation_metric" and reason in str(error) and "rouge_l" in str(error)


def test_multi_combines_named_graders_by_formula():
    spec = {"type": "multi", "name": "both", "graders": {"exact": string_check("eq"), "close": similarity("fuzzy_match")},
            "calculate_output": "0.5 + exact * 2 ** 2 / 8 - min(close, 0.25) + max(abs(-1), floor(1.7), ceil(0.2)) - 1"}
    [right, wrong] = grade_many(parse_grader(spec), ["Paris", "Lyon"], [{"answer": "Paris"}] * 2)
    assert right.sub_rewards == {"exact": 1.0, "close": 1.0} and right.reward == pytest.approx(0.75)
    assert wrong.sub_rewards == {"exact": 0.0, "close": 0.0} and wrong.reward == pytest.approx(0.5)
    assert parse_grader({**spec, "calculate_output": "sqrt(exp(log(4)))"}).grade("x", {"answer": "x"}).reward == 2.0


def test_multi_accepts_one_grader_object_keyed_by_its_name():
    spec = {"type": "multi", "name": "one", "graders": string_check("ilike", name="hit"), "calculate_output": "hit"}
    grader = parse_grader(spec)
    assert grader.spec() == spec and grader.grade("PARIS", {"answer": "paris"}).reward == 1.0


@pytest.mark.parametrize("formula, message", [
    ("exact + typo", "unknown name 'typo'"), ("exact.real", "attribute access"),
    ("__import__('os').system('true')", "unknown function"), ("eval('1')", "unknown function 'eval'"),
    ("round(exact)", "unknown function 'round'"), ("exact if close else 1", "is not allowed"),
    ("exact[0]", "is not allowed"), ("'a' * 3", "is not a number"), ("min(exact)", "2 or more"),
    ("exact +", "does not parse")])
def test_multi_formula_refuses_anything_but_arithmetic_at_parse(formula, message):
    spec = {"type": "multi", "name": "m", "graders": {"exact": string_check("eq"), "close": similarity("gleu")},
            "calculate_output": formula}
    error = parse_error(spec)
    assert error.path == "grader.calculate_output" and message in str(error)


def test_multi_formula_failure_for_one_sample_is_its_error():
    spec = {"type": "multi", "name": "m", "graders": {"exact": string_check("eq")}, "calculate_output": "1 / exact"}
    right, wrong = grade_many(parse_grader(spec), ["a", "b"], [{"answer": "a"}] * 2)
    assert right.reward == 1.0 and right.error is None
    assert wrong.reward == 0.0 and "division by zero" in wrong.error and wrong.error_type == "formula"


def test_python_grader_batch_runs_once_and_one_raising_sample_keeps_the_others():
    source = ("import os\n"
              "def grade(sample, item):\n"
              "    print('noise')  # a print must not corrupt the answer\n"
              "    if sample['output_json'] is not None:\n"
              "        return sample['output_json']['score'] + os.getpid() * 0\n"
              "    return len(sample['output_text']) / item['length']\n")
    grades = grade_many(parse_grader(python(source)), ["abc", "abcd", '{"score": 0.5}'],
                        [{"length": 3}, {"length": 0}, {}])
    assert [grade.reward for grade in grades] == [1.0, 0.0, 0.5]
    assert grades[0].error is None and grades[2].error is None
    assert grades[1].error.startswith("ZeroDivisionError") and "line 6" in grades[1].error
    assert grades[1].error_type == "python_runtime"
    pids = grade_many(parse_grader(python("import os\ndef grade(sample, item):\n    return os.getpid()")),
                      ["a"] * 4, [{}] * 4)
    assert len({grade.reward for grade in pids}) == 1  # one process graded the whole batch


def test_python_grader_that_returns_no_number_or_fails_to_load():
    text = parse_grader(python("def grade(sample, item):\n    return 'high'")).grade("x", {})
    assert text.reward == 0.0 and "not a number" in text.error
    broken = grade_many(parse_grader(python("import no_such_module\ndef grade(s, i):\n    return 1")), ["a", "b"], [{}, {}])
    assert all("failed to load" in grade.error and "no_such_module" in grade.error for grade in broken)


def test_python_grader_timeout_fails_the_batch_quickly():
    grader = parse_grader(python("import time\ndef grade(sample, item):\n    time.sleep(60)\n    return 1"))
    grader.timeout_s = 1.0
    started = time.monotonic()
    grades = grade_many(grader, ["a", "b"], [{}, {}])
    assert time.monotonic() - started < 10
    assert all(grade.reward == 0.0 and "1 s limit" in grade.error and grade.error_type == "python_timeout"
               for grade in grades)


@pytest.mark.parametrize("source, message", [
    ("def grade(sample, item)\n    return 1", "does not compile"), ("x = 1", "defines no top-level grade"),
    ("def grade(sample):\n    return 1", "grade takes 1 argument")])
def test_python_source_is_checked_without_running_it(source, message):
    error = parse_error(python(source))
    assert error.path == "grader.source" and message in str(error)
    image = parse_grader({**python("from math import floor as grade"), "image_tag": "2025-05-08"})
    assert image.spec()["image_tag"] == "2025-05-08"  # accepted, ignored


def test_templates_read_item_fields_and_sample_json():
    spec = {**string_check("eq"), "input": "{{ sample.output_json.city }}", "reference": "{{ item.meta.city }}"}
    grader = parse_grader(spec)
    assert grader.grade('{"city": "Oslo"}', {"meta": {"city": "Oslo"}}).reward == 1.0
    missing = grader.grade('{"city": "Oslo"}', {"meta": {}})
    assert missing.reward == 0.0 and missing.error_type == "template"
    assert missing.error.startswith("reference reads item.meta.city, which this item lacks")
    assert "output_json is null" in grader.grade("not json", {"meta": {"city": "Oslo"}}).error


def test_check_templates_names_the_missing_item_field():
    spec = {"type": "multi", "name": "m", "calculate_output": "a + b",
            "graders": {"a": {**string_check("eq"), "input": "{{ sample.output_json.x }}"},
                        "b": {**similarity("bleu"), "reference": "{{ item.refs[1] }}"}}}
    grader = parse_grader(spec)
    assert check_templates(grader, {"answer": "x", "refs": ["a", "b"]}) is None
    assert check_templates(grader, {"refs": ["a", "b"]}).startswith("graders.a.reference reads item.answer")
    assert check_templates(grader, {"answer": "x", "refs": ["a"]}).startswith("graders.b.reference reads item.refs[1]")
    assert check_templates(parse_grader(python("def grade(s, i):\n    return 1")), {}) is None


@pytest.mark.parametrize("spec, path, message", [
    ({**string_check("eq"), "operation": "contains"}, "grader.operation", '"contains" is not one of eq, ne, like, ilike'),
    ({**string_check("eq"), "refrence": "x"}, "grader.refrence", "did you mean 'reference'?"),
    ({k: v for k, v in string_check("eq").items() if k != "input"}, "grader.input", "missing"),
    ({**string_check("eq"), "input": "{{ sample.output_text"}, "grader.input", "does not parse"),
    ({"type": "score_model", "name": "s", "model": "m", "input": [{"role": "user", "content": "x"}], "range": [5, 1]},
     "grader.range", "low < high"),
    ({"type": "label_model", "name": "l", "model": "m", "input": [{"role": "user", "content": "x"}], "labels": ["a"],
      "passing_labels": ["b"]}, "grader.passing_labels", "'b' not among labels"),
    ({**string_check("eq"), "type": "stringcheck"}, "grader.type", "score_model, label_model"),
    ({**string_check("eq"), "type": "string"}, "grader.type", "did you mean 'string_check'?"),
    ({"type": "multi", "name": "m", "calculate_output": "a", "graders": {"a": {**similarity("rouge_9")}}},
     "grader.graders.a.evaluation_metric", '"rouge_9" is not one of'),
    ({"type": "multi", "name": "m", "calculate_output": "1", "graders": {"my grader": string_check("eq")}},
     "grader.graders.my grader", "cannot be used in calculate_output"),
    ({"type": "multi", "name": "m", "calculate_output": "1", "graders": {}}, "grader.graders", "empty"),
])
def test_parse_errors_name_the_field_path(spec, path, message):
    error = parse_error(spec)
    assert error.path == path and str(error).startswith(f"{path}: ") and message in str(error)


def test_spec_is_the_normalized_json():
    spec = {"type": "multi", "name": "m", "graders": {"a": string_check("eq")}, "calculate_output": "a"}
    assert parse_grader(spec).spec() == spec
    assert parse_grader(python("def grade(s, i):\n    return 1")).spec() == python("def grade(s, i):\n    return 1")


def test_a_missing_metric_library_says_what_to_install(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "rapidfuzz", None)  # as if rapidfuzz were not installed
    error = parse_error(similarity("fuzzy_match"))
    assert error.path == "grader.evaluation_metric" and "pip install 'tunesmith[graders]'" in str(error)
