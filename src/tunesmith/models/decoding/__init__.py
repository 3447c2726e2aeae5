"""models/decoding: the continuous-batching decoding engine, shared by the server (serve/batcher.py) and by
evaluation and augmentation (offline.py through models/generate.py).

engine.py runs the rows of one model together (slot KV cache, prefix store, the written-out Llama decoding step,
mixed LoRA adapters in one batch); requests.py is what a request carries in and out; offline.py drives the engine
without a server."""
