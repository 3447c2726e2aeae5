"""Batched greedy generation for chat prompts, and QA accuracy built on it.

Prompts are rendered with the model's own chat template (plus the generation prompt), sorted by
length so each batch carries little padding, left-padded so every row's next token sits in the last
column, and returned in the caller's order. Greedy decoding stops at EOS or the end-of-turn token.
"""
from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from rich.progress import track
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from tunesmith.evaluate.matching import match

END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")


def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """EOS plus whichever end-of-turn token the chat template uses."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    vocab = tokenizer.get_vocab()
    ids += [vocab[token] for token in END_OF_TURN_TOKENS if token in vocab]
    return sorted(set(ids))


def render_prompts(tokenizer: PreTrainedTokenizerBase, prompts: list[list[dict]]) -> list[list[int]]:
    texts = [tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) for messages in prompts]
    return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) input ids and attention mask, padding on the left."""
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, width - len(row) :] = 1
    return input_ids, attention_mask


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
    stops = stop_token_ids(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
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


@dataclass
class QAResult:
    accuracy: float
    rows: list[dict]  # each item plus "prediction" and "correct"
    by_relation: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    items_per_second: float = 0.0

    def summary(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "n": len(self.rows),
            "by_relation": self.by_relation,
            "seconds": round(self.seconds, 2),
            "items_per_second": round(self.items_per_second, 2),
        }


def is_correct(prediction: str, item: dict, method: str, **opts) -> bool:
    """Any of the item's answer and `aliases` matches; the item's own `match` options override `opts`."""
    options = opts | item.get("match", {})
    answers = [item["answer"], *item.get("aliases", [])]
    return any(match(prediction, str(answer), method, **options) for answer in answers)


def evaluate_qa(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: list[dict],
    method: str = "contains_answer",
    max_new_tokens: int = 32,
    batch_size: int = 32,
    system: str | None = None,
    progress: bool = True,
    autocast_dtype: torch.dtype | None = None,
    **match_opts,
) -> QAResult:
    """Ask each item's `question` as one user turn and score the greedy answer against `answer`.

    Items: {"id", "question", "answer", optional "relation", "aliases", "match": {matcher options}}.
    `system`, when given, is prepended as a system turn; otherwise the template's default applies.
    """
    prefix = [{"role": "system", "content": system}] if system is not None else []
    prompts = [prefix + [{"role": "user", "content": item["question"]}] for item in items]
    start = time.perf_counter()
    predictions = generate_answers(
        model, tokenizer, prompts, max_new_tokens, batch_size, progress, autocast_dtype=autocast_dtype
    )
    seconds = time.perf_counter() - start
    rows = [
        item | {"prediction": prediction, "correct": is_correct(prediction, item, method, **match_opts)}
        for item, prediction in zip(items, predictions)
    ]
    by_relation: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        by_relation[row.get("relation", "all")].append(row["correct"])
    return QAResult(
        accuracy=sum(row["correct"] for row in rows) / len(rows) if rows else 0.0,
        rows=rows,
        by_relation={name: sum(flags) / len(flags) for name, flags in sorted(by_relation.items())},
        seconds=seconds,
        items_per_second=len(rows) / seconds if seconds > 0 else 0.0,
    )
