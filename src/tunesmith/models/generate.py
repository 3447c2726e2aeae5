"""Generation: batched greedy answers through the serving engine, and one conversation streamed by transformers.

`generate_answers` / `generate_token_ids` serve evaluation and augmentation: the prompts go through the same
engine as `tunesmith serve` (models/decoding/offline.py: continuous batching, a shared system prompt prefilled once,
the written-out decoding step) and come back in the caller's order. `stream_chat` serves `tunesmith chat` and
`tunesmith generate` with transformers' `generate`. Both stop at every id of `stop_token_ids` (EOS and the
end-of-turn token).
"""
from __future__ import annotations

import contextlib
from threading import Thread
from typing import Iterator

import torch
from rich.progress import Progress
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TextIteratorStreamer

from tunesmith.models.chat import pad_token_id, render_prompts, stop_token_ids
from tunesmith.models.decoding.offline import greedy_token_ids


def generate_answers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[list[dict]],
    max_new_tokens: int = 32,
    batch_size: int = 32,
    progress: bool = True,
    autocast_dtype: torch.dtype | None = None,
) -> list[str]:
    """Greedy completions for chat prompts, in input order, decoded without special tokens.

    `autocast_dtype=torch.bfloat16` runs the forward passes under CPU/GPU autocast (weights unchanged).
    """
    rows = generate_token_ids(model, tokenizer, prompts, max_new_tokens, batch_size, progress, autocast_dtype)
    return [tokenizer.decode(row, skip_special_tokens=True).strip() for row in rows]


def generate_token_ids(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[list[dict]],
    max_new_tokens: int = 32,
    batch_size: int = 32,
    progress: bool = True,
    autocast_dtype: torch.dtype | None = None,
) -> list[list[int]]:
    """Greedy new token ids per prompt, in input order, through the first stop token (which is counted).

    Decoded by the serving engine (models/decoding/offline.py), at most `batch_size` rows at a time."""
    if not prompts:
        return []
    encoded = render_prompts(tokenizer, prompts)
    device = next(model.parameters()).device
    autocast = (
        torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else contextlib.nullcontext()
    )
    was_training = model.training
    model.eval()
    try:
        with Progress(transient=True, disable=not progress) as bar, autocast:
            task = bar.add_task("generating", total=len(encoded))
            return greedy_token_ids(model, tokenizer, encoded, max_new_tokens, batch_size,
                                    on_finished=lambda done: bar.update(task, completed=done))
    finally:
        model.train(was_training)


def sampling_kwargs(tokenizer: PreTrainedTokenizerBase, max_new_tokens: int, temperature: float, seed: int | None) -> dict:
    """`generate` arguments: greedy at temperature 0, else nucleus sampling (top_p 0.95) seeded by `seed`."""
    if seed is not None:
        torch.manual_seed(seed)
    kwargs = dict(max_new_tokens=max_new_tokens, eos_token_id=stop_token_ids(tokenizer), pad_token_id=pad_token_id(tokenizer))
    if temperature > 0:
        kwargs.update(do_sample=True, temperature=temperature, top_p=0.95)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kwargs


def stream_chat(
    model, tokenizer, messages: list[dict], max_new_tokens: int = 256, temperature: float = 0.0, seed: int | None = None
) -> Iterator[str]:
    """Yield the answer's text pieces as they are generated (generation runs in a background thread)."""
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    input_ids = torch.tensor(render_prompts(tokenizer, [messages]), device=model.device)  # (1, T)
    kwargs = dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), streamer=streamer,
                  **sampling_kwargs(tokenizer, max_new_tokens, temperature, seed))
    thread = Thread(target=lambda: generate_in_background(model, kwargs), daemon=True)
    thread.start()
    yield from streamer
    thread.join()


@torch.inference_mode()
def generate_in_background(model, kwargs: dict) -> None:
    model.generate(**kwargs)
