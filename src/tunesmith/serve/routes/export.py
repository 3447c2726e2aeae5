"""POST /v1/models/{id}/export (extension): download a model this key may use as a GGUF file.

Body: {"format": "gguf" | "lora", "type": "f16"} (both optional). `gguf` is the merged model for llama.cpp,
Ollama or LM Studio; `lora` a LoRA fine-tune's adapter alone, for llama.cpp's `--lora` over its exported
base. The file is written to a temporary directory and deleted once sent: the server keeps no copy that
retention or erasure would have to find. This router is included before /v1/models' catch-all routes.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict
from starlette.background import BackgroundTask

from tunesmith.export.errors import ExportError
from tunesmith.export.run_export import export
from tunesmith.export.tensor_types import EXPORT_TYPES
from tunesmith.serve.auth import api_key
from tunesmith.serve.errors import APIError
from tunesmith.serve.routes.models import resolve_served

router = APIRouter(prefix="/v1/models")


class ExportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["gguf", "lora"] = "gguf"
    type: Literal[tuple(EXPORT_TYPES)] = "f16"


@router.post("/{model_id:path}/export")
def export_model(request: Request, model_id: str, body: ExportRequest | None = None, key: str = Depends(api_key)):
    body = body or ExportRequest()
    served = resolve_served(request, key, model_id)  # 404 for a model this key may not use
    scratch = Path(tempfile.mkdtemp(prefix="tunesmith-export-"))
    name = model_id.replace("/", "_").replace(":", "_")
    suffix = "-lora" if body.format == "lora" else ""
    try:
        result = export(served.ref, body.format, scratch / f"{name}{suffix}-{body.type}.gguf", body.type, name)
    except ExportError as exc:
        shutil.rmtree(scratch)
        raise APIError(400, str(exc), param="format", code="export_not_possible") from None
    path = result.files[0]
    return FileResponse(path, media_type="application/octet-stream", filename=path.name,
                        background=BackgroundTask(shutil.rmtree, scratch))
