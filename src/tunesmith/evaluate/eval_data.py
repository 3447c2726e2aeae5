"""An eval run's rows (OpenAI's Evals API): where they come from, whether they fit the eval's schema, and the
messages a model is asked for each.

A run's source is its rows inline (`{"type": "file_content", "content": [{"item": {...}, "sample": {...}}]}`) or
an uploaded file (`{"type": "file_id", "id": ...}`, purpose `evals`) with one such row per line. Each row's
`item` must fit the eval's `item_schema` (JSON Schema); rows that do not are named by position and field before
the run starts, so a run never fails half way on its data. A `completions` run asks a model for each row: its
`input_messages` are a template of chat messages whose text reads the item (`{{ item.question }}`), or an
`item_reference` to a list of messages inside the item (`item.messages`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError

from tunesmith.train import grader_templates as templates


class EvalDataError(ValueError):
    """Rows that cannot be evaluated: `param` is the request field, the message names each row and field."""

    def __init__(self, param: str, problem: str):
        super().__init__(problem)
        self.param = param


@dataclass(frozen=True)
class EvalRow:
    index: int  # the row's position: OpenAI's datasource_item_id
    item: dict
    sample: dict | None  # a jsonl run's given answer; None where a model is asked


def sample_schema() -> dict:
    """The `sample` namespace a completions run fills, as the eval object's schema shows it."""
    return {"type": "object", "properties": {
        "model": {"type": "string"}, "choices": {"type": "array", "items": {"type": "object"}},
        "output_text": {"type": "string"}, "output_json": {}, "output_tools": {"type": "array"}},
        "required": ["model", "choices", "output_text"]}


def data_source_schema(item_schema: dict, include_sample_schema: bool) -> dict:
    """OpenAI's `schema` of a custom data source: the item, and the sample where the eval's runs make one."""
    properties, required = {"item": item_schema}, ["item"]
    if include_sample_schema:
        properties["sample"], required = sample_schema(), ["item", "sample"]
    return {"type": "object", "properties": properties, "required": required}


def check_item_schema(schema: object) -> None:
    from jsonschema import SchemaError, validators

    if not isinstance(schema, dict):
        raise EvalDataError("data_source_config.item_schema", "give a JSON Schema object, e.g. {\"type\": \"object\", "
                            "\"properties\": {\"question\": {\"type\": \"string\"}}}")
    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise EvalDataError("data_source_config.item_schema", f"not a valid JSON Schema: {exc.message}") from None


def rows_from_content(content: list[dict], where: str = "data_source.source.content") -> list[EvalRow]:
    return [row_at(entry, index, f"{where}[{index}]") for index, entry in enumerate(content)]


def rows_from_file(path: Path, filename: str) -> list[EvalRow]:
    """One row a line: {"item": {...}} or {"item": {...}, "sample": {...}}; bad lines named by number."""
    rows, problems = [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rows.append(row_at(json.loads(line), len(rows), f"{filename} line {number}"))
            except (ValueError, EvalDataError) as exc:
                problems.append(f"{filename} line {number}: not JSON ({exc})" if not isinstance(exc, EvalDataError)
                                else str(exc))
    if problems:
        raise EvalDataError("data_source.source.id", "; ".join(problems[:10]) + more(problems))
    if not rows:
        raise EvalDataError("data_source.source.id", f"{filename} has no rows — one {{\"item\": {{...}}}} a line")
    return rows


def row_at(entry: object, index: int, where: str) -> EvalRow:
    if not isinstance(entry, dict) or not isinstance(entry.get("item"), dict):
        raise EvalDataError("data_source.source", f"{where}: expected {{\"item\": {{...}}}} (an object under "
                                                  "\"item\"), optionally with \"sample\"")
    sample = entry.get("sample")
    if sample is not None and not isinstance(sample, dict):
        raise EvalDataError("data_source.source", f"{where}.sample: expected an object, e.g. {{\"output_text\": ...}}")
    return EvalRow(index, entry["item"], sample)


def check_items(rows: list[EvalRow], item_schema: dict, where: str) -> None:
    """Every row's item fits the eval's item_schema, or an EvalDataError naming each row that does not and why."""
    from jsonschema import validators

    validator = validators.validator_for(item_schema)(item_schema)
    problems = []
    for row in rows:
        error = next(iter(sorted(validator.iter_errors(row.item), key=lambda e: list(e.absolute_path))), None)
        if error is not None:
            field = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path)
            problems.append(f"{where}[{row.index}].item{field}: {error.message}")
    if problems:
        raise EvalDataError("data_source.source", "rows do not fit the eval's item_schema — " + "; ".join(problems[:10])
                            + more(problems))


def more(problems: list[str]) -> str:
    return f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""


def given_sample(sample: dict) -> dict:
    """A jsonl row's sample as graders read it: output_json filled from output_text where the row leaves it out."""
    if "output_json" not in sample and isinstance(sample.get("output_text"), str):
        return {**sample, "output_json": templates.parsed_json(sample["output_text"])}
    return sample


class InputMessages:
    """A completions run's `input_messages`: the chat messages asked for one item."""

    def __init__(self, spec: dict):
        kind = spec.get("type")
        self.reference, self.template = None, []
        if kind == "item_reference":
            reference = spec.get("item_reference")
            if not isinstance(reference, str) or not reference.startswith("item."):
                raise EvalDataError("data_source.input_messages.item_reference",
                                    "name a list of messages in the item, e.g. \"item.messages\"")
            self.reference = reference.removeprefix("item.").split(".")
        elif kind == "template":
            messages = spec.get("template")
            if not isinstance(messages, list) or not messages:
                raise EvalDataError("data_source.input_messages.template", "give a list of messages, e.g. "
                                    "[{\"role\": \"user\", \"content\": \"{{ item.question }}\"}]")
            self.template = [self.compiled(message, f"data_source.input_messages.template[{index}]")
                             for index, message in enumerate(messages)]
        else:
            raise EvalDataError("data_source.input_messages.type", "template or item_reference")

    @staticmethod
    def compiled(message: object, where: str) -> tuple[str, Any]:
        if not isinstance(message, dict) or message.get("role") not in ("system", "developer", "user", "assistant"):
            raise EvalDataError(where, "a message with role system, developer, user or assistant and its content")
        content = message.get("content")
        if isinstance(content, dict) and content.get("type") in ("input_text", "output_text"):
            content = content.get("text")
        if not isinstance(content, str):
            raise EvalDataError(f"{where}.content", "text (a string, or {\"type\": \"input_text\", \"text\": ...}); "
                                                    "images and audio are not supported")
        try:
            return message["role"], templates.compile_template(content)
        except TemplateSyntaxError as exc:
            raise EvalDataError(f"{where}.content", f"the template does not parse: {exc.message}") from None

    def messages(self, item: dict) -> list[dict]:
        """The chat messages for one item; templates.MissingField (naming item.x) where the item lacks a field."""
        if self.reference is not None:
            value: Any = item
            for part in self.reference:
                if not isinstance(value, dict) or part not in value:
                    raise templates.MissingField("item." + ".".join(self.reference))
                value = value[part]
            if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
                raise ValueError(f"item.{'.'.join(self.reference)} is not a list of messages")
            return value
        return [{"role": "system" if role == "developer" else role,
                 "content": templates.render(template, {}, item)} for role, template in self.template]
