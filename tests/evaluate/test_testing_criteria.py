"""An eval's testing criteria turn grader scores into pass and fail; its rows' messages come from templates or
from the item itself."""
import json

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
    ([{"type": "score_model", "name": "judge", "model": "m", "input": []}], "testing_criteria[0].input"),
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


class FakeJudge:
    """Answers each conversation by a rule over its text; records what it was asked."""

    def __init__(self, rule):
        self.rule, self.asked = rule, []

    def ask_many(self, model, conversations, schema, sampling):
        from tunesmith.train.model_graders import JudgeAnswer

        self.asked.append((model, conversations, schema, sampling))
        return [JudgeAnswer(**self.rule(" ".join(m["content"] for m in c))) for c in conversations]


LABEL = {"type": "label_model", "name": "right", "model": "judge", "labels": ["right", "wrong"],
         "passing_labels": ["right"], "input": [{"role": "developer", "content": "Is it {{ item.answer }}?"},
                                                {"role": "user", "content": "{{ sample.output_text }}"}]}


def test_a_label_model_passes_on_a_passing_label_from_its_judge():
    judge = FakeJudge(lambda text: {"text": json.dumps({"label": "right" if "Paris" in text.split("?")[1] else "wrong"}),
                                    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}})
    (criterion,) = parse_criteria([LABEL], judge=judge)
    samples = [{"output_text": text} for text in ("Paris.", "Lyon.")]
    verdicts = criterion.judge_many(samples, [{"answer": "Paris"}] * 2)
    assert [(v.score, v.passed) for v in verdicts] == [(1.0, True), (0.0, False)]
    (model, conversations, schema, sampling), = judge.asked
    assert model == "judge" and conversations[0] == [{"role": "system", "content": "Is it Paris?"},
                                                     {"role": "user", "content": "Paris."}]
    assert schema["properties"]["label"]["enum"] == ["right", "wrong"] and sampling["temperature"] == 0.0
    assert verdicts[1].judge["label"] == "wrong" and verdicts[1].judge["usage"]["total_tokens"] == 8


def test_a_score_model_passes_at_its_threshold_and_its_failures_are_errors():
    spec = {"type": "score_model", "name": "score", "model": "judge", "range": [1, 5],
            "sampling_params": {"max_completions_tokens": 20, "seed": 3},
            "input": [{"role": "user", "content": "{{ sample.output_text }}"}]}
    answers = {"a": {"text": '{"result": 4}'}, "b": {"text": '{"result": 2.5}'}, "c": {"text": '{"result": 9}'},
               "d": {"text": '{"resu'}, "e": {"error": "no such model"}}
    judge = FakeJudge(lambda text: answers[text])
    (criterion,) = parse_criteria([spec], judge=judge)
    assert criterion.pass_threshold == 3.0  # the middle of the range
    verdicts = criterion.judge_many([{"output_text": key} for key in answers], [{}] * 5)
    assert [(v.score, v.passed) for v in verdicts[:2]] == [(4.0, True), (2.5, False)]
    assert "outside [1.0, 5.0]" in verdicts[2].error and "not the JSON" in verdicts[3].error
    assert "did not answer: no such model" in verdicts[4].error
    assert judge.asked[0][2]["properties"]["result"] == {"type": "number", "minimum": 1.0, "maximum": 5.0}
    assert judge.asked[0][3] == {"temperature": 0.0, "max_completion_tokens": 20, "seed": 3}


@pytest.mark.parametrize("change, path", [
    ({"passing_labels": ["maybe"]}, "testing_criteria[0].passing_labels"),
    ({"pass_threshold": 0.5}, "testing_criteria[0].pass_threshold"),
    ({"input": [{"role": "user", "content": "{{ item.x "}]}, "testing_criteria[0].input[0].content"),
])
def test_bad_model_graders_name_their_field(change, path):
    with pytest.raises(GraderError) as refused:
        parse_criteria([{**LABEL, **change}])
    assert refused.value.path == path


def test_a_model_grader_without_its_judge_cannot_grade():
    from tunesmith.train.graders import parse_grader

    with pytest.raises(RuntimeError, match="needs a judge"):
        parse_grader(LABEL).grade("Paris", {"answer": "Paris"})
