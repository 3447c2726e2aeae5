"""OpenAI's `logprobs` objects, of a chat completion and of a legacy text completion, from the engine's per-token
entries (models/decoding/requests.py).

Each token is written as its text and its bytes: a byte-level BPE token (GPT-2's alphabet, SmolLM2's and Llama 3's
tokenizers) may hold part of a UTF-8 character, whose text alone is U+FFFD; its bytes are the token's own, so a
client joining the bytes of an answer's tokens gets the answer back, as with OpenAI's.
"""
from __future__ import annotations

from functools import lru_cache

from tunesmith.models.decoding.requests import TokenLogprob

MAX_TOP_LOGPROBS = 20  # OpenAI's limit on top_logprobs
MAX_LEGACY_LOGPROBS = 5  # and on /v1/completions' logprobs


@lru_cache(maxsize=1)
def byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet reversed: the character each byte is written as inside a token → the byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    alphabet, shifted = {}, 0
    for byte in range(256):
        if byte in printable:
            alphabet[chr(byte)] = byte
        else:
            alphabet[chr(256 + shifted)] = byte
            shifted += 1
    return alphabet


def token_bytes(tokenizer, token: int) -> list[int]:
    """The token's own bytes: read off its byte-level piece where the tokenizer is byte-level, else its text's."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and type(backend.decoder).__name__ == "ByteLevel":
        piece, alphabet = tokenizer.convert_ids_to_tokens(token), byte_level_alphabet()
        if isinstance(piece, str) and all(char in alphabet for char in piece):
            return [alphabet[char] for char in piece]
    return list(tokenizer.decode([token]).encode("utf-8"))


def logprob_item(tokenizer, token: int, logprob: float) -> dict:
    return {"token": tokenizer.decode([token]), "logprob": logprob, "bytes": token_bytes(tokenizer, token)}


def text_entries(tokenizer, entries: list[TokenLogprob]) -> list[TokenLogprob]:
    """The entries of the tokens that write the answer's text: a special token writes none, as the answer skips it
    (it may still be an alternative)."""
    special = set(tokenizer.all_special_ids)
    return [entry for entry in entries if entry.token not in special]


def chat_logprobs(tokenizer, entries: list[TokenLogprob]) -> dict:
    """{"content": [{token, logprob, bytes, top_logprobs}], "refusal": None}, OpenAI's shape for chat: one item per
    token of the answer's text."""
    content = [logprob_item(tokenizer, entry.token, entry.logprob)
               | {"top_logprobs": [logprob_item(tokenizer, token, logprob) for token, logprob in entry.top]}
               for entry in text_entries(tokenizer, entries)]
    return {"content": content, "refusal": None}


def completion_logprobs(tokenizer, entries: list[TokenLogprob], text_offset: int) -> dict:
    """{tokens, token_logprobs, top_logprobs, text_offset}, the legacy completions' shape: per token of the answer its
    text, log-probability, the likeliest tokens with theirs (the chosen one always among them, so up to logprobs + 1)
    and where its text starts, counted in characters from the prompt's start (`text_offset`: the prompt's length)."""
    found: dict[str, list] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for entry in text_entries(tokenizer, entries):
        text = tokenizer.decode([entry.token])
        top = {tokenizer.decode([token]): logprob for token, logprob in entry.top}
        found["tokens"].append(text)
        found["token_logprobs"].append(entry.logprob)
        found["top_logprobs"].append(top | {text: entry.logprob})
        found["text_offset"].append(text_offset)
        text_offset += len(text)
    return found
