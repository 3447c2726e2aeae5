"""An eval's testing criteria turn grader scores into pass and fail; its rows' messages come from templates or
from the item itself."""
import pytest

from tunesmith.evaluate.eval_data import EvalDataError, InputMessages, check_items, rows_from_content
from tunesmith.evaluate.testing_criteria import parse_criteria
from tunesmith.train.grader_specs import GraderError
from tunesmith.train.grader_templates import MissingField

SAMPLE = "{{ sample.output_text }}"


def verdicts(criterion: dict, texts: list[str], answer: str = "Paris") -> list[tuple[float, bool]]:
    (parsed,) = parse_criteria([criterion])
    samples = [{"output_text": text, "output_json": None} for text in texts]
    return [(v.score, v.passed) for v in parsed.judge_many(samples, [{"answer": answer}] * len(texts))]


def test_each_kind_passes_by_its_rule():
    exact = {"type": "string_check", "name": "exact", "operation": "ilike", "input": SAMPLE,
             "reference": "{{ item.answer }}"}
    assert verdicts(exact, ["It is paris.", "Lyon"]) == [(1.0, True), (0.0, False)]
    close = {"type": "text_similarity", "name": "close", "evaluation_metric": "fuzzy_match", "input": SAMPLE,
             "reference": "{{ item.answer }}", "pass_threshold": 0.8}
    (near, far) = verdicts(close, ["Pariss", "Berlin"])
    assert near[1] and near[0] >= 0.8 and not far[1] and far[0] < 0.8
    python = {"type": "python", "name": "length", "source": "def grade(sample, item):\n"
              "    return len(sample['output_text']) / 10\n"}
    assert verdicts(python, ["abcd", "abcde", "abcdefgh"]) == [(0.4, False), (0.5, True), (0.8, True)]  # default 0.5
    assert verdicts({**python, "pass_threshold": 0.9}, ["abcdefgh"]) == [(0.8, False)]


def test_a_grading_failure_is_an_error_not_a_fail():
    (criterion,) = parse_criteria([{"type": "string_check", "name": "meta", "operation": "eq", "input": SAMPLE,
                                    "reference": "{{ item.meta.city }}"}])
    (verdict,) = criterion.judge_many([{"output_text": "Oslo"}], [{"answer": "x"}])
    assert not verdict.passed and "item.meta" in verdict.error


@pytest.mark.parametrize("criteria, path", [
    ([], "testing_criteria"),
    ([{"type": "multi", "name": "m", "graders": {}, "calculate_output": "1"}], "testing_criteria[0].type"),
    ([{"type": "string_check", "name": "s", "operation": "eq", "input": SAMPLE, "reference": "x",
       "pass_threshold": 0.5}], "testing_criteria[0].pass_threshold"),
    ([{"type": "python", "name": "p", "source": "def grade(s, i):\n    return 1\n", "pass_threshold": "high"}],
     "testing_criteria[0].pass_threshold"),
    ([{"type": "score_model", "name": "judge", "model": "m", "input": []}], "testing_criteria[0].type"),
])
def test_bad_criteria_name_their_field(criteria, path):
    with pytest.raises(GraderError) as refused:
        parse_criteria(criteria)
    assert refused.value.path == path


def test_input_messages_from_a_template_or_the_item():
    template = InputMessages({"type": "template", "template": [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": {"type": "input_text", "text": "{{ item.q }}"}}]})
    assert template.messages({"q": "Why?"}) == [{"role": "system", "content": "Be brief."},
                                                {"role": "user", "content": "Why?"}]
    with pytest.raises(MissingField):
        template.messages({})
    chat = [{"role": "user", "content": "hello"}]
    assert InputMessages({"type": "item_reference", "item_reference": "item.turns"}).messages({"turns": chat}) == chat
    with pytest.raises(EvalDataError):
        InputMessages({"type": "template", "template": [{"role": "tool", "content": "x"}]})


def test_rows_are_checked_against_the_item_schema():
    rows = rows_from_content([{"item": {"n": 1}}, {"item": {"n": "one"}}, {"item": {}}])
    with pytest.raises(EvalDataError) as refused:
        check_items(rows, {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}, "rows")
    assert "rows[1].item.n: 'one' is not of type 'integer'" in str(refused.value)
    assert "rows[2].item: 'n' is a required property" in str(refused.value)
