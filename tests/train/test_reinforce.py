"""Reinforcement finetuning (GRPO) on a tiny model: the loss against a plain per-answer computation, sampling that
does not depend on batch-mates, the recipe learning a grader's reward, exact resume and row errors."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from tests.tiny import tiny_model
from tunesmith.config import ConfigError, LoraConfig, load_config
from tunesmith.data.prompts import load_prompt_rows
from tunesmith.models.chat import render_prompts, stop_token_ids
from tunesmith.models.decoding.offline import answer_token_ids
from tunesmith.models.decoding.requests import SamplingParams
from tunesmith.train.graders import parse_grader
from tunesmith.train.lora import apply_lora
from tunesmith.train.recipes import train_run
from tunesmith.train.reward_objective import (
    Answers,
    GraderFailed,
    GroupRewardObjective,
    PromptBatch,
    PromptExample,
    group_advantages,
)
from tunesmith.train.setup import InvalidDataError

CONTAINS_O = {"type": "string_check", "name": "has_o", "input": "{{ sample.output_text }}", "reference": "o",
              "operation": "like"}
QUESTIONS = ["What is gold?", "Name a noble gas.", "Say something.", "Which element is 2?", "What is tin?", "Hello?"]


def objective(tokenizer, beta=0.0, group_size=4, scale="group", grader=CONTAINS_O,
              mask_truncated=False) -> GroupRewardObjective:
    return GroupRewardObjective(parse_grader(grader), group_size, 6, 1.0, 1.0, beta, scale,
                                frozenset(stop_token_ids(tokenizer)), mask_truncated, tokenizer)


def prompts(tokenizer, questions=QUESTIONS) -> list[PromptExample]:
    ids = render_prompts(tokenizer, [[{"role": "user", "content": q}] for q in questions])
    return [PromptExample(tuple(p), {"question": q}, i + 1) for i, (q, p) in enumerate(zip(questions, ids))]


def test_advantages_are_rewards_against_their_group():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5])
    scaled = group_advantages(rewards, 4, "group")
    std = torch.tensor([1.0, 0.0, 0.0, 1.0]).std()  # unbiased, as TRL's torch.std
    assert torch.allclose(scaled[:4], torch.tensor([0.5, -0.5, -0.5, 0.5]) / (std + 1e-4))
    assert torch.equal(scaled[4:], torch.zeros(4))  # a group that scores alike teaches nothing
    assert torch.allclose(group_advantages(rewards, 4, "none")[:4], torch.tensor([0.5, -0.5, -0.5, 0.5]))


def plain_grpo_loss(model, tokenizer, batch: list[PromptExample], answers: Answers, group_size: int,
                    beta: float = 0.0, reference=None, masked: torch.Tensor | None = None) -> torch.Tensor:
    """TRL's loss_type "grpo" written out per answer, one unpacked forward each: per prompt, the mean over its answers
    of mean_t(−A·ratio_t) (+ β·mean_t k3 KL), summed over prompts; a `masked` answer adds 0 but still counts in the
    mean (TRL's mask_truncated_completions zeroes its completion mask)."""
    advantages = group_advantages(answers.rewards, group_size, "group")
    losses = []
    for i, prompt in enumerate(batch):
        for k in range(group_size):
            answer = answers.tokens[i * group_size + k]
            ids = torch.tensor([list(prompt.prompt_ids) + answer])
            start = len(prompt.prompt_ids)
            logits = model(input_ids=ids).logits[0, start - 1:-1].float()
            logp = F.log_softmax(logits, -1).gather(1, torch.tensor(answer)[:, None])[:, 0]
            term = -advantages[i * group_size + k] * torch.exp(logp - logp.detach())  # TRL's ratio: 1, gradient ∇logp
            if beta:
                with torch.no_grad():
                    ref = F.log_softmax(reference(input_ids=ids).logits[0, start - 1:-1].float(), -1)
                    ref = ref.gather(1, torch.tensor(answer)[:, None])[:, 0]
                term = term + beta * (torch.exp(ref - logp) - (ref - logp) - 1)
            losses.append(term.mean() * (0.0 if masked is not None and masked[i * group_size + k] else 1.0))
    return torch.stack(losses).view(-1, group_size).mean(dim=1).sum()


def moved_lora(tokenizer):
    model = apply_lora(tiny_model(tokenizer, seed=1), LoraConfig(r=4, alpha=8))
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    return model.train()


@pytest.mark.parametrize("beta, mask_truncated", [(0.0, False), (0.2, False), (0.2, True)])
def test_packed_loss_and_gradient_equal_the_plain_per_answer_computation(tokenizer, beta, mask_truncated):
    model = moved_lora(tokenizer)
    goal = objective(tokenizer, beta=beta, grader={**CONTAINS_O, "reference": "a"},  # ~half this model's answers
                     mask_truncated=mask_truncated)
    batch = prompts(tokenizer)[:3]
    torch.manual_seed(5)
    answers = goal.answer(model, batch)
    assert len(answers.tokens) == 12 and answers.rewards.shape == (12,)
    assert 0 < answers.rewards.sum() < 12, "the test needs groups that score differently"
    answers.clipped = torch.arange(12) % 3 == 0  # whichever were cut: a third of the answers, some in each group
    goal_with_fixed = GroupRewardObjective(**{**goal.__dict__})
    object.__setattr__(goal_with_fixed, "answer", lambda model, prompts: answers)
    loss, metrics = goal_with_fixed.loss_sum(model, PromptBatch(batch, width=128))
    grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])

    def reference_model():
        from tunesmith.train.lora import adapters_switched_off
        class Off(torch.nn.Module):
            def forward(self, **kw):
                with adapters_switched_off(model):
                    return model(**kw)
        return Off()

    expected = plain_grpo_loss(model, tokenizer, batch, answers, 4, beta, reference_model() if beta else None,
                               masked=answers.clipped if mask_truncated else None)
    expected_grads = torch.autograd.grad(expected, [p for p in model.parameters() if p.requires_grad])
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    assert max((a - b).abs().max().item() for a, b in zip(grads, expected_grads)) < 1e-5
    assert any(g.abs().max() > 0 for g in grads)
    assert metrics["reward"].item() == pytest.approx(answers.rewards.view(3, 4).mean(dim=1).sum().item())
    assert metrics["clipped_answers"].item() == pytest.approx(4 / 4)  # 4 answers cut, per group of 4
    trained = sum(len(answers.tokens[i]) for i in range(12) if not (mask_truncated and answers.clipped[i]))
    assert sum(prompt.trained[0] for prompt in batch) == trained  # the loop's trained tokens
    if beta:
        assert metrics["kl"].item() > 0


