"""OpenAI's fine-tuning graders: the reward functions of reinforcement fine-tuning, in the API's own JSON.

    grader = parse_grader({"type": "string_check", "name": "exact", "operation": "eq",
                           "input": "{{ sample.output_text }}", "reference": "{{ item.answer }}"})
    grade_many(grader, ["Paris", "Lyon"], [{"answer": "Paris"}] * 2)  # rewards 1.0 and 0.0

Types: string_check (eq, ne; like / ilike: the input contains the reference, case-sensitive / not; 1.0 or 0.0),
text_similarity (metrics in text_similarity.py), python (the user's grade(sample, item), run by python_grader.py
in a subprocess, one per batch), multi (named graders combined by a formula, grader_formula.py), score_model and
label_model (a judge model's answer, model_graders.py: the caller gives the judge). Templates: grader_templates.py.

A sample whose grading fails (a template reads a field its item lacks, the python grader raises) gets reward 0.0
and its `error`; the batch goes on. A bad grader fails at parse_grader with a GraderError naming the field path.
"""
from __future__ import annotations

import json
import keyword

from jinja2 import Template
from pydantic import ValidationError

from tunesmith.data.formats import RowError
from tunesmith.data.prompts import PromptRow, load_prompt_rows
from tunesmith.train import grader_templates as templates
from tunesmith.train.grader_base import Grade, Grader, template_at
from tunesmith.train.grader_formula import FUNCTIONS, Formula, FormulaError, parse_formula
from tunesmith.train.grader_specs import (SPEC_ADAPTER, SPECS, GraderError, LabelModelSpec, MultiSpec, PythonSpec,
                                          ScoreModelSpec, StringCheckSpec, TextSimilaritySpec, check_type, translated)
from tunesmith.train.model_graders import ModelGrader
from tunesmith.train.python_grader import check_source, run_python_grader
from tunesmith.train.text_similarity import similarity_function

__all__ = ["Grade", "Grader", "GraderError", "check_templates", "grade_many", "graded_prompt_rows", "parse_grader",
           "uses_python"]

PYTHON_BATCH_TIMEOUT_S = 30.0


class ComparingGrader(Grader):
    """string_check and text_similarity: render input and reference, then compare the two texts."""

    def __init__(self, spec: StringCheckSpec | TextSimilaritySpec, where: str, compare):
        super().__init__(spec)
        self.fields = {name: template_at(getattr(spec, name), f"{where}.{name}") for name in ("input", "reference")}
        self.compare = compare  # (input, reference) -> 0..1

    def templates(self) -> list[tuple[str, Template]]:
        return list(self.fields.items())

    def grade_samples(self, samples: list[dict], items: list[dict]) -> list[Grade]:
        return [self.grade_pair(sample, item) for sample, item in zip(samples, items)]

    def grade_pair(self, sample: dict, item: dict) -> Grade:
        texts = {}
        for name, template in self.fields.items():
            try:
                texts[name] = templates.render(template, sample, item)
            except Exception as exc:  # jinja2's errors, and a filter's TypeError on the data: this sample's error
                return Grade(0.0, error=templates.failure_message(name, exc), error_type="template")
        return Grade(float(self.compare(texts["input"], texts["reference"])))


STRING_OPERATIONS = {"eq": lambda text, reference: text == reference,
                     "ne": lambda text, reference: text != reference,
                     "like": lambda text, reference: reference in text,
                     "ilike": lambda text, reference: reference.casefold() in text.casefold()}


class PythonGrader(Grader):
    def __init__(self, spec: PythonSpec):
        super().__init__(spec)
        self.timeout_s = PYTHON_BATCH_TIMEOUT_S  # for the whole batch

    def grade_samples(self, samples: list[dict], items: list[dict]) -> list[Grade]:
        results = run_python_grader(self.parsed.source, samples, items, self.timeout_s)
        return [Grade(result.reward) if result.error is None else
                Grade(0.0, error=result.error, error_type=f"python_{result.server_error or 'runtime'}")
                for result in results]


class MultiGrader(Grader):
    def __init__(self, spec: MultiSpec, graders: dict[str, Grader], formula: Formula, single: bool):
        super().__init__(spec)
        self.graders, self.formula, self.single = graders, formula, single

    def spec(self) -> dict:
        """`graders` in the form given: a map, or one grader object (the openai client types it so)."""
        if self.single:
            return {**super().spec(), "graders": next(iter(self.graders.values())).spec()}
        return {**super().spec(), "graders": {name: grader.spec() for name, grader in self.graders.items()}}

    def templates(self) -> list[tuple[str, Template]]:
        return [(f"graders.{name}.{inner}", template) for name, grader in self.graders.items()
                for inner, template in grader.templates()]

    def grade_samples(self, samples: list[dict], items: list[dict]) -> list[Grade]:
        graded = {name: grader.grade_samples(samples, items) for name, grader in self.graders.items()}
        return [self.combine({name: grades[index] for name, grades in graded.items()}) for index in range(len(samples))]

    def combine(self, grades: dict[str, Grade]) -> Grade:
        rewards = {name: grade.reward for name, grade in grades.items()}
        failures = [(name, grade) for name, grade in grades.items() if grade.error is not None]
        if failures:
            error = "; ".join(f"graders.{name}: {grade.error}" for name, grade in failures)
            return Grade(0.0, rewards, error, failures[0][1].error_type)
        try:
            return Grade(self.formula.evaluate(rewards), rewards)
        except FormulaError as exc:
            return Grade(0.0, rewards, f"calculate_output {exc}", "formula")


