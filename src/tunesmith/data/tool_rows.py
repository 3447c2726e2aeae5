"""Function-calling rows in OpenAI's fine-tuning format: the checks a chat row with `tools`, assistant `tool_calls` and
`tool` turns must pass, each problem as (field, what is wrong, how to fix it), like data/formats.py's.

    {"messages": [{"role": "user", "content": "Weather in Oslo?"},
                  {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                      "function": {"name": "get_weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}}]},
                  {"role": "tool", "tool_call_id": "call_1", "content": "3 C, snow"},
                  {"role": "assistant", "content": "It is 3 C and snowing in Oslo."}],
     "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {...}}}],
     "parallel_tool_calls": false}

Valid rows become plain turns in the format serving uses (models/tool_calls.py), so the trained tokens of a calling
turn are exactly the text the served model must write.
"""
from __future__ import annotations

import json
import re
from typing import Any

NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")  # OpenAI's rule for function names
Problem = tuple[str, str, str]


def tools_problems(data: dict) -> list[Problem]:
    """The row's `tools` (a list of functions with unique names) and `parallel_tool_calls` (a boolean)."""
    problems: list[Problem] = []
    if "parallel_tool_calls" in data and not isinstance(data["parallel_tool_calls"], bool):
        problems.append(("parallel_tool_calls", f"expected true or false, got {data['parallel_tool_calls']!r}",
                         "write true or false, or leave it out"))
    if "tools" not in data:
        return problems
    tools = data["tools"]
    if not isinstance(tools, list):
        return problems + [("tools", "expected a list of tools", 'write "tools": [{"type": "function", "function": '
                                                                  '{"name": ..., "parameters": {...}}}]')]
    seen: set[str] = set()
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            problems.append((where, "expected {\"type\": \"function\", \"function\": {...}}",
                             "describe each tool as a function with a name and a parameters schema"))
            continue
        name = function.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            problems.append((f"{where}.function.name", f"invalid function name {name!r}",
                             "use 1-64 letters, digits, '_' or '-'"))
        elif name in seen:
            problems.append((f"{where}.function.name", f"function '{name}' is listed twice", "list each tool once"))
        else:
            seen.add(name)
        if "parameters" in function and not isinstance(function["parameters"], dict):
            problems.append((f"{where}.function.parameters", "expected a JSON schema object",
                             'write {"type": "object", "properties": {...}} or leave it out (no parameters)'))
    return problems


def tool_names(data: dict) -> set[str] | None:
    """The names of the row's functions (None when it lists no tools)."""
    tools = data.get("tools")
    if not isinstance(tools, list):
        return None
    return {tool["function"]["name"] for tool in tools
            if isinstance(tool, dict) and isinstance(tool.get("function"), dict) and isinstance(tool["function"].get("name"), str)}


def tool_calls_problems(prefix: str, role: Any, tool_calls: Any, names: set[str] | None) -> list[Problem]:
    """An assistant turn's calls: each a function of the row's tools, its arguments a JSON object (as a string)."""
    if role != "assistant":
        return [(f"{prefix}tool_calls", "only assistant turns make tool calls", "move the calls to an assistant turn")]
    if not isinstance(tool_calls, list) or not tool_calls:
        return [(f"{prefix}tool_calls", "expected a non-empty list of calls", "write the calls or leave the key out")]
    problems: list[Problem] = []
    for index, call in enumerate(tool_calls):
        where = f"{prefix}tool_calls[{index}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or call.get("type", "function") != "function":
            problems.append((where, "expected {\"type\": \"function\", \"function\": {\"name\", \"arguments\"}}",
                             "write each call as OpenAI returns it"))
            continue
        name = function.get("name")
        if not isinstance(name, str):
            problems.append((f"{where}.function.name", "missing function name", "name the function called"))
        elif names is None:
            problems.append((f"{where}.function.name", f"calls '{name}' but the row lists no tools",
                             'add "tools" to the row, with this function'))
        elif name not in names:
            problems.append((f"{where}.function.name", f"calls '{name}', which is not in the row's tools",
                             f"call one of {', '.join(sorted(names))} or add it to tools"))
        arguments = function.get("arguments", "{}")
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
        except ValueError as error:
            problems.append((f"{where}.function.arguments", f"not valid JSON ({error.msg})",
                             'write the arguments as a JSON object in a string, e.g. "{\\"city\\": \\"Oslo\\"}"'))
            continue
        if not isinstance(parsed, dict):
            problems.append((f"{where}.function.arguments", "expected a JSON object of arguments",
                             'write an object, e.g. "{\\"city\\": \\"Oslo\\"}"'))
    return problems


def tool_turn_problems(messages: list) -> list[Problem]:
    """Each `tool` turn answers a call: it follows an assistant turn with tool_calls, or another tool turn."""
    problems: list[Problem] = []
    previous = None
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            previous = None
            continue
        if message.get("role") == "tool":
            answers_call = previous is not None and (previous.get("role") == "tool" or (
                previous.get("role") == "assistant" and previous.get("tool_calls")))
            if not answers_call:
                problems.append((f"messages[{index}].role", "tool turn without a call before it",
                                 "put tool results right after the assistant turn whose tool_calls they answer"))
        previous = message
    return problems