def test_sampled_answers_follow_their_seed_not_their_batch_mates(tokenizer):
    model = tiny_model(tokenizer, seed=2)
    ids = [list(p.prompt_ids) for p in prompts(tokenizer)]
    params = [SamplingParams(max_new_tokens=6, temperature=1.0, n=3, seed=100 + i) for i in range(len(ids))]
    together = answer_token_ids(model, tokenizer, ids, params, max_rows=7)  # rows refill mid-batch
    alone = [answer_token_ids(model, tokenizer, [p], [s])[0] for p, s in zip(ids, params)]
    assert together == alone
    assert all(len(choices) == 3 for choices in together)
    assert any(len({tuple(c) for c in choices}) > 1 for choices in together), "a prompt's n answers are drawn apart"
    with torch.autocast("cpu", dtype=torch.bfloat16):  # inside a bf16 training step: the cache takes bf16
        sampled_bf16 = answer_token_ids(model, tokenizer, ids, params, max_rows=7)
    assert [len(choices) for choices in sampled_bf16] == [3] * len(ids)
    greedy = SamplingParams(max_new_tokens=6, temperature=0.0)
    assert answer_token_ids(model, tokenizer, ids[:2], [greedy, greedy]) == \
        [[a] for a in [answer_token_ids(model, tokenizer, [i], [greedy])[0][0] for i in ids[:2]]]


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def rl_config(tmp_path, tiny_model_dir, **train):
    rows = [{"messages": [{"role": "user", "content": q}], "answer": "o"} for q in QUESTIONS]
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = load_config(None, {
        "out": tmp_path / "run", "model.base": str(tiny_model_dir), "train.method": "reinforcement",
        "data.train": write_rows(tmp_path / "train.jsonl", rows), "data.valid": write_rows(tmp_path / "valid.jsonl", rows[:3]),
        "reinforcement.grader": {**CONTAINS_O, "reference": "{{ item.answer }}"}, "reinforcement.group_size": 4,
        "reinforcement.max_new_tokens": 6, "train.batch_size": 3, "train.log_every": 1,
        # all weights: LoRA on this 130k-parameter model moved the reward 0.35 -> 0.5 in 60 steps, all weights 0.46 -> 1.0
        "train.weights": "full", "train.lr": 3e-3,
        "train.save_every": 5, "train.warmup_ratio": 0.0, "train.scheduler": "constant", "train.seed": 3,
        "train.bf16": False, **train})
    return config


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_recipe_raises_the_graders_reward_and_exports(tmp_path, tiny_model_dir):
    config = rl_config(tmp_path, tiny_model_dir, **{"train.max_steps": 40, "train.eval_every": 40})
    result = train_run(config)
    logged = metrics(result.run_dir)
    rewards = [r["reward"] for r in logged if "reward" in r]
    assert len(rewards) == 40
    assert sum(rewards[-10:]) / 10 > sum(rewards[:10]) / 10 + 0.3, rewards  # it learns to write an "o"
    assert "valid_reward" in logged[-1] and logged[-1]["valid_loss"] == -logged[-1]["valid_reward"]
    assert (result.run_dir / "model" / "model.safetensors").is_file()
    # trained tokens: every answer's tokens (≤ 6 each, 12 answers a step), counted once sampled
    assert 40 * 12 <= result.trained_tokens <= 40 * 12 * 6 and logged[-1]["trained_tokens_per_s"] > 0
    record = json.loads((result.run_dir / "run.json").read_text())
    assert record["reinforcement"]["group_size"] == 4 and record["final_reward"] == rewards[-1]
    card = (result.run_dir / "model" / "README.md").read_text()
    assert "A reinforcement finetune (GRPO) of" in card and "| train | " in card and "| prompts | 6 (6) |" in card
    assert f"reinforcement against the grader `has_o` (string_check): mean reward of the sampled answers" in card
    assert "| reinforcement.group_size | 4 |" in card


