"""Function calling as text: OpenAI's `tools`, assistant `tool_calls` and `tool` messages, in one format that training
and serving share, so a model fine-tuned on tool-call rows is served with the prompts it was trained on.

The format is the Hermes one that Qwen2.5's chat template writes (and many open models are trained on):

- the tools go in the system message: a "# Tools" section with one JSON line per tool inside <tools></tools>, and
  how to call them;
- an assistant turn's calls follow its text (if any), one block each:
  <tool_call>
  {"name": "get_weather", "arguments": {"city": "Oslo"}}
  </tool_call>
- the results come back as a user turn holding one <tool_response>...</tool_response> block per `tool` message.

So every model's own chat template can render a conversation with tools (it sees only system, user and assistant
turns), and the trained tokens of a tool-calling turn are its calls. Serving parses the blocks of an answer back into
OpenAI's `tool_calls`; `tool_choice` "required" or a named function holds the answer to calls of the tools offered,
arguments valid under their JSON schema (a grammar, models/decoding/constraints.py).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
# json.dumps' default separators: the calls a grammar writes are the calls training rendered
SEPARATORS = {"item_separator": ", ", "key_separator": ": ", "whitespace_flexible": False}
COMPACT_JSON = {"whitespace_flexible": False}  # a response_format answer: {"a":1,"b":[2,3]}
BLOCK = re.compile(re.escape(CALL_OPEN) + r"\s*(.*?)\s*" + re.escape(CALL_CLOSE), re.DOTALL)


NO_PARAMETERS = {"type": "object", "properties": {}, "additionalProperties": False}  # OpenAI: parameters omitted


def tool_spec(function: dict) -> dict:
    """A tool as prompts show it and grammars follow it, whether it came in a training row or a request: name,
    description (when given) and parameters (none given: a function without any)."""
    shown = {key: function[key] for key in ("name", "description") if function.get(key) is not None}
    return {"type": "function", "function": {**shown, "parameters": function.get("parameters") or NO_PARAMETERS}}


def tools_section(tools: list[dict]) -> str:
    lines = "\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools)
    return ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            "You are provided with function signatures within <tools></tools> XML tags:\n"
            f"<tools>\n{lines}\n</tools>\n\n"
            "For each function call, return a json object with function name and arguments within "
            "<tool_call></tool_call> XML tags:\n"
            '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>')


def call_block(name: str, arguments: dict) -> str:
    return f"{CALL_OPEN}\n{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}\n{CALL_CLOSE}"


def assistant_text(content: str | None, tool_calls: list[dict]) -> str:
    """An assistant turn with calls as its text. `tool_calls` are OpenAI's ({"function": {"name", "arguments"}}, the
    arguments a JSON string, as the API sends them, or already an object)."""
    blocks = []
    for call in tool_calls:
        arguments = call["function"].get("arguments") or "{}"
        blocks.append(call_block(call["function"]["name"],
                                 json.loads(arguments) if isinstance(arguments, str) else arguments))
    return "\n".join(([content] if content else []) + blocks)


def as_plain_messages(messages: list[dict], tools: list[dict] | None) -> list[dict]:
    """OpenAI messages (with `tool_calls` and `tool` turns) and tools as system / user / assistant turns any chat
    template renders. Keys other than role and content (a turn's training weight) are kept."""
    plain: list[dict] = []
    for i, message in enumerate(messages):
        role = message["role"]
        extra = {key: value for key, value in message.items()
                 if key not in ("role", "content", "tool_calls", "tool_call_id", "name")}
        if role == "tool":
            response = f"<tool_response>\n{message.get('content') or ''}\n</tool_response>"
            if i and messages[i - 1]["role"] == "tool":  # results of one turn's calls share one user turn
                plain[-1]["content"] += "\n" + response
            else:
                plain.append({"role": "user", "content": response})
        elif role == "assistant" and message.get("tool_calls"):
            plain.append({"role": "assistant", "content": assistant_text(message.get("content"), message["tool_calls"]),
                          **extra})
        else:
            plain.append({"role": role, "content": message.get("content") or "", **extra})
    if tools:
        if plain and plain[0]["role"] == "system":
            plain[0] = {**plain[0], "content": f"{plain[0]['content']}\n\n{tools_section(tools)}"}
        else:
            plain.insert(0, {"role": "system", "content": tools_section(tools)})
    return plain


@dataclass
class ToolCall:
    name: str
    arguments: str  # JSON, as OpenAI's API carries it


def parse_answer(text: str) -> tuple[str | None, list[ToolCall]]:
    """An answer's text before its calls (None when empty) and its calls; an answer whose blocks are not all calls
    (cut by max_tokens, a block that is not {"name", "arguments": {...}}) is all text, no calls."""
    start = text.find(CALL_OPEN)
    if start < 0:
        return text, []
    calls = []
    rest = text[start:]
    for match in BLOCK.finditer(rest):
        try:
            call = json.loads(match.group(1))
        except ValueError:
            return text, []
        if not (isinstance(call, dict) and isinstance(call.get("name"), str) and isinstance(call.get("arguments"), dict)):
            return text, []
        calls.append(ToolCall(call["name"], json.dumps(call["arguments"], ensure_ascii=False)))
    if not calls or BLOCK.sub("", rest).strip():  # anything but calls after the first one begins
        return text, []
    content = text[:start].strip()
    return content or None, calls


class AnswerSplitter:
    """A streamed answer's text split as it comes: the text before any call goes out at once, except a tail that may
    be the beginning of `<tool_call>` (or whitespace before it); from the first call on, everything waits for
    `finish`, which parses it."""

    def __init__(self):
        self.held = ""  # what has not been sent: from the first call on, the calls and the whitespace before them
        self.calling = False

    def feed(self, text: str) -> str:
        self.held += text
        if self.calling:
            return ""
        end = self.held.find(CALL_OPEN)
        self.calling = end >= 0
        if not self.calling:  # a tail that may be the beginning of <tool_call> waits
            end = len(self.held) - next((n for n in range(min(len(CALL_OPEN) - 1, len(self.held)), 0, -1)
                                         if CALL_OPEN.startswith(self.held[-n:])), 0)
        out = self.held[:end].rstrip()  # whitespace before a call waits with it
        self.held = self.held[len(out):]
        return out

    def finish(self) -> tuple[str, list[ToolCall]]:
        """(the text not sent yet, the calls)."""
        if not self.calling:
            return self.held, []
        _, calls = parse_answer(self.held)  # the text sent before the first call does not change the calls
        if not calls:
            return self.held, []
        return "", calls


def calls_schema(tools: list[dict]) -> dict:
    """A JSON schema for one call of any of `tools` (tool_spec's): {"name": one of theirs, "arguments": valid under
    its parameters}, name first."""
    options = [{"type": "object", "properties": {"name": {"const": tool["function"]["name"]},
                                                 "arguments": tool["function"]["parameters"]},
                "required": ["name", "arguments"], "additionalProperties": False} for tool in tools]
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    return {**schema, "x-guidance": SEPARATORS}


def calls_grammar_text(tools: list[dict], parallel: bool, or_json: dict | None = None) -> str:
    """A Lark grammar (llguidance's dialect) for an answer that is only calls: one, or one or more with `parallel`;
    with `or_json` (a JSON schema), either those calls or compact JSON valid under it."""
    repeat = ' ("\\n" call)*' if parallel else ""
    either = (f"start: calls | answer\nanswer: %json {json.dumps({**or_json, 'x-guidance': COMPACT_JSON})}\n"
              if or_json is not None else "start: calls\n")
    return (either + f"calls: call{repeat}\n"
            f'call: "{CALL_OPEN}\\n" body "\\n{CALL_CLOSE}"\n'
            f"body: %json {json.dumps(calls_schema(tools))}\n")
