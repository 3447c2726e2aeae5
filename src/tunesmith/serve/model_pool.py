"""Models loaded for inference, shared by requests: loaded once, least recently used dropped past a limit."""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from tunesmith.models.load import load_model, load_tokenizer


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    lock: threading.Lock = field(default_factory=threading.Lock)  # one generation at a time per model


class ModelPool:
    def __init__(self, max_loaded: int):
        self.max_loaded = max_loaded
        self.loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, model_id: str, ref: str) -> LoadedModel:
        """`ref` is what `load_model` takes: a base reference, or a run directory for a fine-tuned model."""
        with self.lock:  # loading under the pool lock: two requests never load the same model twice
            if model_id not in self.loaded:
                model = load_model(ref).eval()
                self.loaded[model_id] = LoadedModel(model, load_tokenizer(ref))
                while len(self.loaded) > self.max_loaded:
                    self.loaded.popitem(last=False)
            self.loaded.move_to_end(model_id)
            return self.loaded[model_id]

    def drop(self, model_id: str) -> None:
        with self.lock:
            self.loaded.pop(model_id, None)
