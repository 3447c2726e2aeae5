"""What every grader is: a Grade per sample, and the Grader interface (train/graders.py parses OpenAI's JSON into
one; train/model_graders.py's judges are graders too)."""
from __future__ import annotations

from dataclasses import dataclass, field

from jinja2 import Template, TemplateSyntaxError
from pydantic import BaseModel

from tunesmith.train import grader_templates as templates
from tunesmith.train.grader_specs import GraderError


@dataclass
class Grade:
    reward: float
    sub_rewards: dict[str, float] = field(default_factory=dict)  # a multi grader's: each named grader's reward
    error: str | None = None  # why grading this sample failed (reward 0.0 then)
    # "template", "formula", "python_runtime", "python_timeout", "python_exited", "model_server" or "model_parse"
    error_type: str | None = None
    judge: dict | None = None  # a model grader's exchange with its judge: model, input, output, usage


class Grader:
    """A parsed grader. spec() is its normalized JSON; grade_many scores samples against their items."""

    def __init__(self, spec: BaseModel):
        self.name, self.type, self.parsed = spec.name, spec.type, spec

    def spec(self) -> dict:
        return self.parsed.model_dump(exclude_none=True)

    def grade(self, sample_text: str, item: dict) -> Grade:
        return self.grade_many([sample_text], [item])[0]

    def grade_many(self, samples: list[str], items: list[dict]) -> list[Grade]:
        """Answers as text: each becomes the `sample` namespace OpenAI fills for an answer (output_text, output_json)."""
        return self.grade_samples([templates.sample_namespace(sample) for sample in samples], items)

    def grade_samples(self, samples: list[dict], items: list[dict]) -> list[Grade]:
        """Samples as `sample` namespaces: an eval's samples carry more than the text (output_tools, choices)."""
        raise NotImplementedError

    def templates(self) -> list[tuple[str, Template]]:
        """(field, template) pairs whose rendering reads the item."""
        return []


def template_at(text: str, path: str) -> Template:
    try:
        return templates.compile_template(text)
    except TemplateSyntaxError as exc:
        raise GraderError(path, f"the template does not parse: {exc.message} (line {exc.lineno})") from None