def test_paused_then_resumed_run_samples_and_ends_as_the_uninterrupted_one(tmp_path, tiny_model_dir):
    whole = train_run(rl_config(tmp_path / "a", tiny_model_dir, **{"train.max_steps": 10}))
    config = rl_config(tmp_path / "b", tiny_model_dir, **{"train.max_steps": 10})
    paused = train_run(config, stop_after=5)
    assert not paused.finished
    train_run(config, resume=True)
    a, b = metrics(whole.run_dir), metrics(config.out)
    assert [r["reward"] for r in a] == [r["reward"] for r in b]  # the same answers sampled at every step
    assert a[-1]["loss"] == pytest.approx(b[-1]["loss"], abs=1e-6)
    wa, wb = load_file(str(whole.run_dir / "model" / "model.safetensors")), load_file(str(config.out / "model" / "model.safetensors"))
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_rows_lacking_the_graders_field_or_ending_in_an_answer_are_refused_by_line(tmp_path, tiny_model_dir):
    rows = [{"messages": [{"role": "user", "content": "Hi"}], "answer": "o"},
            {"messages": [{"role": "user", "content": "Hi"}]},
            {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}], "answer": "o"}]
    config = rl_config(tmp_path, tiny_model_dir)
    config.data.train = write_rows(tmp_path / "bad.jsonl", rows)
    with pytest.raises(InvalidDataError) as error:
        train_run(config)
    text = str(error.value)
    assert "bad.jsonl:2" in text and "answer" in text
    assert "bad.jsonl:3: messages[1].role" in text
    assert "bad.jsonl:1" not in text


def test_prompt_rows_keep_the_whole_row_as_the_graders_item(tmp_path):
    path = write_rows(tmp_path / "rows.jsonl", [{"messages": [{"role": "system", "content": "Be brief."},
                                                              {"role": "user", "content": "2+2?"}], "answer": 4}])
    loaded = load_prompt_rows(path)
    assert not loaded.errors
    assert loaded.rows[0].item["answer"] == 4 and loaded.rows[0].messages[0]["role"] == "system"
    bad = load_prompt_rows(write_rows(tmp_path / "pairs.jsonl", [{"input": {"messages": []}, "preferred_output": []}]))
    assert "pairs.jsonl:1: messages: missing" in str(bad.errors[0])


def test_a_run_without_a_grader_or_with_a_bad_one_stops_before_loading(tmp_path, tiny_model_dir):
    config = rl_config(tmp_path, tiny_model_dir)
    config.reinforcement.grader = None
    with pytest.raises(ConfigError, match="reinforcement.grader"):
        train_run(config)
    config.reinforcement.grader = {**CONTAINS_O, "operation": "contains"}
    with pytest.raises(ConfigError, match="reinforcement.grader.operation"):
        train_run(config)
    assert not (tmp_path / "run").exists()


