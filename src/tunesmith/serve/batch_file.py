"""The input file of a batch (OpenAI's Batch API): one request per line, checked line by line before it is stored.

Endpoints: chat completions, text completions, responses and moderations (a moderation model labelling a dataset).

Each line is `{"custom_id": "...", "method": "POST", "url": "/v1/chat/completions", "body": {...}}`: custom_id
names the request's answer in the output file (unique in the file), url is the endpoint every line of the file
targets, body is that endpoint's request with one `model` for the whole file (OpenAI's rules). What a body asks
for is checked when its request runs: a bad body fails that request alone, in the batch's error file.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.serve.moderation import ALIASES

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/moderations", "/v1/responses")
DEFAULT_MODELS = {"/v1/moderations": ALIASES[0]}  # a body that names no model gets OpenAI's default there
MAX_REQUESTS = 50_000  # OpenAI's limit per batch
LINE_KEYS = {"custom_id", "method", "url", "body"}


@dataclass
class BatchInput:
    requests: int = 0
    endpoint: str | None = None  # the url every line names (None: no line got that far)
    model: str | None = None
    errors: list[dict] = field(default_factory=list)  # {line, field, message}: OpenAI's batch errors carry the line


def read_requests(path: Path) -> list[dict]:
    """The request of each non-blank line; the file has been checked (check_batch_input)."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def check_batch_input(path: Path) -> BatchInput:
    found = BatchInput()
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                found.requests += 1
                for name, message in line_errors(line, number, seen, found):
                    found.errors.append({"line": number, "field": name, "message": message})
    if not found.requests:
        found.errors.append({"line": 0, "field": "file", "message": "the file has no requests: write one JSON "
                             "object per line, {custom_id, method, url, body}"})
    elif found.requests > MAX_REQUESTS:
        found.errors.append({"line": 0, "field": "file", "message": f"{found.requests} requests; a batch takes at "
                             f"most {MAX_REQUESTS}: split the file"})
    return found


def line_errors(line: str, number: int, seen: dict[str, int], found: BatchInput) -> list[tuple[str, str]]:
    """(field, message) for what is wrong with one line; records its custom_id, url and model in seen / found."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        return [("line", f"not valid JSON ({error.msg} at column {error.colno})")]
    if not isinstance(row, dict):
        return [("line", "each line is a JSON object: {custom_id, method, url, body}")]
    errors = [(key, f"unknown key; a line has only {', '.join(sorted(LINE_KEYS))}") for key in row if key not in LINE_KEYS]
    custom_id = row.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        errors.append(("custom_id", "missing: a non-empty string that names this request's answer"))
    elif custom_id in seen:
        errors.append(("custom_id", f"{custom_id!r} is also the custom_id of line {seen[custom_id]}; each must be unique"))
    else:
        seen[custom_id] = number
    if row.get("method") != "POST":
        errors.append(("method", f"{row.get('method')!r}: the method is POST"))
    url = row.get("url")
    if url not in ENDPOINTS:
        errors.append(("url", f"{url!r}: the endpoint is one of {', '.join(ENDPOINTS)}"))
    elif found.endpoint is None:
        found.endpoint = url
    elif url != found.endpoint:
        errors.append(("url", f"{url}: the file's earlier lines name {found.endpoint}; a batch's requests all go to "
                              "one endpoint"))
    body = row.get("body")
    if not isinstance(body, dict):
        return errors + [("body", "missing: the endpoint's request as a JSON object")]
    model = body.get("model", DEFAULT_MODELS.get(url))
    if not isinstance(model, str) or not model:
        errors.append(("body.model", "missing: the model that answers"))
    elif found.model is None:
        found.model = model
    elif model != found.model:
        errors.append(("body.model", f"{model}: the file's earlier lines name {found.model}; a batch's requests all "
                                     "go to one model"))
    if body.get("stream"):
        errors.append(("body.stream", "a batch's answers are written to its output file: leave stream out"))
    return errors
