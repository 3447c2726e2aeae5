"""A finetuned text classifier on disk and in memory: the file format that training writes and serving reads.

A classifier directory is a plain Hugging Face `...ForSequenceClassification` checkpoint (config with
`id2label`, `label2id`, `problem_type` and the `pad_token_id` used for pooling; weights; tokenizer) plus
`classifier.json`:

    {"format": 1, "labels": [...], "problem_type": "multi_label_classification",
     "thresholds": {label: probability}, "category_map": {label: [OpenAI category, ...]},
     "target_fpr": 0.05, "base_model": "smollm2-135m-instruct", "max_length": 512}

`thresholds` were chosen on the validation set so that each label fires on at most `target_fpr` of the
rows without it; `category_map` says which OpenAI moderation categories a label stands for (identity for
a model trained on the 13 categories themselves; a team's own labels map onto several or none).

The model pools the last token that is not `pad_token_id` (transformers' rule for decoder classifiers),
so texts are tokenized with `split_special_tokens=True`: a text that spells out `<|im_end|>` cannot
shift the pooled position, nor smuggle a chat-template token past a moderation model.

Run as: library code; `load_classifier(run_dir / "model")` after a `train.method: classification` run.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from tunesmith.models.resolve import NO_HUB_KERNELS

CLASSIFIER_FILE = "classifier.json"
FORMAT_VERSION = 1
ProblemType = Literal["multi_label_classification", "single_label_classification"]
PROBLEM_TYPES = ("multi_label_classification", "single_label_classification")
DEFAULT_THRESHOLD = 0.5  # a label saved without a calibrated threshold


class ClassifierFormatError(ValueError):
    """A directory is not a tunesmith classifier, or its classifier.json disagrees with its config."""


@dataclass
class Classifier:
    """A sequence classifier with its labels, calibrated thresholds and OpenAI category map."""

    model: PreTrainedModel  # a ...ForSequenceClassification in eval mode
    tokenizer: PreTrainedTokenizerBase
    labels: list[str]
    thresholds: dict[str, float]
    category_map: dict[str, list[str]]
    problem_type: ProblemType = "multi_label_classification"
    target_fpr: float | None = None
    base_model: str | None = None
    max_length: int = 512
    bf16: bool = False  # score in bf16 (load_classifier casts the weights where the hardware has bf16; autocast covers the rest)

    @property
    def multi_label(self) -> bool:
        return self.problem_type == "multi_label_classification"

    @torch.inference_mode()
    def scores(self, texts: list[str], batch_size: int = 32) -> torch.Tensor:
        """(N, L) float32 probabilities, rows in the order of `texts`, columns in the order of `labels`.

        Multi-label: a sigmoid per label; single-label: a softmax over labels. Texts are sorted by token
        length and batched so a batch pads to near its own longest text, not the longest of all. Under
        bf16 scores differ from float32 by up to a few hundredths (the tiny test model: 0.014).
        """
        if not texts:
            return torch.zeros((0, len(self.labels)))
        rows = encode_texts(self.tokenizer, texts, self.max_length)
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        out = torch.empty((len(rows), len(self.labels)), dtype=torch.float32)
        device = next(self.model.parameters()).device
        pad_id = self.model.config.pad_token_id
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            input_ids, attention_mask = right_pad([rows[i] for i in chunk], pad_id)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16):
                logits = self.model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
            logits = logits.float().cpu()  # (B, L)
            out[chunk] = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)
        return out

    def flags(self, scores: torch.Tensor) -> torch.Tensor:
        """(N, L) bool: each label's score at or above its threshold."""
        limits = torch.tensor([self.thresholds.get(label, DEFAULT_THRESHOLD) for label in self.labels])
        return scores >= limits

    def by_category(self, scores: torch.Tensor) -> tuple[list[dict[str, float]], list[dict[str, bool]]]:
        """Per row, each mapped category's score (the highest of its labels) and flag (any of its labels fired).

        Categories that no label maps to are absent; a caller that must name all 13 fills them with 0/False.
        """
        flags = self.flags(scores)
        category_scores: list[dict[str, float]] = []
        category_flags: list[dict[str, bool]] = []
        for row_scores, row_flags in zip(scores.tolist(), flags.tolist()):
            row_score: dict[str, float] = {}
            row_flag: dict[str, bool] = {}
            for label, score, flag in zip(self.labels, row_scores, row_flags):
                for category in self.category_map.get(label, []):
                    row_score[category] = max(row_score.get(category, 0.0), score)
                    row_flag[category] = row_flag.get(category, False) or flag
            category_scores.append(row_score)
            category_flags.append(row_flag)
        return category_scores, category_flags


def encode_texts(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int) -> list[list[int]]:
    """Token ids per text, no special tokens added and none parsed from the text, cut to `max_length`.

    Cutting keeps the start of a text: a moderation verdict on a long text rests on its first tokens.
    """
    if not texts:  # e.g. a run without validation rows: the tokenizer cannot take an empty batch
        return []
    encoded = tokenizer(texts, add_special_tokens=False, split_special_tokens=True,
                        truncation=True, max_length=max_length)["input_ids"]
    return [row if row else [tokenizer.unk_token_id or 0] for row in encoded]  # an empty text still pools a token


