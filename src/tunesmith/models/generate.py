"""Single-conversation generation with the model's chat template, streamed token by token."""
from __future__ import annotations

from threading import Thread
from typing import Iterator

import torch
from transformers import TextIteratorStreamer


def chat_inputs(tokenizer, messages: list[dict]) -> dict:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, return_tensors="pt", add_special_tokens=False)


def generation_kwargs(tokenizer, max_new_tokens: int, temperature: float, seed: int | None) -> dict:
    if seed is not None:
        torch.manual_seed(seed)
    kwargs = dict(max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    if temperature > 0:
        kwargs.update(do_sample=True, temperature=temperature, top_p=0.95)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kwargs


def stream_chat(
    model, tokenizer, messages: list[dict], max_new_tokens: int = 256, temperature: float = 0.0, seed: int | None = None
) -> Iterator[str]:
    """Yield text pieces as they are generated (generation runs in a background thread)."""
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    kwargs = dict(**chat_inputs(tokenizer, messages), streamer=streamer,
                  **generation_kwargs(tokenizer, max_new_tokens, temperature, seed))
    thread = Thread(target=lambda: _generate(model, kwargs), daemon=True)
    thread.start()
    yield from streamer
    thread.join()


@torch.inference_mode()
def _generate(model, kwargs: dict) -> None:
    model.generate(**kwargs)


def complete_chat(model, tokenizer, messages: list[dict], max_new_tokens: int = 256, temperature: float = 0.0,
                  seed: int | None = None) -> str:
    return "".join(stream_chat(model, tokenizer, messages, max_new_tokens, temperature, seed))
