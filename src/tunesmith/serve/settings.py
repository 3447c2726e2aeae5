"""Server settings: where state lives, which base models are served, limits."""
from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from tunesmith.models.resolve import DEFAULT_BASE, EMBEDDED_MODELS
from tunesmith.registry.guards import Guard


HOME_VARIABLE = "TUNESMITH_HOME"


def default_home() -> Path:
    """The home a command without --home keeps its state in (the audit log of CLI training and erasure):
    $TUNESMITH_HOME, else ~/.tunesmith, the directory the README serves from."""
    return Path(os.environ.get(HOME_VARIABLE) or Path.home() / ".tunesmith").expanduser()


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    home: Path = Field(description="Holds the database (unless `database` is set), uploaded files and job runs.")
    database: Path | None = Field(None, description="SQLite file; None = HOME/tunesmith.sqlite.")
    bases: list[str] = Field([DEFAULT_BASE], description="Base models served and fine-tunable: embedded name, local HF dir or hub id.")
    max_upload_bytes: int = Field(512 * 1024 * 1024, ge=1, description="Uploads larger than this get 413.")
    max_row_bytes: int = Field(8 * 1024 * 1024, ge=1, description="An uploaded line longer than this is refused "
                               "(400, by line) before the data check loads the file.")
    max_request_bytes: int = Field(4 * 1024 * 1024, ge=1, description="Any other request body larger than this "
                                   "gets 413 (checked as it arrives, before it is parsed).")
    max_concurrent_requests: int = Field(16, ge=1, description="Completions one key may have in flight at once "
                                         "(a key's own limit, tunesmith keys limits, overrides it); more get 429.")
    tokens_per_minute: int | None = Field(None, ge=1, description="Tokens (prompt + max_tokens × n) one key may "
                                          "request per sliding minute; more get 429 with Retry-After. None = no limit.")
    max_queued_jobs: int = Field(16, ge=1, description="Fine-tuning jobs one key may have waiting or running; "
                                 "more get 429.")
    max_job_seconds: float | None = Field(24 * 3600, gt=0, description="A fine-tuning job running longer than "
                                          "this (since it last started) is stopped and failed (time_limit_exceeded). "
                                          "None = no limit.")
    checkpoint_every: int = Field(50, ge=1, description="Optimizer steps between a job's checkpoints (and at the end).")
    batch_concurrency: int = Field(64, ge=1, description="Requests of batches (/v1/batches) generating at once, "
                                   "every key's running batch together (likewise the rows of eval runs): they decode "
                                   "in the same running batch as the API's other requests.")
    batch_share_beside_chats: float = Field(0.25, gt=0, le=1, description="While chats (interactive requests) run or "
                                            "wait, requests of batches and eval runs hold at most this share of a "
                                            "model's rows; rows already decoding finish (serve/batcher.py).")
    chat_reserve: float = Field(0.125, gt=0, lt=1, description="Share of a model's rows (one at least) that requests "
                                "of batches and eval runs never take, so a chat arriving during a batch starts at the "
                                "next decoding step.")
    default_max_tokens: int = Field(256, ge=1, description="Completion length when a request sets none.")
    bf16: bool | None = Field(None, description="Generation models' weights in bf16, cast once at load (half the "
                              "bytes each decoding step reads); None = where the hardware has bf16 matmuls "
                              "(AVX512-BF16 or AMX CPUs, bf16 GPUs). Greedy answers may differ from float32's.")
    max_loaded_models: int = Field(4, ge=1, description="Models kept in memory for inference (least recently used is dropped).")
    run_jobs: bool = Field(True, description="Start the job worker with the server (tests of the API alone turn it off).")
    poll_seconds: float = Field(0.5, gt=0, description="How often the job worker looks at the queue and at a running job.")
    retention_days: float | None = Field(None, gt=0, description="Uploaded files, fine-tuned models and failed jobs' runs older than this are deleted by the worker (audited as `retention`); None = kept until deleted.")
    moderation_model: Path | None = Field(None, description="Classifier directory served as omni-moderation-latest "
                                          "(and text-moderation-latest): the default moderation model.")
    guard: Guard | None = Field(None, description="Screens every served model for every key that no registry guard "
                                "(tunesmith guard set) covers; None = only registry guards screen.")
    screen_every_chars: int = Field(200, ge=1, description="A guarded answer is screened at each sentence end and at "
                                    "least every this many characters; text reaches the client only once screened.")
    audit_flagged_text: bool = Field(False, description="Write the flagged text itself into the audit log "
                                     "(by default a flag records only its categories and scores).")
    allow_python_graders: bool = Field(False, description="Accept python graders in /v1/fine_tuning/alpha/graders/run and in "
                                       "reinforcement jobs: the caller's code, in a subprocess with the server's user and files.")

    @property
    def database_path(self) -> Path:
        return self.database or self.home / "tunesmith.sqlite"

    @property
    def files_dir(self) -> Path:
        return self.home / "files"

    @property
    def jobs_dir(self) -> Path:
        return self.home / "jobs"

    @property
    def suites_dir(self) -> Path:
        """Evaluation suites a fine-tuning job may name (serve/suites.py): NAME.yaml, in `tunesmith eval`'s format."""
        return self.home / "suites"

    def base_models(self) -> dict[str, str]:
        """API model id → model reference. A local directory is served under its folder name."""
        served = {}
        for ref in self.bases:
            path = Path(ref).expanduser()
            model_id = ref if ref in EMBEDDED_MODELS or not path.is_dir() else path.resolve().name
            served[model_id] = str(path.resolve()) if path.is_dir() else ref
        return served
