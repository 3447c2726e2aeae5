"""Models loaded for inference, shared by requests: loaded once, least recently used dropped past a limit.

LoRA fine-tunes are served as adapters over their base model: the base is loaded once, each
fine-tune adds only its adapter weights (peft multi-adapter), and a request activates its adapter
(or disables all of them, for the base) while it holds the base model's lock.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from peft import PeftModel

from tunesmith.models.load import load_model, load_tokenizer


@dataclass
class Shared:
    model: object
    tokenizer: object
    lock: threading.Lock = field(default_factory=threading.Lock)


class ActiveAdapter:
    """A lock for generating with one adapter (None = the plain base) on a shared model."""

    def __init__(self, shared: Shared, adapter: str | None):
        self.shared, self.adapter, self.disabled = shared, adapter, None

    def __enter__(self):
        self.shared.lock.acquire()
        model = self.shared.model
        if isinstance(model, PeftModel):
            if self.adapter is None:
                self.disabled = model.disable_adapter()
                self.disabled.__enter__()
            else:
                model.set_adapter(self.adapter)
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.disabled is not None:
                self.disabled.__exit__(*exc)
                self.disabled = None
        finally:
            self.shared.lock.release()


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    lock: ActiveAdapter  # `with lock:` = exclusive use of the model with the right adapter active


class ModelPool:
    def __init__(self, max_loaded: int):
        self.max_loaded = max_loaded
        self.loaded: OrderedDict[str, Shared] = OrderedDict()
        self.lock = threading.Lock()

    def shared(self, model_id: str, ref: str) -> Shared:
        """Load under the pool lock, so two requests never load the same model twice."""
        if model_id not in self.loaded:
            model = load_model(ref).eval()
            self.loaded[model_id] = Shared(model, load_tokenizer(ref))
            while len(self.loaded) > self.max_loaded:
                self.loaded.popitem(last=False)
        self.loaded.move_to_end(model_id)
        return self.loaded[model_id]

    def get(self, model_id: str, ref: str) -> LoadedModel:
        """`ref` is what `load_model` takes: a base reference, or a run directory (merged weights)."""
        with self.lock:
            shared = self.shared(model_id, ref)
        return LoadedModel(shared.model, shared.tokenizer, ActiveAdapter(shared, None))

    def get_adapter(self, base_id: str, base_ref: str, adapter_name: str, adapter_dir: Path) -> LoadedModel:
        """A LoRA fine-tune as an adapter on its (shared) base model."""
        with self.lock:
            shared = self.shared(base_id, base_ref)
            with shared.lock:  # wrapping/adding changes the module tree: not while a request generates
                if not isinstance(shared.model, PeftModel):
                    shared.model = PeftModel.from_pretrained(shared.model, adapter_dir, adapter_name=adapter_name).eval()
                elif adapter_name not in shared.model.peft_config:
                    shared.model.load_adapter(adapter_dir, adapter_name=adapter_name)
        return LoadedModel(shared.model, shared.tokenizer, ActiveAdapter(shared, adapter_name))

    def drop(self, model_id: str) -> None:
        """Forget a model, or unload a deleted fine-tune's adapter from whichever base holds it."""
        with self.lock:
            self.loaded.pop(model_id, None)
            for shared in self.loaded.values():
                if isinstance(shared.model, PeftModel) and model_id in shared.model.peft_config:
                    with shared.lock:
                        shared.model.delete_adapter(model_id)