def right_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) input ids and attention mask padded on the right; the pooled token is each row's last real one."""
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, : len(row)] = 1
    return input_ids, attention_mask


def bf16_supported(device: torch.device) -> bool:
    """bf16 matmuls in hardware: a bf16 GPU, or a CPU with AVX512-BF16 / AMX.

    Measured on this project's 2-core AMD EPYC (AVX512-BF16), 8-layer SmolLM2 classifier, batches of 64
    texts of 14 tokens, one thread: 80-86 texts/s under bf16 autocast vs 43-47 in float32.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def bf16_copy(model: PreTrainedModel) -> PreTrainedModel:
    """The model with bf16 weights, as a served classifier scores: casting once beats autocast, which casts
    every weight in every call (measured, 6-layer SmolLM2 classifier, 506 texts of 14 tokens on average,
    batches of 64: 16.3 vs 11.9 texts/s on a 2-core machine that other work loaded ~4x)."""
    return copy.deepcopy(model).to(torch.bfloat16)


def save_classifier(
    directory: str | Path,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    labels: list[str],
    *,
    thresholds: dict[str, float],
    category_map: dict[str, list[str]],
    problem_type: ProblemType = "multi_label_classification",
    target_fpr: float | None = None,
    base_model: str | None = None,
    max_length: int = 512,
) -> Path:
    """Write `model` (a merged ...ForSequenceClassification) as a classifier directory; return its path.

    The config gets `id2label`, `label2id`, `problem_type` and a `pad_token_id`, so the directory also loads
    with plain `AutoModelForSequenceClassification.from_pretrained`.
    """
    if problem_type not in PROBLEM_TYPES:
        raise ClassifierFormatError(f"problem_type: {problem_type!r} is not one of {', '.join(PROBLEM_TYPES)}")
    if model.config.num_labels != len(labels):
        raise ClassifierFormatError(f"labels: {len(labels)} names for a model with {model.config.num_labels} outputs")
    unknown = sorted((set(thresholds) | set(category_map)) - set(labels))
    if unknown:
        raise ClassifierFormatError(f"thresholds/category_map name labels the model lacks: {', '.join(unknown)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {label: i for i, label in enumerate(labels)}
    model.config.problem_type = problem_type
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    meta = {
        "format": FORMAT_VERSION,
        "labels": list(labels),
        "problem_type": problem_type,
        "thresholds": {label: float(thresholds[label]) for label in labels if label in thresholds},
        "category_map": {label: list(category_map.get(label, [])) for label in labels},
        "target_fpr": target_fpr,
        "base_model": base_model,
        "max_length": max_length,
    }
    (directory / CLASSIFIER_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return directory


def is_classifier_dir(directory: str | Path) -> bool:
    return (Path(directory) / CLASSIFIER_FILE).is_file()


def load_classifier(directory: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                    bf16: bool | None = None) -> Classifier:
    """Load a classifier directory written by `save_classifier` (or a run directory holding one in model/).

    `bf16`: score in bf16, weights cast once (bf16_copy); None = where the hardware supports it (bf16_supported).
    """
    directory = Path(directory)
    if not is_classifier_dir(directory) and is_classifier_dir(directory / "model"):
        directory = directory / "model"
    meta_path = directory / CLASSIFIER_FILE
    if not meta_path.is_file():
        raise ClassifierFormatError(
            f"{meta_path}: file not found — point at the model/ folder of a `train.method: classification` run")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ClassifierFormatError(f"{meta_path}:{exc.lineno}: not valid JSON ({exc.msg}) — re-export the model") from exc
    if meta.get("format") != FORMAT_VERSION:
        raise ClassifierFormatError(f"{meta_path}: format: {meta.get('format')!r} is not {FORMAT_VERSION} — re-export the model")
    bf16 = bf16_supported(torch.device(device)) if bf16 is None else bf16
    model = AutoModelForSequenceClassification.from_pretrained(directory, dtype=dtype, **NO_HUB_KERNELS)
    model = model.to(device).eval()
    if bf16:
        model = model.to(torch.bfloat16)
    labels = list(meta["labels"])
    config_labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if config_labels != labels:
        raise ClassifierFormatError(
            f"{meta_path}: labels: {labels} differ from config.json id2label {config_labels} — re-export the model")
    return Classifier(
        model=model,
        tokenizer=AutoTokenizer.from_pretrained(directory),
        labels=labels,
        thresholds={label: float(value) for label, value in meta.get("thresholds", {}).items()},
        category_map={label: list(meta.get("category_map", {}).get(label, [])) for label in labels},
        problem_type=meta["problem_type"],
        target_fpr=meta.get("target_fpr"),
        base_model=meta.get("base_model"),
        max_length=int(meta.get("max_length", 512)),
        bf16=bf16,
    )
