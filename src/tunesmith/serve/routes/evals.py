"""/v1/evals (OpenAI's Evals API): evals with testing criteria, runs that grade a model's answers (or given ones)
in the background, and each run's output items — so `client.evals` proves a fine-tune's gain over its base
through the official client: one eval, a run per model, the two runs' result_counts side by side.

An eval's data source is `custom` (its item_schema); its criteria are string_check, text_similarity, python,
label_model and score_model graders (evaluate/testing_criteria.py; a model grader's judge is one of the key's
models, serve/judge.py). A run's data source is `completions` or `responses` (the key's model asked for each row
through that API, serve/evals.py) or `jsonl` (rows that carry their sample); its rows come inline or from a file uploaded with purpose
`evals`. Everything a run will need is checked when it is created — each row against the item_schema, the
templates against each row, the model, the sampling parameters — so a bad row is a 400 naming it, not a run that
fails half way.
"""
from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from tunesmith.evaluate.eval_data import (EvalDataError, EvalRow, InputMessages, check_item_schema, check_items,
                                          data_source_schema, rows_from_content, rows_from_file)
from tunesmith.evaluate.testing_criteria import Criterion, parse_criteria
from tunesmith.registry import evals, files
from tunesmith.registry.evals import RUN_STATUSES, UNFINISHED, Eval, EvalRun, OutputItem
from tunesmith.serve.auth import api_key
from tunesmith.serve.errors import APIError, invalid_value, not_found
from tunesmith.serve.responses import chat_response_format, chat_tools
from tunesmith.serve.routes.completions import ChatRequest
from tunesmith.serve.routes.models import served_model_ref
from tunesmith.serve.shapes import list_object
from tunesmith.train import grader_templates as templates
from tunesmith.train.grader_specs import GraderError
from tunesmith.train.graders import check_templates, uses_python
from tunesmith.train.model_graders import uses_models

router = APIRouter(prefix="/v1/evals")
Metadata = dict[str, str] | None


class EvalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    data_source_config: dict[str, Any]
    testing_criteria: list[Any]
    metadata: Metadata = Field(None, max_length=16)


class EvalUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    metadata: Metadata = Field(None, max_length=16)


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    data_source: dict[str, Any]
    metadata: Metadata = Field(None, max_length=16)


def eval_object(found: Eval) -> dict:
    config = found.data_source_config
    return {"object": "eval", "id": found.id, "name": found.name, "created_at": found.created_at,
            "metadata": found.metadata, "testing_criteria": found.testing_criteria,
            "data_source_config": {"type": "custom", "schema": data_source_schema(
                config["item_schema"], bool(config.get("include_sample_schema")))}}


def run_object(run: EvalRun) -> dict:
    return {"object": "eval.run", "id": run.id, "eval_id": run.eval_id, "name": run.name, "model": run.model,
            "status": run.status, "created_at": run.created_at, "data_source": run.data_source,
            "metadata": run.metadata, "error": run.error, "result_counts": run.result_counts,
            "per_testing_criteria_results": run.per_criteria, "per_model_usage": run.per_model_usage,
            "report_url": f"/v1/evals/{run.eval_id}/runs/{run.id}/output_items"}


def item_object(item: OutputItem) -> dict:
    return {"object": "eval.run.output_item", "id": item.id, "run_id": item.run_id, "eval_id": item.eval_id,
            "created_at": item.created_at, "status": item.status, "datasource_item_id": item.item_index,
            "datasource_item": item.item, "results": item.results, "sample": item.sample}


def invalid(error: GraderError | EvalDataError) -> APIError:
    param = error.path if isinstance(error, GraderError) else error.param
    return APIError(400, str(error), param=param, code="invalid_value")


def checked_criteria(request: Request, key: str, specs: list) -> list[Criterion]:
    """Parsed; python graders only where the operator allows them; a model grader's judge one of the key's models."""
    try:
        criteria = parse_criteria(specs)
    except GraderError as error:
        raise invalid(error) from None
    for index, criterion in enumerate(criteria):
        for model in uses_models(criterion.grader):
            try:
                served_model_ref(request, key, model)
            except APIError as error:
                error.param = f"testing_criteria[{index}].model"
                raise
        if uses_python(criterion.grader) and not request.app.state.settings.allow_python_graders:
            raise APIError(400, f"testing_criteria[{index}]: python graders run the caller's code on the server, and "
                                "this server does not allow it — grade with string_check or text_similarity, or ask "
                                "the operator to start it with `tunesmith serve --allow-python-graders`.",
                           param=f"testing_criteria[{index}]", code="python_graders_disabled")
    return criteria


