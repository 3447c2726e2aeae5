"""The tokenizer as GGUF keys: vocabulary, merges, token types, pre-tokenizer, special ids, chat template.

Run as: library code; `tunesmith export` calls `write_tokenizer`.

llama.cpp re-implements tokenization from these keys, so every one of them must describe the tokenizer the
model was trained with, not the one its base was published with: tunesmith's embedded base is rebuilt from
a GGUF by transformers, whose tokenizer splits text with the plain GPT-2 pattern, while the published
SmolLM2 file says `smollm` (single digits). The pre-tokenizer name is therefore read from tokenizer.json's
structure, and an unknown structure is refused rather than guessed. BOS/EOS insertion is written
explicitly: llama.cpp otherwise adds a BOS for gpt2-type vocabularies the model never saw in training.
"""
from __future__ import annotations

import json
from pathlib import Path

import gguf
from transformers import PreTrainedTokenizerBase

from tunesmith.export.errors import ExportError
from tunesmith.models.chat import END_OF_TURN_TOKENS

GPT2_PATTERN_BYTELEVEL = {"type": "ByteLevel", "use_regex": True}
SINGLE_DIGITS = {"type": "Digits", "individual_digits": True}


def pre_tokenizer_name(pre_tokenizer: dict | None, source: str) -> str:
    """llama.cpp's name (`tokenizer.ggml.pre`) for a tokenizers pre-tokenizer that it implements exactly."""
    def matches(step: dict, expected: dict) -> bool:
        return all(step.get(key, True if key == "use_regex" else None) == value for key, value in expected.items())

    steps = (pre_tokenizer or {}).get("pretokenizers", [pre_tokenizer]) if pre_tokenizer else []
    if len(steps) == 1 and matches(steps[0], GPT2_PATTERN_BYTELEVEL):
        return "gpt-2"
    if len(steps) == 2 and matches(steps[0], SINGLE_DIGITS) and matches(steps[1], GPT2_PATTERN_BYTELEVEL):
        return "smollm"
    raise ExportError(f"{source}: pre_tokenizer: {json.dumps(pre_tokenizer)} has no known llama.cpp equivalent — "
                      "exported are byte-level BPE tokenizers splitting with the GPT-2 pattern (optionally single "
                      "digits first); convert this model with llama.cpp's convert_hf_to_gguf.py")


def bpe_merges(model: dict) -> list[str]:
    """Merges as "left right" strings (tokenizers writes pairs as lists since 0.20, as strings before)."""
    return [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]


def token_list(tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> tuple[list[str], list[int]]:
    """Tokens in id order with their llama.cpp types; ids past the tokenizer's vocabulary (an embedding
    padded to a round size) are `[PAD<id>]` of type UNUSED, as llama.cpp's converter writes them."""
    by_id = {i: token for token, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def end_of_turn_token(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """The token the chat template closes every turn with (ChatML's `<|im_end|>`, llama 3's `<|eot_id|>`)."""
    template = tokenizer.chat_template or ""
    vocab = tokenizer.get_vocab()
    return next((token for token in END_OF_TURN_TOKENS if token in vocab and token in template), None)


def adds_token(tokenizer: PreTrainedTokenizerBase, token_id: int | None, first: bool) -> bool:
    """Whether encoding plain text puts this special token first (BOS) or last (EOS)."""
    ids = tokenizer("a")["input_ids"]
    return token_id is not None and bool(ids) and ids[0 if first else -1] == token_id


def write_tokenizer(writer: gguf.GGUFWriter, tokenizer: PreTrainedTokenizerBase, model_dir: Path, vocab_size: int) -> None:
    source = model_dir / "tokenizer.json"
    if not source.is_file():
        raise ExportError(f"{source}: missing — GGUF export reads the fast tokenizer's tokenizer.json; save the "
                          "tokenizer with transformers (tokenizer.save_pretrained) into the model directory")
    spec = json.loads(source.read_text())
    model = spec.get("model", {})
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise ExportError(f"{source}: model.type: {model.get('type')!r} — only byte-level BPE vocabularies "
                          "(tokenizer.ggml.model gpt2) are exported; use llama.cpp's convert_hf_to_gguf.py")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(spec.get("pre_tokenizer"), str(source)))
    tokens, types = token_list(tokenizer, vocab_size)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(bpe_merges(model))
    for token_id, add in ((tokenizer.bos_token_id, writer.add_bos_token_id),
                          (tokenizer.eos_token_id, writer.add_eos_token_id),
                          (tokenizer.unk_token_id, writer.add_unk_token_id),
                          (tokenizer.pad_token_id, writer.add_pad_token_id)):
        if token_id is not None:
            add(token_id)
    end_of_turn = end_of_turn_token(tokenizer)
    if end_of_turn is not None:
        writer.add_eot_token_id(tokenizer.convert_tokens_to_ids(end_of_turn))
    writer.add_add_bos_token(adds_token(tokenizer, tokenizer.bos_token_id, first=True))
    writer.add_add_eos_token(adds_token(tokenizer, tokenizer.eos_token_id, first=False))
    writer.add_add_space_prefix(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)
