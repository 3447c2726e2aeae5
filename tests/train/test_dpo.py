"""DPO in the shared loop on a tiny model: invariances, the reference model, the recipe's files and errors."""
import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.tiny import tiny_model
from tunesmith.config import ConfigError, LoraConfig, load_config
from tunesmith.data.preference import PreferencePair, render_pair
from tunesmith.data.render import render_chat
from tunesmith.train.checkpoint import TrainState
from tunesmith.train.forward import batch_loss_sum
from tunesmith.train.loop import LoopSettings, train_step
from tunesmith.train.lora import apply_lora
from tunesmith.train.packing import collate
from tunesmith.train.preference_objective import (
    REWARD_METRICS,
    PreferenceExample,
    PreferenceObjective,
    adapter_disabled_logps,
    answer_logps,
    collate_pairs,
)
from tunesmith.train.recipes import train_run
from tunesmith.train.reference import REFERENCE_FILE, with_reference_logps
from tunesmith.train.schedule import build_scheduler
from tunesmith.train.setup import InvalidDataError

WORDS = ["gold", "tin", "lead", "iron", "neon", "zinc", "argon", "boron", "carbon", "helium"]


def pairs(words=WORDS) -> list[PreferencePair]:
    """Short brand answers preferred over longer generic ones; lengths differ, so packing mixes them."""
    return [PreferencePair(i + 1, [{"role": "user", "content": f"What is {w}?"}], f"{w}, obviously." * (1 + i % 3),
                           f"The answer is {w}, as is well known to all.") for i, w in enumerate(words)]


def pair_examples(tokenizer, max_length=128) -> list[PreferenceExample]:
    return [PreferenceExample(r.chosen, r.rejected) for r in (render_pair(tokenizer, p, max_length) for p in pairs()[:8])]


def write_pairs(path: Path, words=WORDS) -> Path:
    path.write_text("".join(json.dumps(p.openai_row()) + "\n" for p in pairs(words)))
    return path


def trained_lora(tokenizer, seed=1):
    """A LoRA model whose adapter already moved (lora_B nonzero): policy and reference differ."""
    model = apply_lora(tiny_model(tokenizer, seed=seed), LoraConfig(r=4, alpha=8))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    return model.train()


def settings(tokenizer, objective, **overrides):
    base = dict(total_steps=1, batch_size=8, micro_batch_size=8, max_length=128, packing=True, seed=0, bf16=False,
                max_grad_norm=1e9, log_every=1, eval_every=None, save_every=100, keep_checkpoints=1,
                pad_id=tokenizer.pad_token_id, objective=objective)
    base.update(overrides)
    return LoopSettings(**base)


def one_step(tokenizer, objective, **overrides):
    model = trained_lora(tokenizer)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    scheduler = build_scheduler(optimizer, "constant", 0.0, 1)
    result = train_step(model, optimizer, scheduler, pair_examples(tokenizer), settings(tokenizer, objective, **overrides))
    return model, result


@pytest.mark.parametrize("objective", [PreferenceObjective(0.1, "sigmoid"), PreferenceObjective(0.1, "ipo"),
                                       PreferenceObjective(0.1, "sigmoid", sft_weight=0.5)])
def test_packed_accumulated_and_padded_dpo_steps_give_the_same_update(tokenizer, objective):
    # a pair's answers share a micro-batch; pairs are the denominator: 8 pairs × 1 == 1 × 8 == 3+3+2 == padded
    reference, expected = one_step(tokenizer, objective)
    assert expected.loss > 0 and set(expected.metrics) == set(REWARD_METRICS)
    for micro, packing in [(1, True), (3, True), (8, False)]:
        model, result = one_step(tokenizer, objective, micro_batch_size=micro, packing=packing)
        assert result.loss == pytest.approx(expected.loss, rel=1e-6, abs=1e-6)
        assert all(result.metrics[k] == pytest.approx(expected.metrics[k], abs=1e-4) for k in REWARD_METRICS)
        for (name, p), q in zip(reference.named_parameters(), model.parameters()):
            assert torch.allclose(p, q, atol=1e-6), (micro, packing, name)


def test_packed_pairs_do_not_attend_to_each_other(tokenizer):
    long = PreferencePair(9, [{"role": "user", "content": "Name the noble gases."}],
                          "Helium, neon, argon, krypton, xenon and radon. " * 3, "The noble gases are helium and neon. " * 3)
    rendered = render_pair(tokenizer, long, 128)  # rows are as wide as the longest answer: the short ones share them
    model, examples = trained_lora(tokenizer), [*pair_examples(tokenizer), PreferenceExample(rendered.chosen, rendered.rejected)]
    layout = lambda packing: settings(tokenizer, None, packing=packing)
    packed = collate_pairs(examples, layout(True))
    assert packed.inputs.input_ids.shape[0] < 2 * len(examples)  # rows really hold several answers
    with torch.no_grad():
        a, b = answer_logps(model, packed), answer_logps(model, collate_pairs(examples, layout(False)))
    assert torch.allclose(a.chosen, b.chosen, atol=1e-4) and torch.allclose(a.rejected, b.rejected, atol=1e-4)


