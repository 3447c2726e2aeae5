"""Render examples into token ids and labels: which tokens are trained is decided here, once.

Chats are rendered with the base model's own chat template (the one used at inference), and the
trained span of each assistant turn runs from its first content token through the template's
end-of-turn token, so the model learns to stop.
"""
from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from tunesmith.data.formats import LoadedFile
from tunesmith.models.load import ChatTemplateError

IGNORE_INDEX = -100


@dataclass
class TokenizedExample:
    """One training example: `labels[i]` is the target for position i (already aligned, not shifted)."""

    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX where not trained; labels[i] == input_ids[i] where trained
    truncated: bool = False

    @property
    def num_trained(self) -> int:
        """Tokens that are prediction targets: the first token has no prefix to be predicted from."""
        return sum(label != IGNORE_INDEX for label in self.labels[1:])


def trained_char_spans(tokenizer: PreTrainedTokenizerBase, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """Render `messages` and return (text, character spans of trained assistant turns).

    Each assistant turn's span starts where the generation prompt for it ends and ends after the
    template's closing text for that turn, trailing whitespace excluded. Turns with weight 0 are skipped.
    """
    plain = [{"role": m["role"], "content": m["content"]} for m in messages]
    text = tokenizer.apply_chat_template(plain, tokenize=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or message.get("weight", 1) == 0:
            continue
        prompt = tokenizer.apply_chat_template(plain[:i], tokenize=False, add_generation_prompt=True)
        through = tokenizer.apply_chat_template(plain[: i + 1], tokenize=False)
        if not text.startswith(through) or not through.startswith(prompt):
            raise ChatTemplateError(
                "the chat template does not render conversations as growing prefixes; "
                "tunesmith cannot tell which tokens belong to the assistant"
            )
        spans.append((len(prompt), len(through.rstrip())))
    return text, spans


def render_chat(tokenizer: PreTrainedTokenizerBase, messages: list[dict], max_length: int) -> TokenizedExample:
    text, spans = trained_char_spans(tokenizer, messages)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    input_ids = encoded["input_ids"]
    labels = [IGNORE_INDEX] * len(input_ids)
    for index, (start, end) in enumerate(encoded["offset_mapping"]):
        if end > start and any(s <= start and end <= e for s, e in spans):
            labels[index] = input_ids[index]
    return truncate(TokenizedExample(input_ids, labels), max_length)


def render_text(tokenizer: PreTrainedTokenizerBase, text: str, max_length: int) -> list[TokenizedExample]:
    """Raw text for continued pretraining: every token trained, EOS appended, long documents split in chunks."""
    ids = tokenizer(text, add_special_tokens=True)["input_ids"] + [tokenizer.eos_token_id]
    chunks = [ids[i : i + max_length] for i in range(0, len(ids), max_length)]
    return [TokenizedExample(list(chunk), list(chunk)) for chunk in chunks if len(chunk) > 1]


def records_to_examples(loaded: LoadedFile, tokenizer: PreTrainedTokenizerBase, max_length: int) -> list[TokenizedExample]:
    """Training examples for the valid records of a file: one per chat, one or more chunks per text."""
    examples = []
    for record in loaded.records:
        if record.kind == "chat":
            examples.append(render_chat(tokenizer, record.messages, max_length))
        else:
            examples.extend(render_text(tokenizer, record.text, max_length))
    return examples


def truncate(example: TokenizedExample, max_length: int) -> TokenizedExample:
    if len(example.input_ids) <= max_length:
        return example
    return TokenizedExample(example.input_ids[:max_length], example.labels[:max_length], truncated=True)


def format_trained_tokens(tokenizer: PreTrainedTokenizerBase, example: TokenizedExample) -> str:
    """Readable preview: trained tokens wrapped in [[...]], the rest as plain text."""
    parts, run, run_trained = [], [], None
    for token_id, label in zip(example.input_ids, example.labels):
        trained = label != IGNORE_INDEX
        if run and trained != run_trained:
            parts.append((run_trained, tokenizer.decode(run)))
            run = []
        run.append(token_id)
        run_trained = trained
    if run:
        parts.append((run_trained, tokenizer.decode(run)))
    return "".join(f"[[{text}]]" if trained else text for trained, text in parts)
