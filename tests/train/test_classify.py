"""Classification finetuning on a tiny model: the step's math, the recipe's files, exact resume, export parity."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.tiny import tiny_classifier_model
from tunesmith.config import ConfigError, load_config
from tunesmith.data.classification_examples import ClassifiedExample, classification_text
from tunesmith.data.labels import LabeledRecord
from tunesmith.models.classifier import load_classifier
from tunesmith.train.classification_objective import ClassificationObjective
from tunesmith.train.loop import LoopSettings, train_step
from tunesmith.train.recipes import train_run
from tunesmith.train.schedule import build_scheduler
from tunesmith.train.setup import InvalidDataError

# label "metal" for element words, "animal" for fox and dog texts, both for one, none for the rest
ROWS = [
    ("gold", ["metal"]), ("What is gold", ["metal"]), ("the symbol for gold", ["metal"]),
    ("The quick brown fox", ["animal"]), ("the lazy dog", ["animal"]), ("fox", ["animal"]),
    ("gold fox and dog", ["metal", "animal"]),
    ("0123456789", []), ("You are a helpful assistant", []), ("system user", []), ("Hydrogen has atomic number", []),
    ("helium", []),
]


def write_rows(path: Path, rows=ROWS, repeat: int = 2) -> Path:
    path.write_text("".join(json.dumps({"text": text, "labels": labels}) + "\n" for text, labels in rows * repeat))
    return path


def run_config(tiny_model_dir, tmp_path, **overrides):
    values = {"model.base": str(tiny_model_dir), "data.train": write_rows(tmp_path / "train.jsonl"),
              "data.valid": write_rows(tmp_path / "valid.jsonl", repeat=1), "out": tmp_path / "run",
              "train.method": "classification", "train.batch_size": 6, "train.lr": 1e-2, "train.log_every": 1,
              "train.max_steps": 16, "train.eval_every": 8, "train.save_every": 8, "lora.r": 4, "data.pii": "allow",
              "classification.labels": ["metal", "animal", "hate"], "classification.target_fpr": 0.1}
    values.update(overrides)
    return load_config(overrides=values)


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def examples(tokenizer) -> list[ClassifiedExample]:
    labels = ["metal", "animal"]
    return [ClassifiedExample(tokenizer(text, add_special_tokens=False)["input_ids"],
                              [float(label in row_labels) for label in labels]) for text, row_labels in ROWS[:8]]


def one_step(tokenizer, batch_size: int, micro_batch_size: int):
    model = tiny_classifier_model(tokenizer, ["metal", "animal"]).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    objective = ClassificationObjective(multi_label=True, weights=torch.tensor([2.0, 3.0]))
    settings = LoopSettings(total_steps=1, batch_size=batch_size, micro_batch_size=micro_batch_size, max_length=64,
                            packing=True, seed=0, bf16=False, max_grad_norm=1e9, log_every=1, eval_every=None,
                            save_every=100, keep_checkpoints=1, pad_id=tokenizer.pad_token_id, objective=objective)
    result = train_step(model, optimizer, build_scheduler(optimizer, "constant", 0.0, 1), examples(tokenizer), settings)
    return model, result


def test_accumulated_step_equals_one_padded_batch(tokenizer):
    whole, whole_result = one_step(tokenizer, 8, 8)  # one right-padded batch of 8 texts of different lengths
    accumulated, accumulated_result = one_step(tokenizer, 8, 1)  # 8 micro-batches of one, no padding
    assert whole_result.loss == pytest.approx(accumulated_result.loss, rel=1e-5)
    assert whole_result.metrics["accuracy"] == pytest.approx(accumulated_result.metrics["accuracy"])
    start = tiny_classifier_model(tokenizer, ["metal", "animal"])
    for (name, a), b, before in zip(whole.named_parameters(), accumulated.parameters(), start.parameters()):
        assert torch.allclose(a, b, atol=2e-5), name  # float32 summation order: ~7e-6 after an lr-0.5 step
    assert (whole.score.weight - start.score.weight).abs().max() > 1e-2  # the step moved the weights far more


def test_chat_rows_are_classified_as_role_content_lines():
    record = LabeledRecord(3, ("x",), messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}])
    assert classification_text(record) == "user: Hi\nassistant: Yo"


def test_lora_run_writes_a_calibrated_classifier_that_learnt(tiny_model_dir, tmp_path):
    result = train_run(run_config(tiny_model_dir, tmp_path))
    run = tmp_path / "run"
    assert result.finished and result.steps == 16
    assert (run / "adapter" / "adapter_config.json").is_file()
    lines = metrics(run)
    assert [line["step"] for line in lines if "valid_loss" in line] == [8, 16]
    assert lines[-1]["loss"] < lines[0]["loss"] and "valid_accuracy" in lines[-1]
    classifier = load_classifier(run)
    assert classifier.labels == ["metal", "animal", "hate"] and classifier.multi_label
    assert classifier.category_map == {"metal": [], "animal": [], "hate": ["hate"]}
    assert classifier.target_fpr == 0.1 and set(classifier.thresholds) == {"metal", "animal", "hate"}
    texts = [text for text, _ in ROWS]
    truth = torch.tensor([[float(label in labels) for label in classifier.labels] for _, labels in ROWS])
    flags = classifier.flags(classifier.scores(texts))
    for j in range(3):  # calibrated on these very rows: at most 10% of each label's negatives flagged
        assert flags[truth[:, j] == 0, j].float().mean() <= 0.1
    assert (flags[:, :2] == truth[:, :2].bool()).float().mean() >= 0.9  # and it learnt the two labels
    record = json.loads((run / "run.json").read_text())
    assert record["method"] == "classification" and record["classification"]["thresholds"] == classifier.thresholds
    adapter = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    assert any("score" in name for name in adapter)  # the head is saved whole with the adapter


def test_exported_classifier_gives_the_in_memory_models_scores(tiny_model_dir, tmp_path):
    from tunesmith.train.classify import export_classifier, load_classification_data, moderation_category_map
    from tunesmith.train.classification_model import build_classification_model, load_classification_tokenizer

    config = run_config(tiny_model_dir, tmp_path)
    tokenizer = load_classification_tokenizer(config.model.base)
    data = load_classification_data(config.data, config.classification.labels, tokenizer)
    model = build_classification_model(config, data.labels, True, tokenizer.pad_token_id)
    with torch.no_grad():  # move the adapter off zero so merging matters
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    model.eval()
    ids = tokenizer("The quick brown fox", add_special_tokens=False)["input_ids"]
    in_memory = torch.sigmoid(model(input_ids=torch.tensor([ids])).logits)
    export_classifier(model, tokenizer, tmp_path / "out", config, data, moderation_category_map(None, data.labels))
    exported = load_classifier(tmp_path / "out", bf16=False)
    assert torch.allclose(exported.scores(["The quick brown fox"]), in_memory, atol=1e-5)


def test_resumed_run_equals_uninterrupted_run(tiny_model_dir, tmp_path):
    train_run(run_config(tiny_model_dir, tmp_path, out=tmp_path / "whole"))
    paused = train_run(run_config(tiny_model_dir, tmp_path, out=tmp_path / "paused"), stop_after=8)
    assert not paused.finished and not (tmp_path / "paused" / "model").exists()
    resumed = train_run(run_config(tiny_model_dir, tmp_path, out=tmp_path / "paused"), resume=True)
    assert resumed.resumed_from == 8 and resumed.finished
    a = load_file(str(tmp_path / "whole" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "paused" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    whole, paused_metrics = metrics(tmp_path / "whole"), metrics(tmp_path / "paused")
    assert [m["loss"] for m in whole] == [m["loss"] for m in paused_metrics]


def test_full_single_label_run_trains_every_weight(tiny_model_dir, tmp_path):
    single = tmp_path / "single.jsonl"
    single.write_text("".join(json.dumps({"text": text, "label": labels[0] if labels else "none"}) + "\n"
                              for text, labels in ROWS * 2))
    train_run(run_config(tiny_model_dir, tmp_path, **{
        "train.weights": "full", "data.train": single, "data.valid": single, "classification.labels": None,
        "train.max_steps": 3}))
    run = tmp_path / "run"
    assert not (run / "adapter").exists()
    classifier = load_classifier(run)
    assert classifier.labels == ["animal", "metal", "none"] and not classifier.multi_label
    assert torch.allclose(classifier.scores(["fox", "gold"]).sum(dim=-1), torch.ones(2), atol=1e-5)
    base = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    trained = load_file(str(run / "model" / "model.safetensors"))
    assert not torch.equal(base["model.layers.0.mlp.up_proj.weight"], trained["model.layers.0.mlp.up_proj.weight"])


def test_bad_labels_and_maps_are_named_errors(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "fox", "labels": ["animl"]}) + "\n" + json.dumps({"text": "gold", "labels": []}) + "\n")
    with pytest.raises(InvalidDataError, match=r"bad\.jsonl:1: labels\[0\]: unknown label 'animl' — did you mean 'animal'"):
        train_run(run_config(tiny_model_dir, tmp_path, **{"data.train": bad}))
    with pytest.raises(ConfigError, match="classification.category_map: 'metl' is not a label"):
        train_run(run_config(tiny_model_dir, tmp_path, **{"classification.category_map": {"metl": ["illicit"]},
                                                          "out": tmp_path / "x"}))
    with pytest.raises(ConfigError, match="classification.category_map.metal: weapons not an OpenAI"):
        train_run(run_config(tiny_model_dir, tmp_path, **{"classification.category_map": {"metal": ["weapons"]},
                                                          "out": tmp_path / "y"}))


def test_layers_keeps_the_first_decoder_layers_with_the_base_weights(tiny_model_dir, tmp_path):
    from tunesmith.train.classification_model import build_classification_model

    config = run_config(tiny_model_dir, tmp_path, **{"classification.layers": 1, "train.weights": "full"})
    model = build_classification_model(config, ["a", "b"], True, 2)
    base = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    assert len(model.model.layers) == 1 and model.config.num_hidden_layers == 1
    assert torch.equal(model.model.layers[0].mlp.up_proj.weight, base["model.layers.0.mlp.up_proj.weight"])
    with pytest.raises(ConfigError, match="classification.layers: 3 but the base model has 2 decoder layers"):
        build_classification_model(run_config(tiny_model_dir, tmp_path, **{"classification.layers": 3}), ["a"], True, 2)


def test_a_run_without_validation_rows_trains_and_exports(tiny_model_dir, tmp_path):
    """Moderation jobs may come without a validation file: no calibration data, thresholds stay at their default."""
    train_run(run_config(tiny_model_dir, tmp_path, **{"data.valid": None, "train.max_steps": 2, "train.eval_every": None}))
    classifier = load_classifier(tmp_path / "run")
    assert classifier.labels == ["metal", "animal", "hate"]
    assert classifier.scores(["gold", "fox"]).shape == (2, 3)
