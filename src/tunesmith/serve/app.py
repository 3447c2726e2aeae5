"""The FastAPI application: OpenAI-compatible routes, the registry, the model pool and the job worker.

Run as: tunesmith serve --home ~/.tunesmith --base smollm2-135m-instruct --port 8000
"""
from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from tunesmith.estimate.estimate import current_rss_bytes
from tunesmith.models.load import inference_dtype
from tunesmith.registry.db import Database
from tunesmith.serve.batcher import BatchShares
from tunesmith.serve.batches import BatchRunner
from tunesmith.serve.classifier_pool import ClassifierPool
from tunesmith.serve.comparisons import Comparisons
from tunesmith.serve.errors import install_error_handlers
from tunesmith.serve.evals import EvalRunner
from tunesmith.serve.file_checks import FileChecks
from tunesmith.serve.gate import RequestGate
from tunesmith.serve.limits import KeyLimits
from tunesmith.serve.model_pool import ModelPool
from tunesmith.serve.routes import (batches, comparisons, completions, conversations, evals, export, files, graders,
                                    jobs, lineage, models, moderations, preflight, responses, ui)
from tunesmith.serve.settings import ServeSettings
from tunesmith.serve.worker import JobWorker


def open_registry(settings: ServeSettings) -> Database:
    settings.home.mkdir(parents=True, exist_ok=True)
    return Database(settings.database_path)


def create_app(settings: ServeSettings) -> FastAPI:
    db = open_registry(settings)
    worker = JobWorker(db, settings) if settings.run_jobs else None
    file_checks = FileChecks(db, settings.files_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        files.remove_staging_files(settings.files_dir)  # left by a server killed mid-upload
        file_checks.resume()  # files whose data check a stopped server did not finish
        app.state.batches.start()  # with the batches a stopped server did not finish
        app.state.evals.start()  # and the eval runs
        if worker is not None:
            worker.start()
        yield
        await app.state.batches.close()
        await app.state.evals.close()
        if worker is not None:
            worker.close()
        file_checks.close()

    # the OpenAPI schema is served to keys only (the gate checks /openapi.json); no public /docs pages
    app = FastAPI(title="tunesmith", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    shares = BatchShares(settings.batch_share_beside_chats, settings.chat_reserve)
    app.state.settings, app.state.db = settings, db
    app.state.pool = ModelPool(settings.max_loaded_models, inference_dtype(settings.bf16), shares)
    app.state.file_checks = file_checks
    app.state.classifiers = ClassifierPool(settings.max_loaded_models)
    app.state.comparisons = Comparisons(db, settings.home / "comparisons")
    app.state.runtime_bytes = current_rss_bytes()  # no model loaded yet: the cost estimate's runtime memory
    app.state.batches = BatchRunner(app, db, settings)
    app.state.evals = EvalRunner(app, db, settings)
    app.state.limits = KeyLimits(settings.max_concurrent_requests, settings.tokens_per_minute)
    install_error_handlers(app)
    app.add_middleware(RequestGate, max_request_bytes=settings.max_request_bytes,
                       max_upload_bytes=settings.max_upload_bytes)
    for module in (files, jobs, graders, lineage, export, models, completions, moderations, ui, preflight, comparisons,
                   batches, evals, responses, conversations):  # lineage, export before models' {id:path}
        app.include_router(module.router)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    return app


def run_server(settings: ServeSettings, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
