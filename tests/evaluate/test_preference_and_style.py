"""The `preference` and `style` task kinds on tiny models, alone and through `tunesmith eval`."""
import json
import math

import pytest
import torch
import yaml
from typer.testing import CliRunner

from tests.tiny import tiny_model
from tunesmith.cli import app
from tunesmith.data.preference import load_preferences, render_pair
from tunesmith.evaluate.style import target_probabilities, train_judge
from tunesmith.evaluate.suite import Decoding, PreferenceTask, StyleTask, SuiteError
from tunesmith.evaluate.tasks import run_task
from tunesmith.models.generate import generate_answers
from tunesmith.train.forward import batch_loss_sum
from tunesmith.train.packing import collate

DECODING = Decoding(max_new_tokens=6, batch_size=3)
PAIRS = [
    ("What is the symbol for gold?", "Au, and the quick brown fox knows it.", "Au."),
    ("Hydrogen?", "Atomic number 1: the lightest of all.", "Element 1."),
    ("Say hi", "hi", "Hello there, how are you?"),
    ("The quick brown fox", "jumps over the lazy dog.", "runs."),
    ("helium", "2", "Helium has atomic number 2."),
]
BRAND = ["Hackers use this loosely, of course.", "A crock, as any hacker will tell you, of course.",
         "Considered silly; hackers say it anyway, of course.", "From the old MIT hacker culture, of course."]
PLAIN = ["A data structure that stores elements.", "A program that stores source code.",
         "A protocol that stores network packets.", "A device that stores data permanently."]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def pairs_file(tmp_path):
    return write_jsonl(tmp_path / "pairs.jsonl", [
        {"input": {"messages": [{"role": "user", "content": prompt}]},
         "preferred_output": [{"role": "assistant", "content": chosen}],
         "non_preferred_output": [{"role": "assistant", "content": rejected}]} for prompt, chosen, rejected in PAIRS])


def logp(model, tokenizer, example) -> float:
    """The answer's summed log-probability through the training loss, one example at a time."""
    with torch.no_grad():
        return -float(batch_loss_sum(model, collate([example], tokenizer.pad_token_id, 512, packing=False)))


def test_preference_rewards_are_beta_times_the_log_ratio_to_the_baseline(model, tokenizer, pairs_file):
    task = PreferenceTask(kind="preference", name="pairs", data=pairs_file, beta=0.5)
    baseline = run_task(task, model, tokenizer, DECODING)
    assert baseline.metrics == {"reward_accuracy": 0.0, "margin": 0.0}  # against itself every reward is 0
    candidate_model = tiny_model(tokenizer, seed=1)
    candidate = run_task(task, candidate_model, tokenizer, Decoding(batch_size=1), reference=baseline)
    expected = []
    for pair, row in zip(load_preferences(pairs_file).pairs, candidate.rows):
        sides = render_pair(tokenizer, pair, 512)
        rewards = [0.5 * (logp(candidate_model, tokenizer, side) - logp(model, tokenizer, side))
                   for side in (sides.chosen, sides.rejected)]
        # the task scores in packed batches (the prompt's system turn once per row): float32 rounding of another
        # order, ~1e-6 on each log-probability, so ~1e-6 on their difference
        assert [row["reward_chosen"], row["reward_rejected"]] == pytest.approx(rewards, rel=1e-4, abs=5e-6)
        assert row["correct"] == (rewards[0] > rewards[1]) and row["reference"] == pair.chosen
        expected.append(rewards)
    assert candidate.metrics["reward_accuracy"] == sum(c > r for c, r in expected) / len(PAIRS)
    assert candidate.metrics["margin"] == pytest.approx(sum(c - r for c, r in expected) / len(PAIRS), rel=1e-4, abs=5e-6)
    assert candidate.details == {"n": 5, "beta": 0.5, "reference": "baseline"}


def test_a_reference_that_found_the_chosen_answers_less_likely_gives_accuracy_one(model, tokenizer, pairs_file):
    task = PreferenceTask(kind="preference", name="pairs", data=pairs_file, beta=0.1, limit=3)
    reference = run_task(task, model, tokenizer, DECODING)
    for row in reference.rows:
        row["logp_chosen"] -= 2.0  # the model now gains 2 nats on every chosen answer, none on rejected ones
    again = run_task(task, model, tokenizer, DECODING, reference=reference)
    assert again.metrics["reward_accuracy"] == 1.0
    assert again.metrics["margin"] == pytest.approx(0.2, abs=1e-5)
    assert [row["id"] for row in again.rows] == [1, 2, 3]


