"""The model card of a real tiny run: front matter and sections from the run's own files, then the real
evaluation report's numbers once the run is evaluated."""
import json

import pytest
import yaml

from tunesmith.config import load_config
from tunesmith.train.model_card import write_model_card
from tunesmith.train.sft import train

ROWS = [("gold", "Au"), ("silver", "Ag"), ("iron", "Fe"), ("tin", "Sn")]


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("card")
    rows = [{"messages": [{"role": "user", "content": f"Symbol for {name}?"},
                          {"role": "assistant", "content": f"{symbol}."}]} for name, symbol in ROWS]
    rows[0]["messages"][0]["content"] += " Reply to ada@example.com"  # one PII finding to report
    rows[1]["messages"][0]["content"] += " (from <EMAIL_1>)"  # one value redacted before training
    (root / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = load_config(overrides={"model.base": str(tiny_model_dir), "data.train": root / "train.jsonl",
                                    "out": root / "run", "train.max_steps": 2, "train.batch_size": 2, "lora.r": 4,
                                    "data.pii": "allow"})  # trained as it is: the card must report the email
    train(config)
    return root


def test_card_of_an_unevaluated_run(tiny_run):
    run = tiny_run / "run"
    path = write_model_card(run)
    assert path == run / "model" / "README.md"
    card = path.read_text()
    record = json.loads((run / "run.json").read_text())
    meta = front_matter(card)
    assert meta["base_model"] == record["base_model"] and meta["license"] == "other"
    assert meta["datasets"] == [f"sha256:{record['train_sha256']}"] and "model-index" not in meta
    assert meta["tags"] == ["tunesmith", "lora"]
    for heading in ["## Intended use", "## Training data", "## Training procedure", "## Evaluation", "## Limitations"]:
        assert heading in card
    assert f"| train | `{record['train_file']}` | `{record['train_sha256']}` | chat | 4 (4) | email 1 | 1 |" in card
    assert "A LoRA finetune of" in card and "- method: lora" in card and "2 optimizer steps" in card and "| lora.r | 4 |" in card
    assert "Not evaluated" in card and "ada@example.com" not in card


def test_card_carries_the_evaluation_report(tiny_run, tiny_model_dir):
    from tunesmith.evaluate.report import write_reports
    from tunesmith.evaluate.runner import run_eval

    (tiny_run / "qa.jsonl").write_text("".join(json.dumps({"id": n, "question": f"Symbol for {n}?", "answer": s}) + "\n"
                                               for n, s in ROWS))
    (tiny_run / "general.txt").write_text("The quick brown fox jumps over the lazy dog.\n")
    (tiny_run / "prompts.jsonl").write_text(json.dumps({"id": "p1", "prompt": "Hello"}) + "\n")
    suite = {"name": "cardsuite", "decoding": {"max_new_tokens": 3, "batch_size": 4},
             "tasks": [{"kind": "qa", "name": "symbols", "data": "qa.jsonl"},
                       {"kind": "general", "name": "general", "text": "general.txt", "prompts": "prompts.jsonl"}],
             "gates": [{"metric": "general.perplexity", "max": 1e9}]}
    (tiny_run / "suite.yaml").write_text(yaml.safe_dump(suite))
    run = tiny_run / "run"
    write_reports(run_eval(str(run), tiny_run / "suite.yaml", baseline_ref=str(tiny_model_dir)), run / "eval")
    report = json.loads((run / "eval" / "report.json").read_text())

    (tiny_run / "exported").mkdir()  # the model directory may live anywhere (a registry's copy)
    card = write_model_card(run, tiny_run / "exported").read_text()
    results = front_matter(card)["model-index"][0]["results"]
    assert [r["task"]["name"] for r in results] == ["qa: symbols", "general: general"]
    perplexity = report["tasks"][1]["candidate"]["metrics"]["perplexity"]
    assert {"type": "perplexity", "value": perplexity}.items() <= next(
        m for m in results[1]["metrics"] if m["type"] == "perplexity").items()
    baseline = report["tasks"][1]["baseline"]["metrics"]["perplexity"]
    assert f"| general | perplexity | {baseline:.4g} | {perplexity:.4g} |" in card
    assert "### Forgetting check" in card and f"perplexity {baseline:.4g} → {perplexity:.4g}" in card
    assert f"- passed: {report['gates'][0]['message']}" in card and "Not evaluated" not in card
