"""The graders' JSON, as OpenAI's API takes it: pydantic models (a union on `type`, unknown fields refused), and
the translation of their validation errors into GraderErrors that name the field path and what to change."""
from __future__ import annotations

import difflib
import json
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from tunesmith.train.text_similarity import REFUSED_METRICS

GRADER_TYPES = ("string_check", "text_similarity", "python", "multi")
MODEL_GRADER_TYPES = ("score_model", "label_model")
Metric = Literal["fuzzy_match", "bleu", "gleu", "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l"]


class GraderError(ValueError):
    """A grader that cannot be used: `path` is the field (grader.graders.exact.operation), the message what to do."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path


class StringCheckSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["string_check"]
    name: str = Field(description="The grader's name (a multi grader's formula uses its key instead).")
    operation: Literal["eq", "ne", "like", "ilike"] = Field(description="eq, ne, like (contains), ilike (contains, any case).")
    input: str = Field(description="Template for the text checked, e.g. {{ sample.output_text }}.")
    reference: str = Field(description="Template for the text it is checked against, e.g. {{ item.answer }}.")


class TextSimilaritySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text_similarity"]
    name: str = Field(description="The grader's name.")
    evaluation_metric: Metric = Field(description="How input and reference are compared (text_similarity.py).")
    input: str = Field(description="Template for the text graded.")
    reference: str = Field(description="Template for the text it is graded against.")


class PythonSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["python"]
    name: str = Field(description="The grader's name.")
    source: str = Field(description="Python source defining grade(sample, item) -> float.")
    image_tag: str | None = Field(None, description="OpenAI's sandbox image; accepted and ignored (the grader "
                                  "runs under the server's own Python).")


class MultiSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["multi"]
    name: str = Field(description="The grader's name.")
    graders: dict[str, Any] = Field(description="name -> grader; or one grader object, named by its `name`.")
    calculate_output: str = Field(description="Formula over the graders' names, e.g. 0.7 * exact + 0.3 * close.")


class InputText(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["input_text", "output_text"]
    text: str


class JudgeMessage(BaseModel):
    """One message of a model grader's prompt; its text is a template over `sample` and `item`."""
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | InputText = Field(description="Text or {type: input_text, text}; images and audio are not "
                                                 "supported.")
    type: Literal["message"] | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else self.content.text


class JudgeSampling(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_completions_tokens: int | None = Field(None, ge=1, description="OpenAI's spelling, as in its grader JSON.")
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    reasoning_effort: None = Field(None, description="Accepted only as null: tunesmith's judges do not reason.")


class ModelGraderSpec(BaseModel):
    """What label_model and score_model share: a judge among the key's models and its prompt."""
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="The grader's name.")
    model: str = Field(description="The judge: one of the key's models, which answers under the grader's schema.")
    input: list[JudgeMessage] = Field(min_length=1, description="The judge's prompt.")


class LabelModelSpec(ModelGraderSpec):
    type: Literal["label_model"]
    labels: list[str] = Field(min_length=1, description="The labels the judge chooses from.")
    passing_labels: list[str] = Field(min_length=1, description="The labels that pass: a subset of labels.")


class ScoreModelSpec(ModelGraderSpec):
    type: Literal["score_model"]
    range: list[float] | None = Field(None, min_length=2, max_length=2, description="[low, high]; [0, 1] if absent.")
    sampling_params: JudgeSampling | None = None


GraderSpec = Annotated[Union[StringCheckSpec, TextSimilaritySpec, PythonSpec, MultiSpec, LabelModelSpec,
                             ScoreModelSpec], Field(discriminator="type")]
SPEC_ADAPTER = TypeAdapter(GraderSpec)
SPECS = dict(zip(GRADER_TYPES + MODEL_GRADER_TYPES, (StringCheckSpec, TextSimilaritySpec, PythonSpec, MultiSpec,
                                                     ScoreModelSpec, LabelModelSpec)))


def check_type(spec: dict, where: str) -> None:
    kinds = GRADER_TYPES + MODEL_GRADER_TYPES
    kind, supported = spec.get("type"), ", ".join(kinds)
    if kind is None:
        raise GraderError(f"{where}.type", f"missing — one of {supported}")
    if kind not in kinds:
        near = difflib.get_close_matches(str(kind), kinds, n=1)
        hint = f" — did you mean {near[0]!r}?" if near else ""
        raise GraderError(f"{where}.type", f"{json.dumps(kind)} is not one of {supported}{hint}")
    metric = spec.get("evaluation_metric")
    if kind == "text_similarity" and metric in REFUSED_METRICS:
        raise GraderError(f"{where}.evaluation_metric", f"{metric} {REFUSED_METRICS[metric]} — use one of "
                                                        f"{', '.join(get_args(Metric))}")


def translated(error: dict, where: str, model: type[BaseModel]) -> GraderError:
    """pydantic's first error as a GraderError (its loc starts with the union's tag, which is dropped)."""
    loc = [str(part) for part in error["loc"][1:]]
    path, kind = ".".join([where, *loc]), error["type"]
    if kind == "extra_forbidden":
        near = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1)
        hint = f"did you mean {near[0]!r}?" if near else f"the fields are {', '.join(model.model_fields)}"
        return GraderError(path, f"unknown field — {hint}")
    if kind == "missing":
        needed = [name for name, info in model.model_fields.items() if info.is_required()]
        return GraderError(path, f"missing — this grader needs {', '.join(needed)}")
    if kind == "literal_error":
        allowed = ", ".join(get_args(model.model_fields[loc[0]].annotation))
        return GraderError(path, f"{json.dumps(error['input'])} is not one of {allowed}")
    return GraderError(path, f"{error['msg']} (got {json.dumps(error['input'], default=str)[:80]})")