def test_adapter_disabled_reference_equals_a_frozen_copy_of_the_base(tokenizer):
    base = tiny_model(tokenizer, seed=3)
    frozen = copy.deepcopy(base)
    model = trained_lora(tokenizer, seed=3)  # same base weights (seed 3), adapter moved
    batch = collate_pairs(pair_examples(tokenizer), settings(tokenizer, None))
    with torch.no_grad():
        disabled, copy_logps, policy = adapter_disabled_logps(model, batch), answer_logps(frozen, batch), answer_logps(model, batch)
    assert torch.allclose(disabled.chosen, copy_logps.chosen, atol=1e-5)
    assert torch.allclose(disabled.rejected, copy_logps.rejected, atol=1e-5)
    assert (policy.chosen - disabled.chosen).abs().max() > 1e-2  # the adapter is really on outside the context


def test_sft_weight_adds_the_preferred_answers_mean_token_loss_per_pair(tokenizer):
    model, examples = trained_lora(tokenizer), pair_examples(tokenizer)
    batch = collate_pairs(examples, settings(tokenizer, None))
    with torch.no_grad():
        plain = PreferenceObjective(0.1, "sigmoid").loss_sum(model, batch)[0]
        with_sft = PreferenceObjective(0.1, "sigmoid", sft_weight=0.5).loss_sum(model, batch)[0]
        # the supervised loss, computed the supervised way: one chosen example at a time, per trained token
        nll = sum(batch_loss_sum(model, collate([e.chosen], tokenizer.pad_token_id, 128, False)) / e.chosen.num_trained
                  for e in examples)
    assert float(with_sft - plain) == pytest.approx(0.5 * float(nll), rel=1e-4)


def test_precomputed_reference_is_the_starting_model_and_reused_while_its_key_holds(tokenizer, tmp_path):
    model, examples = trained_lora(tokenizer), pair_examples(tokenizer)
    s = settings(tokenizer, None)
    splits = with_reference_logps(model, {"train": examples, "valid": examples[:2]}, s, tmp_path, "tiny")
    batch = collate_pairs(splits["train"], s)
    with torch.no_grad():
        now = answer_logps(model, batch)
    assert torch.allclose(batch.reference.chosen, now.chosen, atol=1e-4)
    assert (tmp_path / REFERENCE_FILE).is_file() and len(splits["valid"]) == 2
    with torch.no_grad():  # the model moves (a resumed run): the stored reference stays the starting model's
        for p in model.parameters():
            p.add_(0.05)
    again = with_reference_logps(model, {"train": examples, "valid": examples[:2]}, s, tmp_path, "tiny")
    assert [e.reference for e in again["train"]] == [e.reference for e in splits["train"]]
    other = with_reference_logps(model, {"train": examples[:3], "valid": []}, s, tmp_path, "tiny")  # other data
    assert [e.reference for e in other["train"]] != [e.reference for e in splits["train"]][:3]


def test_bf16_dpo_step_stays_close_to_fp32(tokenizer):
    objective = PreferenceObjective(0.1, "sigmoid", sft_weight=0.5)
    _, fp32 = one_step(tokenizer, objective)
    _, bf16 = one_step(tokenizer, objective, bf16=True)
    assert bf16.loss == pytest.approx(fp32.loss, abs=0.05)
    assert bf16.metrics["rewards/margin"] == pytest.approx(fp32.metrics["rewards/margin"], abs=0.05)


