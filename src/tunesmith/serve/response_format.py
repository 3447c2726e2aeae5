"""OpenAI's `response_format` for chat completions: free text, any JSON object, or JSON under a given schema.

    {"type": "text"}                                   the default
    {"type": "json_object"}                            JSON mode: the answer is a JSON object; as at OpenAI, the
                                                       messages must ask for JSON (the word "json" somewhere)
    {"type": "json_schema", "json_schema": {"name": ..., "schema": {...}, "strict": true}}
                                                       structured outputs: the answer is valid under the schema

Both JSON kinds are held to their grammar token by token (models/decoding/constraints.py), strict or not: a
schema the grammar compiler cannot follow is a 400 naming why, never an answer that quietly ignores part of it.
With `tools` and tool_choice "auto", the answer is that JSON or calls (serve/tools.py builds the grammar).
The official client's `chat.completions.parse(response_format=SomePydanticModel)` works unchanged.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tunesmith.models.decoding.constraints import SchemaError, json_grammar
from tunesmith.serve.errors import APIError


class JsonSchema(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")  # OpenAI's rule for the name
    description: str | None = None
    schema_: dict | None = Field(None, alias="schema")  # absent: any JSON value
    strict: bool | None = None


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchema | None = None


def answer_schema(response_format: ResponseFormat | None, messages: list[str], tokenizer,
                  vocab_size: int) -> dict | None:
    """The JSON schema a request's answers follow (checked: its grammar compiles), or None for free text; a 400 for
    a format that cannot be honoured."""
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        if not any("json" in text.lower() for text in messages):
            raise APIError(400, "'messages' must contain the word 'json' in some form, to use 'response_format' of "
                                "type 'json_object'.", param="messages")
        return {"type": "object"}
    if response_format.json_schema is None:
        raise APIError(400, "Missing required parameter: 'response_format.json_schema'.",
                       param="response_format.json_schema", code="missing_required_parameter")
    schema = response_format.json_schema.schema_ if response_format.json_schema.schema_ is not None else {}
    try:
        json_grammar(schema, tokenizer, vocab_size)  # 1-5 ms: a schema error is named here, not as a tools error
    except SchemaError as error:
        raise APIError(400, f"Invalid schema for response_format '{response_format.json_schema.name}': {error}",
                       param="response_format", code="invalid_value") from error
    return schema