def checked_config(config: dict) -> dict:
    kind = config.get("type")
    if kind in ("logs", "stored_completions"):
        raise APIError(400, f"data_source_config.type: tunesmith keeps no {kind.replace('_', ' ')} to evaluate — "
                            "describe your rows with {\"type\": \"custom\", \"item_schema\": {...}}.",
                       param="data_source_config.type", code="invalid_value")
    if kind != "custom":
        raise APIError(400, "data_source_config.type: custom (with item_schema)", param="data_source_config.type",
                       code="invalid_value")
    unknown = set(config) - {"type", "item_schema", "include_sample_schema"}
    if unknown:
        raise APIError(400, f"data_source_config: unknown field(s) {', '.join(sorted(unknown))} — a custom data source "
                            "has item_schema and include_sample_schema", param="data_source_config", code="invalid_value")
    try:
        check_item_schema(config.get("item_schema"))
    except EvalDataError as error:
        raise invalid(error) from None
    return {"type": "custom", "item_schema": config["item_schema"],
            "include_sample_schema": bool(config.get("include_sample_schema", False))}


@router.post("")
def create_eval(request: Request, body: EvalCreate, key: str = Depends(api_key)):
    config = checked_config(body.data_source_config)
    criteria = checked_criteria(request, key, body.testing_criteria)
    found = evals.create_eval(request.app.state.db, key, body.name or "eval", config,
                              [criterion.spec() for criterion in criteria], body.metadata)
    return eval_object(found)


@router.get("")
def list_evals(request: Request, after: str | None = None, limit: int = 20, order: Literal["asc", "desc"] = "asc",
               order_by: Literal["created_at", "updated_at"] = "created_at", key: str = Depends(api_key)):
    """updated_at orders as created_at: an eval's update changes only its name and metadata."""
    found, more = evals.list_evals(request.app.state.db, key, after, max(1, min(limit, 100)), order == "desc")
    return list_object([eval_object(e) for e in found], more)


def owned_eval(request: Request, key: str, eval_id: str) -> Eval:
    found = evals.get_eval(request.app.state.db, key, eval_id)
    if found is None:
        raise not_found("eval", eval_id, param="eval_id")
    return found


@router.get("/{eval_id}")
def retrieve_eval(request: Request, eval_id: str, key: str = Depends(api_key)):
    return eval_object(owned_eval(request, key, eval_id))


@router.post("/{eval_id}")
def update_eval(request: Request, eval_id: str, body: EvalUpdate, key: str = Depends(api_key)):
    found = owned_eval(request, key, eval_id)
    return eval_object(evals.update_eval(request.app.state.db, found, body.name, body.metadata))


@router.delete("/{eval_id}")
def delete_eval(request: Request, eval_id: str, key: str = Depends(api_key)):
    found = owned_eval(request, key, eval_id)
    for run_id in evals.delete_eval(request.app.state.db, found):
        request.app.state.evals.notify(cancelled=run_id)  # stops at its next row
    return {"object": "eval.deleted", "deleted": True, "eval_id": eval_id}


def source_rows(request: Request, key: str, source: dict) -> list[EvalRow]:
    kind = source.get("type")
    if kind == "file_content":
        content = source.get("content")
        if not isinstance(content, list) or not content:
            raise APIError(400, "data_source.source.content: give a list of rows, each {\"item\": {...}}",
                           param="data_source.source.content", code="invalid_value")
        return rows_from_content(content)
    if kind == "file_id":
        record = files.get_file(request.app.state.db, key, str(source.get("id")))
        if record is None:
            raise not_found("file", str(source.get("id")), param="data_source.source.id")
        if record.purpose != "evals":
            raise APIError(400, f"File {record.id} was uploaded with purpose {record.purpose!r}; an eval run's rows are "
                                "uploaded with purpose 'evals'.", param="data_source.source.id", code="invalid_value")
        return rows_from_file(files.blob_path(request.app.state.settings.files_dir, record.id, record.filename),
                              record.filename)
    if kind in ("stored_completions", "responses"):
        raise APIError(400, f"data_source.source.type: tunesmith keeps no {kind.replace('_', ' ')} — give the rows as "
                            "file_content or file_id", param="data_source.source.type", code="invalid_value")
    raise APIError(400, "data_source.source.type: file_content or file_id", param="data_source.source.type",
                   code="invalid_value")