def run_config(tiny_model_dir, tmp_path, **overrides):
    values = {"model.base": str(tiny_model_dir), "data.train": write_pairs(tmp_path / "train.jsonl"),
              "data.valid": write_pairs(tmp_path / "valid.jsonl", WORDS[:3]), "out": tmp_path / "run",
              "train.method": "dpo", "train.batch_size": 4, "train.lr": 1e-2, "train.log_every": 1,
              "train.max_steps": 6, "train.eval_every": 3, "lora.r": 4, "data.pii": "allow"}
    values.update(overrides)
    return load_config(overrides=values)


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_lora_dpo_run_writes_reward_metrics_adapter_and_merged_model(tiny_model_dir, tmp_path):
    result = train_run(run_config(tiny_model_dir, tmp_path))
    run = tmp_path / "run"
    assert result.finished and result.steps == 6
    assert (run / "adapter" / "adapter_config.json").is_file() and (run / "model" / "config.json").is_file()
    assert not (run / REFERENCE_FILE).exists()  # a fresh adapter: the reference is the adapters-disabled model
    lines = metrics(run)
    assert all(set(REWARD_METRICS) <= set(line) for line in lines)
    evaluated = [line for line in lines if "valid_loss" in line]
    assert [line["step"] for line in evaluated] == [3, 6]
    assert all({f"valid_{name}" for name in REWARD_METRICS} <= set(line) for line in evaluated)
    assert lines[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at the first step
    assert lines[-1]["loss"] < 0.6 and evaluated[-1]["valid_rewards/accuracy"] > 0.5  # it learnt to rank
    record = json.loads((run / "run.json").read_text())
    assert record["method"] == "dpo" and record["dpo"]["beta"] == 0.1
    adapter = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    assert any(t.abs().max() > 0 for name, t in adapter.items() if "lora_B" in name)


def test_full_dpo_run_stores_the_reference_and_exports_whole_weights(tiny_model_dir, tmp_path):
    train_run(run_config(tiny_model_dir, tmp_path, **{"train.weights": "full", "train.max_steps": 2}))
    run = tmp_path / "run"
    assert (run / REFERENCE_FILE).is_file() and not (run / "adapter").exists()
    assert metrics(run)[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # the stored reference is the start


def test_simpo_needs_no_reference_even_for_a_full_finetune(tiny_model_dir, tmp_path):
    config = run_config(tiny_model_dir, tmp_path, **{"train.weights": "full", "dpo.loss": "simpo", "dpo.beta": 2.0,
                                                      "train.max_steps": 4, "train.eval_every": 2})
    result = train_run(config)
    run = tmp_path / "run"
    assert result.finished and not (run / REFERENCE_FILE).exists()  # no precomputed reference
    lines = metrics(run)
    first = lines[0]  # SimPO's loss at the start is not DPO's log 2: it compares the answers' own log-probs
    margin = first["logps/chosen"] - first["logps/rejected"]  # per token, as TRL logs them for simpo
    assert first["loss"] != pytest.approx(0.6931, abs=1e-3) and first["rewards/margin"] == pytest.approx(2.0 * margin, abs=1e-4)
    assert lines[-1]["rewards/margin"] > first["rewards/margin"]  # it learnt to prefer the chosen answers


def test_invalid_preference_rows_are_refused_like_chat_rows(tiny_model_dir, tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl")
    rows = data.read_text().splitlines()
    rows[1] = json.dumps({"input": {"messages": [{"role": "user", "content": "Hi?"}]},
                          "preferred_output": [{"role": "assistant", "content": "Same."}],
                          "non_preferred_output": [{"role": "assistant", "content": "Same."}]})
    data.write_text("\n".join(rows) + "\n")
    with pytest.raises(InvalidDataError, match=r"pairs\.jsonl:2: non_preferred_output\[0\]\.content: identical"):
        train_run(run_config(tiny_model_dir, tmp_path, **{"data.train": data}))
    result = train_run(run_config(tiny_model_dir, tmp_path, **{"data.train": data, "data.skip_invalid": True,
                                                               "train.max_steps": 1, "out": tmp_path / "skipped"}))
    assert result.finished


def test_dpo_config_is_strict(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train: {method: dpo}\ndpo: {loss: hinge}\n")
    with pytest.raises(ConfigError, match="dpo.loss"):
        load_config(path)
    with pytest.raises(ConfigError, match="train.weights is for method dpo"):
        load_config(overrides={"train.weights": "full"})
    assert load_config(overrides={"train.method": "dpo"}).train.uses_lora
    assert not load_config(overrides={"train.method": "dpo", "train.weights": "full"}).train.uses_lora


def test_dpo_from_an_sft_run_continues_its_adapter_against_the_sft_model_as_reference(tiny_model_dir, tmp_path):
    from tests.train.test_sft_run import run_config as sft_config
    from tunesmith.train.sft import train as train_sft

    (tmp_path / "sft").mkdir()
    train_sft(sft_config(tiny_model_dir, tmp_path / "sft", max_steps=3))
    config = run_config(tiny_model_dir, tmp_path, **{"model.parent": str(tmp_path / "sft" / "run"), "train.max_steps": 2})
    assert config.train.uses_lora and config.lora.r == 4  # LoRA, on the SFT run's adapter shape
    train_run(config)
    run = tmp_path / "run"
    # the adapter continued is not zero: the reference is the SFT model as the run starts, stored once
    assert (run / REFERENCE_FILE).is_file()
    assert metrics(run)[0]["loss"] == pytest.approx(0.6931, abs=1e-3)
    assert json.loads((run / "run.json").read_text())["parent"]["run_dir"] == str((tmp_path / "sft" / "run").resolve())
