"""Tiny in-process models and tokenizers for fast tests: no hub, no network, milliseconds to build."""
from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "What is the chemical symbol for gold? The symbol for gold is Au.",
    "Hydrogen has atomic number 1 and helium has atomic number 2.",
    "The quick brown fox jumps over the lazy dog. 0123456789",
    "You are a helpful assistant. system user assistant",
]


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE with ChatML special tokens, trained on a few sentences (~10 ms)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|im_end|>",
    )
    wrapped.chat_template = CHATML_TEMPLATE
    return wrapped


def tiny_model(tokenizer=None, seed: int = 0, layers: int = 2, hidden: int = 64) -> LlamaForCausalLM:
    """A 2-layer, hidden-64 llama with random weights, built from a config in milliseconds."""
    vocab = len(tokenizer) if tokenizer is not None else 400
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def save_tiny_pair(directory, seed: int = 0):
    """Write a tiny model + tokenizer as a local Hugging Face directory and return its path."""
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer, seed=seed)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def tiny_classifier_model(tokenizer, labels: list[str], seed: int = 0, multi_label: bool = True):
    """A 2-layer, hidden-64 LlamaForSequenceClassification with one output per label, random weights."""
    from transformers import LlamaForSequenceClassification

    config = tiny_model(tokenizer).config
    config.num_labels = len(labels)
    config.problem_type = "multi_label_classification" if multi_label else "single_label_classification"
    torch.manual_seed(seed)
    with torch.no_grad():
        model = LlamaForSequenceClassification(config)
        model.score.weight.normal_(0, 1.0)  # a spread of scores, not all ~0.5
    return model.eval()


def save_tiny_classifier(directory, labels: list[str] | None = None, thresholds: dict[str, float] | None = None):
    """Write a tiny moderation classifier directory (models/classifier.py format) and return its path.

    Labels default to OpenAI's 13 moderation categories, each mapped to itself, every threshold 0.5.
    """
    from tunesmith.data.labels import MODERATION_CATEGORIES
    from tunesmith.models.classifier import save_classifier

    labels = list(labels or MODERATION_CATEGORIES)
    tokenizer = tiny_tokenizer()
    return save_classifier(
        directory, tiny_classifier_model(tokenizer, labels), tokenizer, labels,
        thresholds=thresholds if thresholds is not None else {label: 0.5 for label in labels},
        category_map={label: [label] if label in MODERATION_CATEGORIES else [] for label in labels},
        target_fpr=0.05, base_model="tiny",
    )


def redrawn(model, std: float = 0.2, seed: int = 0):
    """The model with its matrices redrawn at `std`: at the default init every prompt's greedy answer is the same
    run of newlines, which would hide a row reading another row's cache or positions."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, std)
    return model


def lora_model(model, targets=("q_proj", "v_proj", "down_proj")):
    """The model with two LoRA adapters of random non-zero weights, "a" and "b" (peft starts B at zero: an
    adapter that changes nothing)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=4, lora_alpha=8, target_modules=list(targets) if isinstance(targets, tuple) else targets)
    peft = get_peft_model(model, config, adapter_name="a")
    peft.add_adapter("b", config)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return peft.eval()
