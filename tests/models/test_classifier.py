"""The classifier file format: save → load round trip, batched scores equal one-at-a-time scores, flags, categories."""
from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from tests.tiny import save_tiny_classifier, tiny_classifier_model, tiny_tokenizer
from tunesmith.models.classifier import ClassifierFormatError, load_classifier, save_classifier

TEXTS = ["What is gold?", "Hydrogen has atomic number 1 and helium has atomic number 2.", "fox", "", "The quick brown fox"]


def test_round_trip_keeps_labels_thresholds_map_and_config(tmp_path):
    directory = save_tiny_classifier(tmp_path / "clf", labels=["spam", "hate"], thresholds={"spam": 0.3})
    classifier = load_classifier(directory)
    assert classifier.labels == ["spam", "hate"]
    assert classifier.thresholds == {"spam": 0.3}
    assert classifier.category_map == {"spam": [], "hate": ["hate"]}
    assert classifier.multi_label and classifier.target_fpr == 0.05 and classifier.base_model == "tiny"
    plain = AutoModelForSequenceClassification.from_pretrained(directory)
    assert plain.config.id2label == {0: "spam", 1: "hate"}
    assert plain.config.problem_type == "multi_label_classification"
    assert plain.config.pad_token_id is not None


def test_batched_sorted_scores_equal_one_at_a_time(tmp_path):
    classifier = load_classifier(save_tiny_classifier(tmp_path / "clf"), bf16=False)
    batched = classifier.scores(TEXTS, batch_size=2)
    single = torch.cat([classifier.scores([text], batch_size=1) for text in TEXTS])
    assert batched.shape == (len(TEXTS), 13)
    assert torch.allclose(batched, single, atol=1e-5)
    assert ((batched > 0) & (batched < 1)).all()
    assert batched.std() > 0.05  # the random head spreads scores, so the comparison above has teeth


def test_scores_match_the_plain_model_on_the_last_text_token(tmp_path):
    classifier = load_classifier(save_tiny_classifier(tmp_path / "clf"), bf16=False)
    ids = classifier.tokenizer("The quick brown fox", add_special_tokens=False)["input_ids"]
    logits = classifier.model(input_ids=torch.tensor([ids])).logits
    assert torch.allclose(classifier.scores(["The quick brown fox"]), torch.sigmoid(logits), atol=1e-5)


def test_special_token_text_is_split_not_pooled_as_padding(tmp_path):
    classifier = load_classifier(save_tiny_classifier(tmp_path / "clf"), bf16=False)
    ids = classifier.tokenizer("fox<|im_end|>", add_special_tokens=False, split_special_tokens=True)["input_ids"]
    assert classifier.model.config.pad_token_id not in ids
    spoofed = classifier.scores(["fox<|im_end|>", "fox"])
    assert not torch.allclose(spoofed[0], spoofed[1])


def test_bf16_scores_stay_close_to_float32(tmp_path):
    directory = save_tiny_classifier(tmp_path / "clf")
    exact = load_classifier(directory, bf16=False).scores(TEXTS, batch_size=2)
    fast = load_classifier(directory, bf16=True).scores(TEXTS, batch_size=2)
    assert torch.allclose(fast, exact, atol=0.03) and not torch.equal(fast, exact)  # measured: 0.014


def test_single_label_scores_are_a_softmax(tmp_path):
    tokenizer = tiny_tokenizer()
    model = tiny_classifier_model(tokenizer, ["a", "b", "c"], multi_label=False)
    directory = save_classifier(tmp_path / "clf", model, tokenizer, ["a", "b", "c"], thresholds={},
                                category_map={}, problem_type="single_label_classification")
    scores = load_classifier(directory).scores(TEXTS)
    assert torch.allclose(scores.sum(dim=-1), torch.ones(len(TEXTS)), atol=1e-5)


def test_flags_and_categories_follow_thresholds_and_the_map(tmp_path):
    tokenizer = tiny_tokenizer()
    labels = ["slur", "threat", "spam"]
    directory = save_classifier(
        tmp_path / "clf", tiny_classifier_model(tokenizer, labels), tokenizer, labels,
        thresholds={"slur": 0.9, "threat": 0.2},
        category_map={"slur": ["hate", "harassment"], "threat": ["harassment", "violence"], "spam": []},
    )
    classifier = load_classifier(directory)
    scores = torch.tensor([[0.95, 0.1, 0.99], [0.5, 0.3, 0.1]])
    assert classifier.flags(scores).tolist() == [[True, False, True], [False, True, False]]  # spam: default 0.5
    category_scores, category_flags = classifier.by_category(scores)
    assert category_scores[0] == pytest.approx({"hate": 0.95, "harassment": 0.95, "violence": 0.1})
    assert category_flags[0] == {"hate": True, "harassment": True, "violence": False}
    assert category_flags[1] == {"hate": False, "harassment": True, "violence": True}


def test_bad_directories_are_named_errors(tmp_path):
    with pytest.raises(ClassifierFormatError, match="classifier.json: file not found"):
        load_classifier(tmp_path)
    directory = save_tiny_classifier(tmp_path / "clf", labels=["a", "b"])
    meta = json.loads((directory / "classifier.json").read_text())
    (directory / "classifier.json").write_text(json.dumps({**meta, "labels": ["b", "a"]}))
    with pytest.raises(ClassifierFormatError, match="differ from config.json id2label"):
        load_classifier(directory)
    tokenizer = tiny_tokenizer()
    with pytest.raises(ClassifierFormatError, match="name labels the model lacks: c"):
        save_classifier(tmp_path / "x", tiny_classifier_model(tokenizer, ["a"]), tokenizer, ["a"],
                        thresholds={"c": 0.5}, category_map={})
