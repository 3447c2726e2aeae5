import json
import math

import pytest
import torch

from tunesmith.data.render import render_chat
from tunesmith.evaluate.likelihood import choice_scores, example_loss_sums, mean_loss
from tunesmith.evaluate.suite import (
    ChoiceTask, ClassifyTask, Decoding, GeneralTask, LossTask, QATask, SpeedTask,
)
from tunesmith.evaluate.tasks import run_task, token_f1
from tunesmith.train.forward import batch_loss_sum
from tunesmith.train.packing import collate

DECODING = Decoding(max_new_tokens=4, batch_size=3)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


CHATS = [
    [{"role": "user", "content": "What is the symbol for gold?"}, {"role": "assistant", "content": "Au."}],
    [{"role": "user", "content": "Hydrogen?"}, {"role": "assistant", "content": "Atomic number 1, the lightest."}],
    [{"role": "user", "content": "The quick brown fox"}, {"role": "assistant", "content": "jumps over the lazy dog."}],
    [{"role": "user", "content": "helium"}, {"role": "assistant", "content": "2"}],
    [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi"}],
]


def test_per_example_loss_sums_add_up_to_the_training_loss_in_any_batch_size(model, tokenizer):
    examples = [render_chat(tokenizer, chat, 128) for chat in CHATS]
    whole = collate(examples, tokenizer.pad_token_id, 128, packing=False)
    with torch.no_grad():
        expected = float(batch_loss_sum(model, whole))
    for batch_size in (1, 2, 8):
        sums = example_loss_sums(model, examples, tokenizer.pad_token_id, batch_size)
        assert sum(s.total for s in sums) == pytest.approx(expected, rel=1e-5)
        assert [s.tokens for s in sums] == [e.num_trained for e in examples]
    scores = mean_loss(sums)
    assert scores["perplexity"] == pytest.approx(math.exp(expected / whole.num_trained), rel=1e-5)


def test_choice_scores_are_the_negative_loss_of_each_option_and_batching_does_not_change_them(model, tokenizer):
    prompts = [[{"role": "user", "content": "Symbol for gold?"}], [{"role": "user", "content": "Lightest element?"}]]
    choices = [["Au", "Ag", "Gold is Au."], ["hydrogen", "helium"]]
    batched = choice_scores(model, tokenizer, prompts, choices, batch_size=4)
    single = [[choice_scores(model, tokenizer, [p], [[c]], batch_size=1)[0][0] for c in options]
              for p, options in zip(prompts, choices)]
    assert batched == [pytest.approx(row, rel=1e-5) for row in single]
    one = render_chat(tokenizer, prompts[0] + [{"role": "assistant", "content": "Ag"}], 512)
    with torch.no_grad():
        loss = float(batch_loss_sum(model, collate([one], tokenizer.pad_token_id, 512, packing=False)))
    assert batched[0][1] == pytest.approx(-loss, rel=1e-5)


def test_multiple_choice_task_picks_the_most_likely_option(model, tokenizer, tmp_path):
    items = [{"id": "q1", "question": "Symbol for gold?", "choices": ["Au", "Ag", "Fe"], "answer": "Au"},
             {"id": "q2", "question": "Lightest element?", "choices": ["helium", "hydrogen"], "answer": 1}]
    task = ChoiceTask(kind="multiple_choice", name="mc", data=write_jsonl(tmp_path / "mc.jsonl", items))
    run = run_task(task, model, tokenizer, DECODING)
    for row in run.rows:
        choices = next(item["choices"] for item in items if item["id"] == row["id"])
        assert row["prediction"] == choices[max(range(len(choices)), key=row["scores"].__getitem__)]
    assert run.metrics["accuracy"] == sum(row["correct"] for row in run.rows) / 2
    assert [row["reference"] for row in run.rows] == ["Au", "hydrogen"]


def test_qa_task_keeps_per_item_rows(model, tokenizer, tmp_path):
    items = [{"id": "a", "question": "Gold?", "answer": "Au", "relation": "symbol"},
             {"id": "b", "question": "Helium?", "answer": "2", "relation": "number"}]
    task = QATask(kind="qa", name="qa", data=write_jsonl(tmp_path / "qa.jsonl", items), limit=1)
    run = run_task(task, model, tokenizer, DECODING)
    assert [row["id"] for row in run.rows] == ["a"]
    assert run.metrics == {"accuracy": 0.0}  # the random tiny model answers nothing useful
    assert set(run.rows[0]) >= {"prompt", "reference", "prediction", "correct"}


def test_classification_task_reads_labels_and_builds_a_confusion_matrix(model, tokenizer, tmp_path):
    items = [{"id": i, "text": f"item {i}", "label": label} for i, label in enumerate(["pos", "neg", "pos"])]
    task = ClassifyTask(kind="classification", name="cls", data=write_jsonl(tmp_path / "c.jsonl", items),
                        labels=["pos", "neg"], template="Sentiment of: {text}")
    run = run_task(task, model, tokenizer, DECODING)
    confusion = run.details["confusion"]
    assert confusion["columns"] == ["pos", "neg", "(none)"]
    assert sum(map(sum, confusion["matrix"])) == 3
    assert run.rows[0]["prompt"] == "Sentiment of: item 0"
    assert set(run.metrics) == {"accuracy", "macro_f1"}


def test_classification_rejects_labels_outside_the_declared_set(model, tokenizer, tmp_path):
    task = ClassifyTask(kind="classification", name="cls", labels=["a", "b"],
                        data=write_jsonl(tmp_path / "c.jsonl", [{"text": "x", "label": "c"}]))
    with pytest.raises(ValueError, match="not among"):
        run_task(task, model, tokenizer, DECODING)


def test_loss_task_on_chat_and_text_files(model, tokenizer, tmp_path):
    chat = write_jsonl(tmp_path / "valid.jsonl", [{"messages": m} for m in CHATS])
    text = tmp_path / "text.txt"
    text.write_text("The quick brown fox jumps over the lazy dog.\n\nHydrogen has atomic number 1.\n")
    for path in (chat, text):
        run = run_task(LossTask(kind="loss", name="held_out", data=path), model, tokenizer, DECODING)
        assert run.metrics["perplexity"] == pytest.approx(math.exp(run.metrics["loss"]))
        assert 0 < run.metrics["loss"] < 20 and run.details["tokens"] > 0


def test_general_task_agrees_fully_with_itself_and_compares_with_a_reference(model, tokenizer, tmp_path):
    text = tmp_path / "general.txt"
    text.write_text("The quick brown fox jumps over the lazy dog.\n")
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"id": "p1", "prompt": "Gold?"}, {"prompt": "Hi"}])
    task = GeneralTask(kind="general", name="general", text=text, prompts=prompts)
    baseline = run_task(task, model, tokenizer, DECODING)
    assert baseline.metrics["agreement"] == 1.0 and baseline.metrics["exact_agreement"] == 1.0
    baseline.rows[0]["prediction"] = "something else entirely"
    again = run_task(task, model, tokenizer, DECODING, reference=baseline)
    assert again.metrics["exact_agreement"] == 0.5
    assert again.rows[0]["reference"] == "something else entirely"


def test_token_f1():
    assert token_f1("The symbol is Au.", "symbol is au") == 1.0
    assert token_f1("gold", "silver") == 0.0
    assert token_f1("", "") == 1.0
    assert token_f1("w x y z", "y z e f") == pytest.approx(0.5)


def test_speed_task_measures_latency_and_tokens_per_second(model, tokenizer, tmp_path):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Gold?"}, {"question": "Helium?"}])
    run = run_task(SpeedTask(kind="speed", name="speed", prompts=prompts, requests=3, max_new_tokens=4),
                   model, tokenizer, DECODING)
    assert run.details["requests"] == 3
    assert 0 < run.metrics["latency_ms_p50"] <= run.metrics["latency_ms_p95"]
    assert run.metrics["tokens_per_s"] > 0 and run.metrics["batch_tokens_per_s"] > 0
