"""/v1/fine_tuning/alpha/graders/validate and /run: OpenAI's grader endpoints over train/graders.py.

validate answers `{"grader": normalized JSON}` (a multi grader's `graders` always as a map name -> grader); run
grades one `model_sample` against one `item` and answers OpenAI's GraderRunResponse. A bad grader is a 400 whose
`param` is the field path (grader.graders.exact.operation). A grading failure is not an error response: reward
0.0 and a flag in metadata.errors — invalid_variable_error (a template reads a field the item or sample lacks),
python_grader_runtime_error with its details (grade raised), python_grader_server_error with its type (timeout,
exited), other_error (calculate_output failed for these rewards: a division by zero, log of 0).

A python grader runs the caller's code on this host (train/python_grader.py: a subprocess, not a sandbox), so
/run refuses it unless the operator started the server with --allow-python-graders; validate only compiles it.
A score_model or label_model grader's judge is one of the key's models: /run asks it through the chat route
(serve/judge.py), a reinforcement job loads it beside the model it trains (train/local_judge.py).
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from tunesmith.registry.keys import ApiKey
from tunesmith.serve.auth import calling_key
from tunesmith.serve.errors import APIError
from tunesmith.serve.judge import ServedJudge, graded
from tunesmith.serve.routes.models import served_model_ref
from tunesmith.train.graders import Grade, Grader, GraderError, parse_grader, uses_python
from tunesmith.train.model_graders import ModelGrader, uses_models, with_judge

router = APIRouter(prefix="/v1/fine_tuning/alpha/graders")

ERROR_FLAGS = ("formula_parse_error", "invalid_variable_error", "model_grader_parse_error",
               "model_grader_refusal_error", "model_grader_server_error", "other_error", "python_grader_runtime_error",
               "python_grader_server_error", "sample_parse_error", "truncated_observation_error",
               "unresponsive_reward_error")
FLAG_OF_ERROR = {"template": "invalid_variable_error", "formula": "other_error",
                 "python_runtime": "python_grader_runtime_error", "python_timeout": "python_grader_server_error",
                 "python_exited": "python_grader_server_error", "model_server": "model_grader_server_error",
                 "model_parse": "model_grader_parse_error"}


class ValidateRequest(BaseModel):
    grader: dict[str, Any]


class RunRequest(BaseModel):
    grader: dict[str, Any]
    model_sample: str = Field(description="The answer graded: `sample.output_text` (and `output_json` if it is JSON).")
    item: dict[str, Any] = Field(default_factory=dict, description="The dataset row: the `item` namespace.")


def api_grader(spec: dict, where: str, allow_python: bool, request: Request, key: str) -> Grader:
    """A grader from a request body, parsed: a bad one is a 400 whose `param` is the field path. A python grader runs
    the caller's code on this host, so it is a 400 too unless `allow_python` (the operator's
    --allow-python-graders, for what will run it: /run, a reinforcement job). A model grader's judge must be one of
    the key's models (404 otherwise)."""
    try:
        grader = parse_grader(spec, where)
    except GraderError as exc:
        raise APIError(400, str(exc), param=exc.path, code="invalid_value") from None
    for model in uses_models(grader):
        try:
            served_model_ref(request, key, model)
        except APIError as error:
            error.param = f"{where}.model" if isinstance(grader, ModelGrader) else where
            raise
    if uses_python(grader) and not allow_python:
        raise APIError(400, f"{where}: python graders run the caller's code on the server, and this server does not "
                            "allow it — grade with string_check, text_similarity or multi, or ask the operator to start "
                            "it with `tunesmith serve --allow-python-graders`.", param=where,
                       code="python_graders_disabled")
    return grader


@router.post("/validate")
def validate_grader(request: Request, body: ValidateRequest, calling: ApiKey = Depends(calling_key)) -> dict:
    return {"grader": api_grader(body.grader, "grader", True, request, calling.id).spec()}  # compiled, never run


@router.post("/run")
async def run_grader(request: Request, body: RunRequest, calling: ApiKey = Depends(calling_key)) -> dict:
    """Counts against the key's requests in flight (serve/limits.py), like a moderation. Grades in the grading pool
    (serve/judge.py): a model grader's judge answers through the chat route."""
    grader = await run_in_threadpool(api_grader, body.grader, "grader", request.app.state.settings.allow_python_graders,
                                     request, calling.id)
    grader = with_judge(grader, ServedJudge(request, calling.id, asyncio.get_running_loop()))
    reservation = request.app.state.limits.admit(calling, 0)
    try:
        started = time.perf_counter()
        grade = await graded(grader.grade, body.model_sample, body.item)
        elapsed = time.perf_counter() - started
    finally:
        reservation.release()
    return run_response(grader, grade, elapsed)


def run_response(grader: Grader, grade: Grade, execution_time: float) -> dict:
    """OpenAI's GraderRunResponse for one grade."""
    errors: dict[str, Any] = dict.fromkeys(ERROR_FLAGS, False)
    errors.update(model_grader_server_error_details=None, python_grader_runtime_error_details=None,
                  python_grader_server_error_type=None)
    if grade.error is not None:
        errors[FLAG_OF_ERROR.get(grade.error_type, "other_error")] = True
        if grade.error_type == "python_runtime":
            errors["python_grader_runtime_error_details"] = grade.error
        elif grade.error_type in ("python_timeout", "python_exited"):
            errors["python_grader_server_error_type"] = grade.error_type.removeprefix("python_")
        elif grade.error_type == "model_server":
            errors["model_grader_server_error_details"] = grade.error
    judge = grade.judge or {}
    metadata = {"name": grader.name, "type": grader.type, "errors": errors, "execution_time": execution_time,
                "scores": dict(grade.sub_rewards), "token_usage": (judge.get("usage") or {}).get("total_tokens"),
                "sampled_model_name": judge.get("model")}
    usage = {judge["model"]: judge["usage"]} if judge.get("usage") else {}
    return {"reward": grade.reward, "sub_rewards": dict(grade.sub_rewards), "metadata": metadata,
            "model_grader_token_usage_per_model": usage}
