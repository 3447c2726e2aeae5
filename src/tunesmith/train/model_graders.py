"""score_model and label_model graders: a judge model reads the sample and answers under a JSON schema.

    grader = parse_grader({"type": "label_model", "name": "tone", "model": "ft:judge", "labels": ["polite", "rude"],
                           "passing_labels": ["polite"], "input": [
                               {"role": "system", "content": "Label the reply's tone."},
                               {"role": "user", "content": "{{ sample.output_text }}"}]})
    grader.with_judge(judge).grade_samples(samples, items)

The prompt's messages are templates over `sample` and `item` (grader_templates.py). The judge answers under
structured outputs, so its answer is always one of the labels ({"label": ...}: reward 1.0 when it is a passing
label, else 0.0) or a number inside the range ({"result": ...}, [0, 1] unless `range` says otherwise), never prose
to parse; only an answer cut at its token limit can fail to parse. Who the judge is belongs to the caller (a
Judge: the server asks the key's model through its chat route, serve/judge.py); a grader without one cannot grade.
Sampling: temperature 0 and 128 tokens unless the grader's sampling_params say otherwise (our defaults: a judge that
answers the same sample the same way).
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Protocol

from tunesmith.train import grader_templates as templates
from tunesmith.train.grader_base import Grade, Grader, template_at
from tunesmith.train.grader_specs import GraderError, LabelModelSpec, ScoreModelSpec

DEFAULT_JUDGE_TOKENS = 128


@dataclass(frozen=True)
class JudgeAnswer:
    text: str = ""
    usage: dict | None = None
    error: str | None = None  # the judge could not answer (its model gone, a server error)


class Judge(Protocol):
    def ask_many(self, model: str, conversations: list[list[dict]], schema: dict, sampling: dict) -> list[JudgeAnswer]:
        """One answer per conversation, each held to `schema`."""


class ModelGrader(Grader):
    """A grader whose reward is a judge model's answer."""

    def __init__(self, spec: LabelModelSpec | ScoreModelSpec, where: str):
        super().__init__(spec)
        self.where, self.judge = where, None
        self.prompt = [(message.role, template_at(message.text(), f"{where}.input[{index}].content"))
                       for index, message in enumerate(spec.input)]
        if isinstance(spec, LabelModelSpec):
            if unknown := [label for label in spec.passing_labels if label not in spec.labels]:
                raise GraderError(f"{where}.passing_labels", f"{', '.join(map(repr, unknown))} not among labels "
                                                             f"({', '.join(map(repr, spec.labels))})")
        elif spec.range is not None and not spec.range[0] < spec.range[1]:
            raise GraderError(f"{where}.range", f"[low, high] with low < high, got {spec.range}")

    @property
    def labels(self) -> bool:
        return isinstance(self.parsed, LabelModelSpec)

    @property
    def score_range(self) -> tuple[float, float]:
        spec = self.parsed
        return (0.0, 1.0) if self.labels or spec.range is None else (spec.range[0], spec.range[1])

    def with_judge(self, judge: Judge) -> ModelGrader:
        bound = copy.copy(self)
        bound.judge = judge
        return bound

    def templates(self):
        return [(f"input[{index}].content", template) for index, (_, template) in enumerate(self.prompt)]

    def schema(self) -> dict:
        if self.labels:
            answer = {"label": {"type": "string", "enum": list(self.parsed.labels)}}
        else:
            low, high = self.score_range
            answer = {"result": {"type": "number", "minimum": low, "maximum": high}}
        return {"type": "object", "properties": answer, "required": list(answer), "additionalProperties": False}

    def sampling(self) -> dict:
        sampling = {"temperature": 0.0, "max_completion_tokens": DEFAULT_JUDGE_TOKENS}
        given = getattr(self.parsed, "sampling_params", None)
        if given is not None:
            sampling.update({name: value for name, value in (
                ("temperature", given.temperature), ("top_p", given.top_p), ("seed", given.seed),
                ("max_completion_tokens", given.max_completions_tokens)) if value is not None})
        return sampling

    def grade_samples(self, samples: list[dict], items: list[dict]) -> list[Grade]:
        if self.judge is None:
            raise RuntimeError(f"{self.where}: a {self.type} grader needs a judge (with_judge) to grade")
        grades: list[Grade | None] = [None] * len(samples)
        asked, conversations = [], []
        for index, (sample, item) in enumerate(zip(samples, items)):
            try:
                conversations.append([{"role": "system" if role == "developer" else role,
                                       "content": templates.render(template, sample, item)}
                                      for role, template in self.prompt])
                asked.append(index)
            except Exception as exc:  # a template's failure is this sample's error, as in the other graders
                grades[index] = Grade(0.0, error=templates.failure_message("input", exc), error_type="template")
        answers = self.judge.ask_many(self.parsed.model, conversations, self.schema(), self.sampling()) if asked else []
        for index, conversation, answer in zip(asked, conversations, answers):
            grades[index] = self.graded(conversation, answer)
        return grades

    def graded(self, conversation: list[dict], answer: JudgeAnswer) -> Grade:
        judged = {"model": self.parsed.model, "input": conversation,
                  "output": [{"role": "assistant", "content": answer.text}], "usage": answer.usage}
        if answer.error is not None:
            return Grade(0.0, error=f"the judge {self.parsed.model} did not answer: {answer.error}",
                         error_type="model_server", judge=judged)
        try:
            value = json.loads(answer.text)["label" if self.labels else "result"]
        except (ValueError, KeyError, TypeError):
            return Grade(0.0, error="the judge's answer is not the JSON asked for (cut short at its token limit?): "
                                    f"{answer.text[:80]!r}", error_type="model_parse", judge=judged)
        if self.labels:
            return Grade(1.0 if value in self.parsed.passing_labels else 0.0, judge=judged | {"label": value})
        low, high = self.score_range
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            return Grade(0.0, error=f"the judge's score {value!r} is outside [{low}, {high}]", error_type="model_parse",
                         judge=judged)
        return Grade(float(value), judge=judged)


def with_judge(grader: Grader, judge: Judge) -> Grader:
    """The grader with every model grader in it (inside a multi grader too) asking `judge`."""
    if isinstance(grader, ModelGrader):
        return grader.with_judge(judge)
    inner = getattr(grader, "graders", None)
    if not inner:
        return grader
    bound = copy.copy(grader)
    bound.graders = {name: with_judge(each, judge) for name, each in inner.items()}
    return bound


def uses_models(grader: Grader) -> list[str]:
    """The judge models a grader asks (a model grader's, or those inside a multi grader)."""
    if isinstance(grader, ModelGrader):
        return [grader.parsed.model]
    return [model for inner in getattr(grader, "graders", {}).values() for model in uses_models(inner)]
