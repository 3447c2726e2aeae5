"""The templates in graders' `input` and `reference`: "{{ sample.output_text }}", "{{ item.answer }}",
"{{ sample.output_json.score }}".

jinja2 in its sandbox (no attribute starting with _, no unsafe callables), strict: a field the item lacks is an
error naming its path (`item.meta.lang`, `item.choices[3]`), never an empty string that would silently score.
Namespaces: `sample` (`output_text`: the model's answer; `output_json`: that answer parsed as JSON, or null when
it is not valid JSON) and `item` (the dataset row). Values that are not strings render as Python's str() — 3 as
"3", true as "True", an object as "{'a': 1}" — so give string checks strings in the items they read. As in jinja,
`item.x` finds a dict's method before its key for names like `items` or `keys`: write `item["items"]` for those.
"""
from __future__ import annotations

import json
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, Template, UndefinedError
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import missing


class MissingField(UndefinedError):
    def __init__(self, path: str):
        super().__init__(path)
        self.path = path


class PathDict(dict):
    """A dict of the data that knows where it sits (`item.meta`), so a missing key can be named in full."""
    __slots__ = ("_field_path",)


class PathList(list):
    __slots__ = ("_field_path",)


class NamedUndefined(StrictUndefined):
    """StrictUndefined that raises MissingField with the full path where the container's path is known."""
    __slots__ = ()

    def __init__(self, hint=None, obj=missing, name=None, exc=UndefinedError):
        parent = getattr(obj, "_field_path", None)
        if hint is None and parent is not None and name is not None:
            hint, exc = (f"{parent}[{name}]" if isinstance(name, int) else f"{parent}.{name}"), MissingField
        super().__init__(hint, obj, name, exc)


ENVIRONMENT = SandboxedEnvironment(undefined=NamedUndefined, autoescape=False, keep_trailing_newline=True)


def compile_template(text: str) -> Template:
    """jinja2's TemplateSyntaxError where the text does not parse."""
    return ENVIRONMENT.from_string(text)


def with_paths(value: Any, path: str) -> Any:
    if isinstance(value, dict):
        traced = PathDict({key: with_paths(inner, f"{path}.{key}") for key, inner in value.items()})
    elif isinstance(value, list):
        traced = PathList(with_paths(inner, f"{path}[{index}]") for index, inner in enumerate(value))
    else:
        return value
    traced._field_path = path
    return traced


def sample_namespace(sample_text: str) -> dict:
    """What `sample` holds for an answer, as OpenAI fills it: its text, and its JSON where the text is valid JSON."""
    return {"output_text": sample_text, "output_json": parsed_json(sample_text)}


def parsed_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def render(template: Template, sample: dict, item: dict) -> str:
    """The template's text; MissingField naming a field it read and the data lack, or another jinja2 error."""
    return template.render(sample=with_paths(sample, "sample"), item=with_paths(item, "item"))


def render_for_check(template: Template, item: dict) -> str:
    """Render with a sample whose every field exists (an empty answer, JSON that answers any path): only the
    item's fields can be missing."""
    return template.render(sample={"output_text": "", "output_json": ChainableUndefined()},
                           item=with_paths(item, "item"))


def failure_message(field: str, exc: Exception) -> str:
    """A sample's error for a template (in `field`) that failed to render."""
    if isinstance(exc, MissingField) and exc.path.startswith("item"):
        return f"{field} reads {exc.path}, which this item lacks — add it to every row, or change the template"
    if isinstance(exc, MissingField):
        return f"{field} reads {exc.path}, which this sample lacks"
    hint = " (sample.output_json is null unless the answer is valid JSON)" if "'None' has no attribute" in str(exc) else ""
    return f"{field}: the template failed: {exc}{hint}"
