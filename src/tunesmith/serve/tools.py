"""OpenAI's function calling on chat completions: `tools`, `tool_choice`, `parallel_tool_calls`, assistant
`tool_calls` and `tool` messages in, `message.tool_calls` and finish_reason "tool_calls" out.

The conversation reaches the model in the text format training uses (models/tool_calls.py). `tool_choice`:
- "auto" (the default with tools): the model writes text or calls; an answer made of <tool_call> blocks comes back
  as tool_calls, anything else as content;
- "required", or {"type": "function", "function": {"name": ...}}: the answer is held to calls of the offered tools
  (or of the named one), each call's arguments valid under its `parameters` schema, one call unless
  `parallel_tool_calls` (models/decoding/constraints.py);
- "auto" with a `response_format` schema: the answer is that JSON or calls;
- "none": the tools are shown, nothing is parsed as a call.
"""
from __future__ import annotations

import secrets
from typing import Literal

from pydantic import BaseModel, Field

from tunesmith.models.decoding.constraints import Grammar, SchemaError, json_grammar, lark_grammar
from tunesmith.models.tool_calls import ToolCall, calls_grammar_text, tool_spec
from tunesmith.serve.errors import APIError


class Function(BaseModel):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")  # OpenAI's rule
    description: str | None = None
    parameters: dict | None = None
    strict: bool | None = None


class Tool(BaseModel):
    type: Literal["function"]
    function: Function

    def spec(self) -> dict:
        """The tool as the prompt shows it and the grammar follows it, as training rows show it."""
        return tool_spec(self.function.model_dump())


class NamedFunction(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


def tool_specs(tools: list[Tool] | None, tool_choice: ToolChoice | None) -> list[dict] | None:
    """The tools the prompt shows, after OpenAI's checks: tool_choice only with tools, a named tool among them."""
    if not tools:
        if tool_choice is not None and tool_choice != "none":
            raise APIError(400, "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
                                "specified.", param="tool_choice", code="invalid_value")
        return None
    names = [tool.function.name for tool in tools]
    if len(set(names)) != len(names):
        raise APIError(400, "Invalid 'tools': function names must be unique.", param="tools", code="invalid_value")
    if isinstance(tool_choice, NamedToolChoice) and tool_choice.function.name not in names:
        raise APIError(400, f"Invalid value for 'tool_choice': no function named '{tool_choice.function.name}' is "
                            f"in 'tools' ({', '.join(names)}).", param="tool_choice", code="invalid_value")
    return [tool.spec() for tool in tools]


def parses_calls(specs: list[dict] | None, tool_choice: ToolChoice | None) -> bool:
    return specs is not None and tool_choice != "none"


def answer_grammar(schema: dict | None, specs: list[dict] | None, tool_choice: ToolChoice | None, parallel: bool,
                   tokenizer, vocab_size: int) -> Grammar | None:
    """The grammar of a chat answer, or None for free text: calls when tool_choice requires them (the named
    function's only, then once); with tools on "auto" and a response_format schema, that JSON or calls; the schema
    alone without tools (or with tool_choice "none")."""
    calling = parses_calls(specs, tool_choice)
    if not calling:
        return None if schema is None else json_grammar(schema, tokenizer, vocab_size)
    if tool_choice in (None, "auto") and schema is None:
        return None
    if isinstance(tool_choice, NamedToolChoice):
        specs = [spec for spec in specs if spec["function"]["name"] == tool_choice.function.name]
        parallel = False
    either = schema if tool_choice in (None, "auto") else None  # "required": calls are the answer
    try:
        return lark_grammar(calls_grammar_text(specs, parallel, either), tokenizer, vocab_size)
    except SchemaError as error:
        raise APIError(400, f"Invalid 'tools': a function's parameters cannot be followed: {error}", param="tools",
                       code="invalid_value") from error


def tool_call_objects(calls: list[ToolCall]) -> list[dict]:
    return [{"id": f"call_{secrets.token_hex(12)}", "type": "function",
             "function": {"name": call.name, "arguments": call.arguments}} for call in calls]
