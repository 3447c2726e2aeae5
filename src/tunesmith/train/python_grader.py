"""The python grader's runner: the user's `grade(sample, item) -> float` over a whole batch in one subprocess.

`python -I` (isolated: no user site-packages, no PYTHON* variables, no current directory on sys.path) in a new
empty directory and its own process group, fed `{"source", "samples": [[sample, item], ...]}` as JSON on stdin; it
answers one JSON list, `{"reward": float}` or `{"error": str}` per sample. The grader's own prints go to stderr so
they cannot corrupt the answer. A batch that outlives its timeout is killed with its whole process group, and every
sample of it gets the timeout as its error. This is isolation from the caller, not a sandbox: the code runs with the
server's user and files, which is why the API runs python graders only where the operator allows them.
"""
from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

SOURCE_NAME = "<grader source>"

RUNNER = r'''
import json, math, numbers, sys, traceback
answer, sys.stdout = sys.stdout, sys.stderr
request = json.load(sys.stdin)

def described(exc):
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == "<grader source>"]
    where = f" (line {lines[-1]} of the source)" if lines else ""
    return "".join(traceback.format_exception_only(type(exc), exc)).strip() + where

def graded(grade, sample, item):
    try:
        value = grade(sample, item)
        if not isinstance(value, numbers.Real):
            return {"error": f"grade returned {type(value).__name__}, not a number: return a float"}
        if not math.isfinite(float(value)):
            return {"error": f"grade returned {float(value)}: return a finite number"}
        return {"reward": float(value)}
    except BaseException as exc:
        return {"error": described(exc)}

namespace = {"__name__": "grader"}
try:
    exec(compile(request["source"], "<grader source>", "exec"), namespace)
    results = [graded(namespace["grade"], sample, item) for sample, item in request["samples"]]
except BaseException as exc:
    results = [{"error": "the source failed to load: " + described(exc)}] * len(request["samples"])
json.dump(results, answer)
'''


@dataclass
class PythonResult:
    reward: float | None
    error: str | None = None
    server_error: str | None = None  # "timeout" or "exited": the batch failed as a whole (OpenAI's python_grader_server_error)


def check_source(source: str) -> str | None:
    """What is wrong with the source, or None: it must compile (without running it) and define grade(sample, item)."""
    try:
        tree = ast.parse(source, SOURCE_NAME)
        compile(tree, SOURCE_NAME, "exec")
    except SyntaxError as exc:
        return f"does not compile: {exc.msg} (line {exc.lineno}) — fix the source"
    except (ValueError, RecursionError, MemoryError) as exc:
        return f"does not compile: {exc} — fix the source"
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "grade":
            takes = len(node.args.posonlyargs) + len(node.args.args)
            if takes < 2 and node.args.vararg is None:
                return f"grade takes {takes} argument(s) — define grade(sample, item), it is called with both"
            return None
        if isinstance(node, (ast.Assign, ast.Import, ast.ImportFrom)) and defines_name(node, "grade"):
            return None
    return "defines no top-level grade — add `def grade(sample, item) -> float:`"


def defines_name(node: ast.Assign | ast.Import | ast.ImportFrom, name: str) -> bool:
    if isinstance(node, ast.Assign):
        return any(isinstance(target, ast.Name) and target.id == name for target in node.targets)
    return any((alias.asname or alias.name) == name for alias in node.names)


def run_python_grader(source: str, samples: list[dict], items: list[dict], timeout_s: float) -> list[PythonResult]:
    """grade(sample, item) for each pair, all in one subprocess."""
    if not samples:
        return []
    request = json.dumps({"source": source, "samples": [[s, i] for s, i in zip(samples, items)]}, default=str)
    with tempfile.TemporaryDirectory(prefix="tunesmith-grader-") as directory:
        process = subprocess.Popen([sys.executable, "-I", "-c", RUNNER], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=directory,
                                   start_new_session=True)  # its own process group: a timeout kills its children too
        try:
            out, err = process.communicate(request.encode(), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            return failed(len(samples), "timeout", f"the python grader ran past its {timeout_s:g} s limit for a batch of "
                                        f"{len(samples)} — make grade faster")
    try:
        answers = json.loads(out)
        if not isinstance(answers, list) or len(answers) != len(samples):
            raise ValueError
    except ValueError:
        tail = err.decode(errors="replace").strip()[-500:]
        return failed(len(samples), "exited", f"the python grader's process exited with code {process.returncode} without "
                                    f"an answer" + (f": {tail}" if tail else ""))
    return [PythonResult(answer.get("reward"), answer.get("error")) for answer in answers]


def failed(count: int, kind: str, message: str) -> list[PythonResult]:
    return [PythonResult(None, message, server_error=kind) for _ in range(count)]
