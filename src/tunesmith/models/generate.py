"""Generation with transformers' `generate`: batched greedy answers, and one conversation streamed.

`generate_answers` / `generate_token_ids` serve evaluation and augmentation: prompts are sorted by length
so each batch carries little padding, left-padded so every row's next token sits in the last column, and
returned in the caller's order. `stream_chat` serves `tunesmith chat` and `tunesmith generate`. Both stop
at every id of `stop_token_ids` (EOS and the end-of-turn token), as the server does (serve/engine.py).
"""
from __future__ import annotations

import contextlib
from threading import Thread
from typing import Iterator

import torch
from rich.progress import track
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase, TextIteratorStreamer

from tunesmith.models.chat import left_pad, pad_token_id, render_prompts, stop_token_ids


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


def until_stop(row: list[int], stops: list[int]) -> list[int]:
    """Generated ids through the first stop token (padding after it dropped)."""
    for position, token in enumerate(row):
        if token in stops:
            return row[: position + 1]
    return row


@torch.inference_mode()
def generate_token_ids(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[list[dict]],
    max_new_tokens: int = 32,
    batch_size: int = 32,
    progress: bool = True,
    autocast_dtype: torch.dtype | None = None,
) -> list[list[int]]:
    """Greedy new token ids per prompt, in input order, through the first stop token (which is counted)."""
    if not prompts:
        return []
    stops, pad_id = stop_token_ids(tokenizer), pad_token_id(tokenizer)
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stops, pad_token_id=pad_id
    )
    encoded = render_prompts(tokenizer, prompts)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    device = next(model.parameters()).device
    autocast = (
        torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else contextlib.nullcontext()
    )
    generated: list[list[int]] = [[] for _ in prompts]
    was_training = model.training
    model.eval()
    try:
        for batch in track(batches, description="generating", disable=not progress, transient=True):
            input_ids, attention_mask = left_pad([encoded[i] for i in batch], pad_id)
            with autocast:
                output = model.generate(
                    input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), generation_config=config
                )
            new_tokens = output[:, input_ids.shape[1] :]  # (B, <= max_new_tokens)
            for i, row in zip(batch, new_tokens.tolist()):
                generated[i] = until_stop(row, stops)
    finally:
        model.train(was_training)
    return generated


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