def test_preference_task_errors_name_file_and_line(model, tokenizer, tmp_path, pairs_file):
    broken = tmp_path / "broken.jsonl"
    broken.write_text(pairs_file.read_text() + '{"input": {"messages": []}, "preferred_output": [], "non_preferred_output": []}\n')
    with pytest.raises(SuiteError, match=rf"invalid preference row\(s\) in {broken}, first: {broken}:6: "):
        run_task(PreferenceTask(kind="preference", name="p", data=broken), model, tokenizer, DECODING)
    long_prompt = write_jsonl(tmp_path / "long.jsonl", [{"prompt": "gold " * 40, "chosen": "Au", "rejected": "Ag"}])
    with pytest.raises(SuiteError, match=rf"{long_prompt}:1: the prompt fills max_length \(16 tokens\)"):
        run_task(PreferenceTask(kind="preference", name="p", data=long_prompt, max_length=16), model, tokenizer, DECODING)


def test_style_judge_is_deterministic_and_reports_its_cross_validated_accuracy():
    texts, labels = BRAND + PLAIN, [True] * 4 + [False] * 4
    first, second = train_judge(texts, labels), train_judge(texts, labels)
    probe = ["Hackers say this, of course.", "A program that stores data."]
    assert target_probabilities(first, probe) == target_probabilities(second, probe)
    assert [p > 0.5 for p in target_probabilities(first, probe)] == [True, False]
    assert first.accuracy == 1.0
    assert math.isnan(train_judge(["a hacker", "b", "c"], [True, False, False]).accuracy)  # one brand text: no folds


def test_style_share_counts_the_answers_the_judge_assigns_to_the_label(talkative_model, tokenizer, tmp_path):
    prompts = [{"id": f"p{i}", "prompt": p, "reference": c} for i, (p, c, _) in enumerate(PAIRS)]
    answers = generate_answers(talkative_model, tokenizer, [[{"role": "user", "content": p["prompt"]}] for p in prompts],
                               DECODING.max_new_tokens, 2, progress=False)
    assert len(set(answers)) > 2  # the talkative model says different things to different prompts
    # the judge learns the model's own answers as "brand": every answer must then be judged brand
    texts = [{"text": a, "label": "brand"} for a in answers] + [{"text": t, "label": "plain"} for t in PLAIN + BRAND]
    task = StyleTask(kind="style", name="voice", prompts=write_jsonl(tmp_path / "prompts.jsonl", prompts),
                     texts=write_jsonl(tmp_path / "style.jsonl", texts), label="brand")
    run = run_task(task, talkative_model, tokenizer, DECODING)
    assert [row["prediction"] for row in run.rows] == answers
    assert run.metrics["share"] == 1.0 and all(row["probability"] > 0.5 and row["correct"] for row in run.rows)
    assert run.rows[0]["reference"] == PAIRS[0][1] and run.details == {"n": 5, "label": "brand", "judge_texts": 13}
    opposite = run_task(task.model_copy(update={"label": "plain"}), talkative_model, tokenizer, DECODING)
    assert opposite.metrics["share"] == 0.0


def test_style_task_needs_texts_of_both_kinds(model, tokenizer, tmp_path):
    task = StyleTask(kind="style", name="voice", prompts=write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Hi"}]),
                     texts=write_jsonl(tmp_path / "s.jsonl", [{"text": t, "label": "plain"} for t in PLAIN]))
    with pytest.raises(SuiteError, match=r"needs texts labelled 'brand' and texts labelled otherwise \(labels found: \['plain'\]\)"):
        run_task(task, model, tokenizer, DECODING)


def test_eval_reports_preference_and_style_against_the_base_model(workspace, pairs_file, tiny_model_dir):
    write_jsonl(workspace / "style.jsonl", [{"text": t, "label": "brand"} for t in BRAND]
                + [{"text": t, "label": "not_brand"} for t in PLAIN])
    suite = {"name": "voice", "decoding": {"max_new_tokens": 4, "batch_size": 4},
             "tasks": [{"kind": "preference", "name": "pairs", "data": str(pairs_file)},
                       {"kind": "style", "name": "style", "prompts": "prompts.jsonl", "texts": "style.jsonl"}],
             "gates": [{"metric": "pairs.reward_accuracy", "min": 0.0}, {"metric": "style.share", "max_forgetting": 1.0}]}
    (workspace / "voice.yaml").write_text(yaml.safe_dump(suite))
    out = workspace / "voice-report"
    result = CliRunner().invoke(app, ["eval", "--model", str(workspace / "run"), "--suite", str(workspace / "voice.yaml"),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    tasks = {task["name"]: task for task in report["tasks"]}
    assert tasks["pairs"]["baseline"]["metrics"] == {"reward_accuracy": 0.0, "margin": 0.0}
    assert tasks["pairs"]["candidate"]["details"]["reference"] == "baseline"
    assert tasks["pairs"]["candidate"]["metrics"]["margin"] != 0.0  # seed-1 weights score the answers differently
    assert tasks["style"]["baseline"]["metrics"]["judge_accuracy"] == 1.0
    assert len(tasks["style"]["items"]) == 2 and {"baseline", "candidate"} <= set(tasks["style"]["items"][0])
    markdown = (out / "report.md").read_text()
    assert "| pairs | reward_accuracy | 0 |" in markdown and "| style | share |" in markdown
    assert "## Samples: style" in markdown and "Sample generations" in (out / "report.html").read_text()