def parse_grader(spec: dict, where: str = "grader") -> Grader:
    """Validate OpenAI's grader JSON into a Grader; GraderError names `where` + the field and what to change. A
    score_model or label_model grader grades once given its judge (model_graders.with_judge)."""
    if not isinstance(spec, dict):
        raise GraderError(where, f"expected a JSON object with a type, got {json.dumps(spec)[:80]}")
    check_type(spec, where)
    try:
        parsed = SPEC_ADAPTER.validate_python(spec)
    except ValidationError as exc:
        raise translated(exc.errors()[0], where, SPECS[spec["type"]]) from None
    if isinstance(parsed, StringCheckSpec):
        return ComparingGrader(parsed, where, STRING_OPERATIONS[parsed.operation])
    if isinstance(parsed, TextSimilaritySpec):
        try:
            return ComparingGrader(parsed, where, similarity_function(parsed.evaluation_metric))
        except ImportError as exc:
            raise GraderError(f"{where}.evaluation_metric", str(exc)) from None
    if isinstance(parsed, (LabelModelSpec, ScoreModelSpec)):
        return ModelGrader(parsed, where)
    if isinstance(parsed, PythonSpec):
        problem = check_source(parsed.source)
        if problem:
            raise GraderError(f"{where}.source", problem)
        return PythonGrader(parsed)
    return parse_multi(parsed, where)


def parse_multi(parsed: MultiSpec, where: str) -> MultiGrader:
    single = isinstance(parsed.graders.get("type"), str)  # one grader object, as the openai client types it
    if single:
        only = parse_grader(parsed.graders, f"{where}.graders")
        graders, paths = {only.name: only}, {only.name: f"{where}.graders.name"}
    else:
        graders = {name: parse_grader(spec, f"{where}.graders.{name}") for name, spec in parsed.graders.items()}
        paths = {name: f"{where}.graders.{name}" for name in graders}
    if not graders:
        raise GraderError(f"{where}.graders", "empty — give at least one grader, keyed by the name the formula uses")
    for name in graders:
        if not name.isidentifier() or keyword.iskeyword(name) or name in FUNCTIONS:
            raise GraderError(paths[name], f"{name!r} cannot be used in calculate_output — name graders with "
                                           f"letters, digits and _, not a Python keyword or {', '.join(FUNCTIONS)}")
    try:
        formula = parse_formula(parsed.calculate_output, list(graders))
    except FormulaError as exc:
        raise GraderError(f"{where}.calculate_output", str(exc)) from None
    return MultiGrader(parsed, graders, formula, single)


def grade_many(grader: Grader, samples: list[str], items: list[dict]) -> list[Grade]:
    """One Grade per (sample, item); a python grader grades the whole batch in one subprocess."""
    if len(samples) != len(items):
        raise ValueError(f"grade_many: {len(samples)} samples but {len(items)} items — pass one item per sample")
    return grader.grade_many(samples, items)


def check_templates(grader: Grader, item: dict) -> str | None:
    """A message naming the first `item.x` the grader's templates read and this item lacks, or None."""
    for name, template in grader.templates():
        try:
            templates.render_for_check(template, item)
        except templates.MissingField as exc:
            return templates.failure_message(name, exc)
        except Exception:  # a failure that depends on the sample is not the row's to fix
            continue
    return None


def graded_prompt_rows(path, grader: Grader) -> tuple[list[PromptRow], list[RowError]]:
    """A prompt file's rows (data/prompts.py) that `grader` can read, and every row error by line: the file's own and
    each row lacking a field the grader's templates read (the training recipe and a job's creation both ask)."""
    loaded = load_prompt_rows(path)
    rows, errors = [], list(loaded.errors)
    for row in loaded.rows:
        missing = check_templates(grader, row.item)
        if missing is None:
            rows.append(row)
        else:
            errors.append(RowError(str(path), row.line, "", missing,
                                   "add the field to every row, or change the grader's template"))
    return rows, sorted(errors, key=lambda error: error.line)


def uses_python(grader: Grader) -> bool:
    """Whether grading runs the user's code (a python grader, or one inside a multi grader)."""
    if isinstance(grader, MultiGrader):
        return any(uses_python(inner) for inner in grader.graders.values())
    return isinstance(grader, PythonGrader)
