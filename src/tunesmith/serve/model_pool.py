"""Models loaded for inference, shared by requests: loaded once, least recently used dropped past a limit.

LoRA fine-tunes are served as adapters over their base model: the base is loaded once, each
fine-tune adds only its adapter weights (peft multi-adapter). Each loaded model has one batcher;
requests for the base and for any of its adapters are decoded in the same batches, every row
naming its adapter (peft mixed-adapter inference).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import PeftModel

from tunesmith.models.load import load_model, load_tokenizer
from tunesmith.models.packed_linear import packed_for_inference
from tunesmith.serve.batcher import Batcher, BatchShares, BatchSlot
from tunesmith.serve.passing_thread import in_passing_thread
from tunesmith.train.lora import ignore_peft_deprecation


@dataclass(eq=False)
class ServedModel:
    """A loaded model, its tokenizer, and the batcher thread that runs every request for it."""

    model: object
    tokenizer: object
    shares: BatchShares = BatchShares()  # how much of the rows batches and eval runs may hold (serve/batcher.py)
    lock: threading.Lock = field(default_factory=threading.Lock)  # held by the batcher for each step
    batcher: Batcher = field(init=False)

    def __post_init__(self):
        self.batcher = Batcher(self, shares=self.shares)


@dataclass
class LoadedModel:
    """What a route gets for one model id: the model (for its context length), its tokenizer, its slot."""

    model: object
    tokenizer: object
    slot: BatchSlot  # pass to batcher.complete / generate_deltas


class ModelPool:
    def __init__(self, max_loaded: int, dtype: torch.dtype = torch.float32, shares: BatchShares = BatchShares()):
        """dtype: the generation models' weights (models/load.py inference_dtype); LoRA adapters keep peft's float32.
        shares: each model's batcher's shares of rows for background requests (serve/batcher.py)."""
        self.max_loaded, self.dtype, self.shares = max_loaded, dtype, shares
        ignore_peft_deprecation()  # adapters load in passing threads (get_adapter): a filter for good, set once
        self.loaded: OrderedDict[str, ServedModel] = OrderedDict()
        self.lock = threading.Lock()

    def served(self, model_id: str, ref: str) -> ServedModel:
        """Load under the pool lock, so two requests never load the same model twice."""
        if model_id not in self.loaded:
            model = in_passing_thread(lambda: self.load(ref))  # serve/passing_thread.py: why not in this thread
            self.loaded[model_id] = ServedModel(model, load_tokenizer(ref), self.shares)
            while len(self.loaded) > self.max_loaded:
                self.loaded.popitem(last=False)
        self.loaded.move_to_end(model_id)
        return self.loaded[model_id]

    def load(self, ref: str):
        return packed_for_inference(load_model(ref, dtype=self.dtype).eval())  # models/packed_linear.py

    def get(self, model_id: str, ref: str) -> LoadedModel:
        """`ref` is what `load_model` takes: a base reference, or a run directory (merged weights)."""
        with self.lock:
            served = self.served(model_id, ref)
        return LoadedModel(served.model, served.tokenizer, BatchSlot(served.batcher, None))

    def get_adapter(self, base_id: str, base_ref: str, adapter_name: str, adapter_dir: Path) -> LoadedModel:
        """A LoRA fine-tune as an adapter on its (shared) base model."""
        with self.lock:
            served = self.served(base_id, base_ref)
            with served.lock:  # wrapping/adding changes the module tree: between decoding steps
                if not isinstance(served.model, PeftModel):
                    served.model = in_passing_thread(
                        lambda: PeftModel.from_pretrained(served.model, adapter_dir, adapter_name=adapter_name).eval())
                elif adapter_name not in served.model.peft_config:
                    in_passing_thread(lambda: served.model.load_adapter(adapter_dir, adapter_name=adapter_name))
        return LoadedModel(served.model, served.tokenizer, BatchSlot(served.batcher, adapter_name))

    def drop(self, model_id: str) -> None:
        """Forget a model, or unload a deleted fine-tune's adapter from whichever base holds it."""
        with self.lock:
            self.loaded.pop(model_id, None)
            for served in self.loaded.values():
                if isinstance(served.model, PeftModel) and model_id in served.model.peft_config:
                    with served.lock:
                        served.model.delete_adapter(model_id)
