"""serve: the OpenAI-compatible API (app, routes/) and its web UI (ui/), for base and fine-tuned models.

Requests share a model by continuous batching (the batcher thread over models/decoding's engine; model_pool); jobs train
in their own processes."""
