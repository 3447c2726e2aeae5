"""A tiny moderation classifier whose verdict the test decides: it flags a text iff it holds a keyword token.

Built by hand from a 1-layer LlamaForSequenceClassification (hidden 64), so a test knows every score:
- embeddings: every token is the unit vector e0, the keyword tokens are e1;
- attention with zero queries and keys is a uniform average over the tokens so far; values and output
  copy only the e1 channel, so the last position gains e1 in proportion to the keyword count; the MLP is off;
- after the final norm, label "weapons" has logit 8·(1000·a − 1)/√(1+a²) with a = 8·count/T: about −8
  (score 0.0003) without the keyword and far above 0 with one; "insults" has −8·(1 + 1000·a)/√(1+a²), never above −8.
Labels map onto OpenAI's categories: weapons → violence + illicit/violent, insults → harassment.
"""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

from tunesmith.models.classifier import save_classifier

LABELS = ["weapons", "insults"]
CATEGORY_MAP = {"weapons": ["violence", "illicit/violent"], "insults": ["harassment"]}
SCORE_WITHOUT_KEYWORD = float(torch.sigmoid(torch.tensor(-8.0)))


def keyword_classifier(tokenizer, keyword_ids: list[int]) -> LlamaForSequenceClassification:
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         num_labels=len(LABELS), pad_token_id=tokenizer.pad_token_id)
    model = LlamaForSequenceClassification(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.fill_(1.0 if "norm" in name else 0.0)
        embed = model.model.embed_tokens.weight  # (V, 64)
        embed[:, 0] = 1.0
        embed[keyword_ids, 0], embed[keyword_ids, 1] = 0.0, 1.0
        attention = model.model.layers[0].self_attn
        attention.v_proj.weight[0, 1] = 1.0  # e1 → head 0, dim 0
        attention.o_proj.weight[1, 0] = 1.0  # head 0, dim 0 → e1
        model.score.weight[0, 0], model.score.weight[0, 1] = -1.0, 1000.0  # weapons
        model.score.weight[1, 0], model.score.weight[1, 1] = -1.0, -1000.0  # insults: never
    return model


def save_keyword_classifier(directory: Path, tokenizer, keyword_ids: list[int]) -> Path:
    return save_classifier(directory, keyword_classifier(tokenizer, keyword_ids), tokenizer, LABELS,
                           thresholds={"weapons": 0.5, "insults": 0.5}, category_map=CATEGORY_MAP,
                           base_model="tiny")