COMPLETIONS_SAMPLING = {"max_completion_tokens", "temperature", "top_p", "seed", "response_format", "tools"}
RESPONSES_SAMPLING = {"max_completion_tokens", "temperature", "top_p", "text", "tools"}


def as_chat_sampling(kind: str, params: dict) -> dict:
    """A run's sampling parameters as a chat request takes them (a responses run's `text` and flat tools)."""
    if kind == "completions":
        return params
    chat = {name: params[name] for name in ("max_completion_tokens", "temperature", "top_p") if name in params}
    return {**chat, "tools": chat_tools(params.get("tools")), "response_format": chat_response_format(params.get("text"))}


def check_sampling(kind: str, model: str, params: object) -> dict:
    """The sampling parameters, checked by the chat route's own request model."""
    if not isinstance(params, dict):
        raise APIError(400, "data_source.sampling_params: an object", param="data_source.sampling_params",
                       code="invalid_value")
    if params.get("reasoning_effort") is not None:
        raise APIError(400, "data_source.sampling_params.reasoning_effort: tunesmith's models do not reason before "
                            "answering — leave it out", param="data_source.sampling_params.reasoning_effort",
                       code="invalid_value")
    params = {name: value for name, value in params.items() if name != "reasoning_effort"}
    known = COMPLETIONS_SAMPLING if kind == "completions" else RESPONSES_SAMPLING
    if unknown := set(params) - known:
        hint = " (a responses run takes no seed: run completions for seeded sampling)" if "seed" in unknown else ""
        raise APIError(400, f"data_source.sampling_params: unknown {', '.join(sorted(unknown))} — the parameters are "
                            f"{', '.join(sorted(known))}{hint}", param="data_source.sampling_params",
                       code="invalid_value")
    try:
        ChatRequest.model_validate({"model": model, "messages": [{"role": "user", "content": "."}],
                                    **as_chat_sampling(kind, params)})
    except ValidationError as error:
        failure = invalid_value(error.errors())
        failure.param = f"data_source.sampling_params.{failure.param}" if failure.param else "data_source.sampling_params"
        raise failure from None
    return params


def checked_run_source(request: Request, key: str, found: Eval, criteria: list[Criterion], source: dict) -> tuple[dict, list[EvalRow], str]:
    """The run's data source as it will run, its rows, and the model it asks ("" for given answers)."""
    kind = source.get("type")
    if kind not in ("jsonl", "completions", "responses"):
        raise APIError(400, "data_source.type: jsonl (rows with their samples), completions or responses (a model "
                            "asked for each row through that API)", param="data_source.type", code="invalid_value")
    rows = source_rows(request, key, source.get("source") or {})
    where = "data_source.source.content" if source["source"]["type"] == "file_content" else "rows"
    check_items(rows, found.data_source_config["item_schema"], where)
    model, checked = "", {"type": kind, "source": source["source"]}
    if kind == "jsonl":
        if missing := [row.index for row in rows if row.sample is None]:
            raise EvalDataError("data_source.source", f"{where}{missing[:10]}: a jsonl run grades the answers its rows "
                                "carry, and these rows have no \"sample\" — add {\"sample\": {\"output_text\": ...}}, or "
                                "run {\"type\": \"completions\", \"model\": ...} to ask a model")
    else:
        model = source.get("model")
        if not isinstance(model, str) or not model:
            raise APIError(400, "data_source.model: the model asked for each row", param="data_source.model",
                           code="invalid_value")
        try:
            served_model_ref(request, key, model)
        except APIError as error:
            error.param = "data_source.model"
            raise
        messages_spec = source.get("input_messages") or {"type": "item_reference", "item_reference": "item.input"}
        messages = InputMessages(messages_spec)
        problems = []
        for row in rows:
            try:
                messages.messages(row.item)
            except (templates.MissingField, ValueError) as error:
                problems.append(f"{where}[{row.index}]: input_messages read "
                                f"{getattr(error, 'path', None) or error}, which this row lacks")
        if problems:
            raise EvalDataError("data_source.input_messages", "; ".join(problems[:10]))
        checked.update(model=model, input_messages=messages_spec,
                       sampling_params=check_sampling(kind, model, source.get("sampling_params") or {}))
    for criterion in criteria:
        for row in rows:
            if (missing := check_templates(criterion.grader, row.item)) is not None:
                raise EvalDataError("data_source.source", f"{where}[{row.index}]: testing criterion "
                                    f"{criterion.name!r} {missing}")
    return checked, rows, model


