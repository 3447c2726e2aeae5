"""An eval's testing criteria (OpenAI's Evals API): graders that pass or fail each sample.

    criteria = parse_criteria([{"type": "string_check", "name": "exact", "operation": "eq",
                                "input": "{{ sample.output_text }}", "reference": "{{ item.answer }}"},
                               {"type": "text_similarity", "name": "close", "evaluation_metric": "fuzzy_match",
                                "input": "{{ sample.output_text }}", "reference": "{{ item.answer }}",
                                "pass_threshold": 0.8}])
    verdicts = criteria[0].judge_many(samples, items)  # Verdict(score, passed, error) per sample

The graders are the fine-tuning graders (train/graders.py), with the rule that turns a score into pass or fail:
string_check passes when its check holds (score 1.0); text_similarity when its score reaches `pass_threshold`
(required, as in OpenAI's API); python when its score reaches `pass_threshold`, 0.5 when the criterion gives none
(OpenAI leaves that default unstated; half marks is ours); label_model when the judge's label is a passing label;
score_model when the judge's score reaches `pass_threshold`, the middle of its range when none is given (ours too).
multi graders are not testing criteria (OpenAI's API has none): give each grader as its own criterion. Model
graders grade only once given a judge (parse_criteria's `judge`; train/model_graders.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from tunesmith.train.grader_specs import GraderError
from tunesmith.train.graders import Grader, parse_grader
from tunesmith.train.model_graders import Judge, with_judge

DEFAULT_PYTHON_THRESHOLD = 0.5


@dataclass(frozen=True)
class Verdict:
    score: float
    passed: bool
    error: str | None = None  # why grading failed (the sample then neither passes nor fails: it errored)
    judge: dict | None = None  # a model grader's exchange with its judge


@dataclass(frozen=True)
class Criterion:
    grader: Grader
    pass_threshold: float | None  # None for string_check: its check passes or not

    @property
    def name(self) -> str:
        return self.grader.name

    def spec(self) -> dict:
        """The criterion's JSON as the eval object shows it: the grader's, with its pass_threshold."""
        threshold = {} if self.pass_threshold is None else {"pass_threshold": self.pass_threshold}
        return {**self.grader.spec(), **threshold}

    def judge_many(self, samples: list[dict], items: list[dict]) -> list[Verdict]:
        """One verdict per (sample namespace, item); a python grader grades them all in one subprocess."""
        threshold = 1.0 if self.pass_threshold is None else self.pass_threshold
        return [Verdict(0.0, False, grade.error, grade.judge) if grade.error is not None else
                Verdict(grade.reward, grade.reward >= threshold, judge=grade.judge)
                for grade in self.grader.grade_samples(samples, items)]


def parse_criteria(specs: object, where: str = "testing_criteria", judge: Judge | None = None) -> list[Criterion]:
    """The eval's testing criteria, checked: a GraderError names the field (testing_criteria[1].pass_threshold).
    Model graders are given `judge` (without one they are only checked, not able to grade)."""
    if not isinstance(specs, list) or not specs:
        raise GraderError(where, "give a list of at least one grader (string_check, text_similarity, python, "
                                 "label_model or score_model)")
    criteria = [parse_criterion(spec, f"{where}[{index}]", judge) for index, spec in enumerate(specs)]
    seen: dict[str, int] = {}
    for index, criterion in enumerate(criteria):
        if criterion.name in seen:
            raise GraderError(f"{where}[{index}].name", f"{criterion.name!r} names testing_criteria[{seen[criterion.name]}]"
                                                        " too — give each criterion its own name (results are per name)")
        seen[criterion.name] = index
    return criteria


def parse_criterion(spec: object, where: str, judge: Judge | None) -> Criterion:
    if not isinstance(spec, dict):
        raise GraderError(where, f"expected a grader object, got {json.dumps(spec, default=str)[:80]}")
    kind = spec.get("type")
    if kind == "multi":
        raise GraderError(f"{where}.type", "multi graders are not testing criteria in OpenAI's Evals API — give each "
                                           "of its graders as its own criterion")
    grader_spec = {name: value for name, value in spec.items() if name != "pass_threshold"}
    grader = parse_grader(grader_spec, where)  # unknown types refused, naming the field
    if judge is not None:
        grader = with_judge(grader, judge)
    threshold = spec.get("pass_threshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
        raise GraderError(f"{where}.pass_threshold", f"expected a number, got {json.dumps(threshold)[:40]}")
    if kind in ("string_check", "label_model"):
        if threshold is not None:
            passing = "its check holds" if kind == "string_check" else "the judge's label is a passing label"
            raise GraderError(f"{where}.pass_threshold", f"{kind} passes when {passing} — remove pass_threshold")
        return Criterion(grader, None)
    if kind == "score_model" and threshold is None:
        low, high = grader.score_range
        return Criterion(grader, (low + high) / 2)
    if kind == "text_similarity" and threshold is None:
        raise GraderError(f"{where}.pass_threshold", "missing — text_similarity needs the score a sample must "
                                                     "reach to pass (0 to 1), e.g. 0.8")
    return Criterion(grader, float(DEFAULT_PYTHON_THRESHOLD if threshold is None else threshold))