def test_the_kl_holds_a_continued_adapter_to_its_parent_not_to_the_base(tmp_path, tiny_model_dir):
    chat = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "Gold is Au."}]}
            for q in QUESTIONS]
    tmp_path.mkdir(parents=True, exist_ok=True)
    parent = train_run(load_config(None, {
        "out": tmp_path / "parent", "model.base": str(tiny_model_dir), "data.train": write_rows(tmp_path / "chat.jsonl", chat),
        "train.max_steps": 4, "train.lr": 5e-2, "train.bf16": False, "lora.r": 4, "lora.alpha": 8}))
    config = rl_config(tmp_path / "child", tiny_model_dir, **{
        "model.parent.run": parent.run_dir, "train.weights": None, "train.lr": 1e-3, "train.max_steps": 1,
        "reinforcement.beta": 0.5})
    train_run(config)
    assert metrics(config.out)[0]["kl"] == 0.0  # step 1 samples from the parent's adapter, the reference
    config = rl_config(tmp_path / "from-base", tiny_model_dir, **{"train.weights": None, "train.max_steps": 1,
                                                                 "reinforcement.beta": 0.5})
    train_run(config)
    assert metrics(config.out)[0]["kl"] == 0.0  # a fresh adapter: the base, adapters off, is where it starts


def test_grader_failures_are_counted_and_a_grader_that_fails_on_everything_stops_the_run(tmp_path, tiny_model_dir):
    partly = {"type": "python", "name": "partly", "source":
              "def grade(sample, item):\n    return 1.0 if 'o' in sample['output_text'] else item['missing']\n"}
    config = rl_config(tmp_path / "partly", tiny_model_dir, **{"train.max_steps": 2, "reinforcement.grader": partly})
    train_run(config)
    logged = metrics(config.out)
    assert all(0 < r["grader_errors"] < 4 for r in logged), logged  # per prompt, of its 4 answers
    broken = {"type": "python", "name": "broken", "source": "def grade(sample, item):\n    raise ValueError('no')\n"}
    config = rl_config(tmp_path / "broken", tiny_model_dir, **{"train.max_steps": 2, "reinforcement.grader": broken})
    with pytest.raises(GraderFailed, match="failed on all 12 answers of a batch, e.g.: ValueError: no"):
        train_run(config)


def test_a_model_grader_is_judged_by_a_model_loaded_beside_the_trained_one(tmp_path, tiny_model_dir, monkeypatch):
    from tunesmith.train import local_judge

    loads, load_model = [], local_judge.load_model

    def counted(ref, dtype=torch.float32):
        loads.append(ref)
        return load_model(ref, dtype)

    monkeypatch.setattr(local_judge, "load_model", counted)
    judge = {"type": "label_model", "name": "judge", "model": "the-judge", "labels": ["good", "bad"],
             "passing_labels": ["good"], "input": [{"role": "user", "content": "Grade: {{ sample.output_text }}"}]}
    config = rl_config(tmp_path, tiny_model_dir, **{"train.max_steps": 3, "reinforcement.grader": judge,
                                                    "reinforcement.judges": {"the-judge": str(tiny_model_dir)}})
    result = train_run(config)
    rewards = [r["reward"] for r in metrics(result.run_dir) if "reward" in r]
    assert len(rewards) == 3 and all(r * 12 == round(r * 12) for r in rewards)  # each answer judged 0 or 1
    assert loads == [str(tiny_model_dir)]  # loaded once, by the name's mapping


def test_the_local_judge_answers_under_the_schema_whatever_shares_its_batch(tiny_model_dir):
    from tunesmith.train.local_judge import LocalJudge

    judge = LocalJudge({})
    schema = {"type": "object", "properties": {"label": {"type": "string", "enum": ["yes", "no"]}},
              "required": ["label"], "additionalProperties": False}
    sampling = {"temperature": 1.0, "max_completion_tokens": 32, "seed": 5}
    conversations = [[{"role": "user", "content": f"Is {q} right?"}] for q in QUESTIONS[:4]]
    together = judge.ask_many(str(tiny_model_dir), conversations, schema, sampling)
    assert [json.loads(a.text)["label"] in ("yes", "no") for a in together] == [True] * 4
    alone = [judge.ask_many(str(tiny_model_dir), conversations[i:i + 1], schema, {**sampling, "seed": 5 + i})[0]
             for i in range(4)]
    assert [a.text for a in alone] == [a.text for a in together]
    assert all(a.usage["completion_tokens"] > 0 for a in together)