@router.post("/{eval_id}/runs")
async def create_run(request: Request, eval_id: str, body: RunCreate, key: str = Depends(api_key)):
    run = await run_in_threadpool(created_run, request, key, eval_id, body)
    request.app.state.evals.notify()
    return run_object(run)


def created_run(request: Request, key: str, eval_id: str, body: RunCreate) -> EvalRun:
    found = owned_eval(request, key, eval_id)
    criteria = checked_criteria(request, key, found.testing_criteria)
    try:
        source, rows, model = checked_run_source(request, key, found, criteria, body.data_source)
    except EvalDataError as error:
        raise invalid(error) from None
    return evals.create_run(request.app.state.db, found, body.name or (model or "given answers"), model, source,
                            body.metadata, len(rows))


@router.get("/{eval_id}/runs")
def list_runs(request: Request, eval_id: str, after: str | None = None, limit: int = 20,
              order: Literal["asc", "desc"] = "asc", status: Literal[RUN_STATUSES] | None = None,  # type: ignore[valid-type]
              key: str = Depends(api_key)):
    owned_eval(request, key, eval_id)
    found, more = evals.list_runs(request.app.state.db, key, eval_id, status, after, max(1, min(limit, 100)),
                                  order == "desc")
    return list_object([run_object(run) for run in found], more)


def owned_run(request: Request, key: str, eval_id: str, run_id: str) -> EvalRun:
    run = evals.get_run(request.app.state.db, key, eval_id, run_id)
    if run is None:
        raise not_found("eval run", run_id, param="run_id")
    return run


@router.get("/{eval_id}/runs/{run_id}")
def retrieve_run(request: Request, eval_id: str, run_id: str, key: str = Depends(api_key)):
    return run_object(owned_run(request, key, eval_id, run_id))


@router.post("/{eval_id}/runs/{run_id}")
@router.post("/{eval_id}/runs/{run_id}/cancel")
def cancel_run(request: Request, eval_id: str, run_id: str, key: str = Depends(api_key)):
    """Canceled at once; rows already being answered finish, and the rows graded stay in its output items."""
    run = owned_run(request, key, eval_id, run_id)
    if not evals.move_run(request.app.state.db, run, "canceled"):
        raise APIError(409, f"Eval run {run_id} is {owned_run(request, key, eval_id, run_id).status}: only a queued "
                            "or in_progress run can be canceled.", param="run_id", code="invalid_state")
    request.app.state.evals.notify(cancelled=run.id)
    return run_object(run)


@router.delete("/{eval_id}/runs/{run_id}")
def delete_run(request: Request, eval_id: str, run_id: str, key: str = Depends(api_key)):
    run = owned_run(request, key, eval_id, run_id)
    evals.delete_run(request.app.state.db, run)
    if run.status in UNFINISHED:
        request.app.state.evals.notify(cancelled=run.id)
    return {"object": "eval.run.deleted", "deleted": True, "run_id": run_id}


@router.get("/{eval_id}/runs/{run_id}/output_items")
def list_output_items(request: Request, eval_id: str, run_id: str, after: str | None = None, limit: int = 20,
                      order: Literal["asc", "desc"] = "asc", status: Literal["pass", "fail", "error"] | None = None,
                      key: str = Depends(api_key)):
    owned_run(request, key, eval_id, run_id)
    found, more = evals.list_items(request.app.state.db, key, run_id, status, after, max(1, min(limit, 100)),
                                   order == "desc")
    return list_object([item_object(item) for item in found], more)


@router.get("/{eval_id}/runs/{run_id}/output_items/{item_id}")
def retrieve_output_item(request: Request, eval_id: str, run_id: str, item_id: str, key: str = Depends(api_key)):
    owned_run(request, key, eval_id, run_id)
    item = evals.get_item(request.app.state.db, key, run_id, item_id)
    if item is None:
        raise not_found("output item", item_id, param="output_item_id")
    return item_object(item)
