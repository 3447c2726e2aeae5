"""A chat conversation → the token ids a model continues, and the ids that end its answer.

Every generator in tunesmith (evaluation, augmentation, `tunesmith chat`/`generate`, the server) renders
prompts and stops here, so they all see the same prompt and end at the same token. Many chat models end
a turn with a token that is not the tokenizer's EOS (Qwen: EOS `<|endoftext|>`, turns end `<|im_end|>`);
a generator that stops only on EOS runs on into a turn nobody asked for.
"""
from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase

END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")


def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """EOS plus whichever end-of-turn token the chat template uses."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    vocab = tokenizer.get_vocab()
    ids += [vocab[token] for token in END_OF_TURN_TOKENS if token in vocab]
    return sorted(set(ids))


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The tokenizer's pad id, else its first stop id (padding is masked, so any id does)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_token_ids(tokenizer)[0]


def render_prompts(tokenizer: PreTrainedTokenizerBase, prompts: list[list[dict]]) -> list[list[int]]:
    """Each conversation in the model's chat template plus the generation prompt, as token ids.

    The template writes its own special tokens, so the tokenizer must not add a BOS of its own.
    """
    texts = [tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) for messages in prompts]
    return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) input ids and attention mask, padding on the left so every row's next token is the last column."""
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, width - len(row) :] = 1
    return input_ids, attention_mask
