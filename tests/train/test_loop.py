import math

import pytest
import torch

from tests.tiny import tiny_model
from tunesmith.config import LoraConfig
from tunesmith.data.render import render_chat
from tunesmith.train.checkpoint import TrainState, latest_checkpoint
from tunesmith.train.loop import LoopSettings, TrainingDiverged, fit, train_step
from tunesmith.train.schedule import build_scheduler
from tunesmith.train.lora import apply_lora

FACTS = [("gold", "Au"), ("hydrogen", "H"), ("helium", "He"), ("carbon", "C"),
         ("oxygen", "O"), ("iron", "Fe"), ("silver", "Ag"), ("copper", "Cu")]


def fact_examples(tokenizer):
    return [
        render_chat(tokenizer, [{"role": "user", "content": f"What is the symbol for {name}?"},
                                {"role": "assistant", "content": f"The symbol for {name} is {symbol}."}], 128)
        for name, symbol in FACTS
    ]


def settings(tokenizer, **overrides):
    base = dict(total_steps=4, batch_size=8, micro_batch_size=8, max_length=128, packing=True, seed=0, bf16=False,
                max_grad_norm=1.0, log_every=1, eval_every=None, save_every=2, keep_checkpoints=2,
                pad_id=tokenizer.pad_token_id)
    base.update(overrides)
    return LoopSettings(**base)


def one_step(tokenizer, micro_batch_size, packing):
    model = tiny_model(tokenizer, seed=1).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    scheduler = build_scheduler(optimizer, "constant", 0.0, 1)
    train_step(model, optimizer, scheduler, fact_examples(tokenizer),
               settings(tokenizer, micro_batch_size=micro_batch_size, packing=packing))
    return model


def test_accumulation_and_packing_do_not_change_the_update(tokenizer):
    # batch 8 × accumulation 1 == batch 1 × accumulation 8 == padded instead of packed
    reference = one_step(tokenizer, micro_batch_size=8, packing=True)
    for micro, packing in [(1, True), (3, True), (8, False)]:
        other = one_step(tokenizer, micro_batch_size=micro, packing=packing)
        for (name, p), q in zip(reference.named_parameters(), other.parameters()):
            assert torch.allclose(p, q, atol=1e-6), (micro, packing, name)


def test_loss_is_normalised_by_all_trained_tokens_not_micro_batch_means(tokenizer):
    # micro-batches with very different token counts: a mean of means would differ from the token mean
    examples = fact_examples(tokenizer)
    examples[0] = render_chat(tokenizer, [{"role": "user", "content": "x"},
                                          {"role": "assistant", "content": "The quick brown fox jumps over the lazy dog. " * 3}], 128)
    model = tiny_model(tokenizer, seed=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    scheduler = build_scheduler(optimizer, "constant", 0.0, 1)
    full = train_step(model, optimizer, scheduler, examples, settings(tokenizer, micro_batch_size=8))
    split = train_step(model, optimizer, scheduler, examples, settings(tokenizer, micro_batch_size=1))
    assert full.loss == pytest.approx(split.loss, rel=1e-5)


def test_lora_training_changes_adapters_and_leaves_base_frozen(tokenizer, tmp_path):
    model = apply_lora(tiny_model(tokenizer), LoraConfig(r=4, alpha=8))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    s = settings(tokenizer, total_steps=6)
    scheduler = build_scheduler(optimizer, "constant", 0.0, s.total_steps)
    fit(model, optimizer, scheduler, fact_examples(tokenizer), [], s, tmp_path, TrainState(0, 0))
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)
    assert any("lora_A" in n for n in changed) and any("lora_B" in n for n in changed)
    assert all(p.grad is None for n, p in model.named_parameters() if "lora_" not in n)


def test_training_lowers_loss_and_logs_metrics(tokenizer, tmp_path):
    model = tiny_model(tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    s = settings(tokenizer, total_steps=30, batch_size=4, micro_batch_size=4, save_every=100)
    scheduler = build_scheduler(optimizer, "constant", 0.0, s.total_steps)
    examples = fact_examples(tokenizer)
    fit(model, optimizer, scheduler, examples, examples[:2], s, tmp_path, TrainState(0, 0))
    import json
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, 31))
    assert {"step", "epoch", "loss", "lr", "grad_norm", "trained_tokens_per_s", "tokens_per_s", "peak_rss_mb"} <= set(lines[0])
    assert lines[-1]["loss"] < lines[0]["loss"] * 0.5
    assert "valid_loss" in lines[-1] and lines[1]["epoch"] == 1.0  # 8 examples / batch 4 = 2 steps per epoch


def test_nan_loss_stops_with_clear_error_and_keeps_last_good_checkpoint(tokenizer, tmp_path):
    model = tiny_model(tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    s = settings(tokenizer, total_steps=10, save_every=2)
    scheduler = build_scheduler(optimizer, "constant", 0.0, s.total_steps)

    def poison(step, record):
        if step == 3:
            with torch.no_grad():
                model.model.norm.weight.fill_(float("nan"))

    with pytest.raises(TrainingDiverged, match="nan"):
        fit(model, optimizer, scheduler, fact_examples(tokenizer), [], s, tmp_path, TrainState(0, 0), on_step=poison)
    assert latest_checkpoint(tmp_path).name == "step-000002"
    from safetensors.torch import load_file
    weights = load_file(str(latest_checkpoint(tmp_path) / "trainable.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_out_of_memory_halves_the_micro_batch_and_keeps_the_update(tokenizer, tmp_path, monkeypatch):
    import tunesmith.train.objective as objective  # where supervised training's loss is called

    def train(micro, fail_above=None):
        model = tiny_model(tokenizer, seed=1).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        s = settings(tokenizer, total_steps=2, micro_batch_size=micro, packing=False, save_every=100)
        scheduler = build_scheduler(optimizer, "constant", 0.0, s.total_steps)
        real = objective.batch_loss_and_hits

        def limited(model, batch, **kw):
            if fail_above and batch.input_ids.shape[0] > fail_above:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return real(model, batch, **kw)

        monkeypatch.setattr(objective, "batch_loss_and_hits", limited)
        (tmp_path / str(micro)).mkdir()
        fit(model, optimizer, scheduler, fact_examples(tokenizer), [], s, tmp_path / str(micro), TrainState(0, 0))
        return model, s

    reference, _ = train(micro=2)
    recovered, s = train(micro=8, fail_above=2)
    assert s.micro_batch_size == 2 and s.batch_size == 8
    for p, q in zip(reference.parameters(), recovered.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_activation_checkpointing_gives_the_same_gradients(tokenizer):
    from tunesmith.train.forward import batch_loss_sum, checkpointed
    from tunesmith.train.packing import collate

    batch = collate(fact_examples(tokenizer), tokenizer.pad_token_id, 128, packing=True)
    grads = []
    for checkpointing in (False, True):
        model = tiny_model(tokenizer, seed=2).train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        assert checkpointed(model) == model.is_activation_checkpointing == checkpointing  # the cheap check agrees
        batch_loss_sum(model, batch).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))


def test_the_run_s_fused_optimizer_steps_as_torch_s_per_tensor_adamw(tokenizer, tiny_model_dir, tmp_path):
    from tests.train.test_sft_run import write_chat_file
    from tunesmith.config import load_config
    from tunesmith.train.forward import batch_loss_sum
    from tunesmith.train.packing import collate
    from tunesmith.train.setup import build_optimizer

    config = load_config(overrides={"model.base": str(tiny_model_dir), "out": tmp_path / "run", "train.lr": 1e-2,
                                    "data.train": write_chat_file(tmp_path / "t.jsonl", FACTS)})
    models = [apply_lora(tiny_model(tokenizer, seed=3), LoraConfig(r=4, alpha=8)).train() for _ in range(2)]
    fast = build_optimizer(models[0], config)
    twin = dict(models[1].named_parameters())
    names = {id(p): name for name, p in models[0].named_parameters()}
    per_tensor = torch.optim.AdamW([{**group, "params": [twin[names[id(p)]] for p in group["params"]]}
                                    for group in fast.param_groups], foreach=False)
    assert fast.defaults["fused"]
    batch = collate(fact_examples(tokenizer), tokenizer.pad_token_id, 128, packing=True)
    for _ in range(5):
        for model, optimizer in zip(models, (fast, per_tensor)):
            optimizer.zero_grad()
            batch_loss_sum(model, batch).backward()
            optimizer.step()
    lora_b = [name for name in names.values() if "lora_B" in name]
    assert all(twin[name].abs().sum() > 0 for name in lora_b)  # the adapters moved (B starts at zero)
    # fused is not promised bit-identical to the per-tensor loop (3e-8 apart on the demo's shapes after 50 steps)
    assert max((p - twin[name]).abs().max().item() for name, p in models[0].named_parameters()) < 1e-6


def test_lora_plus_gives_the_b_matrices_their_own_learning_rate_through_the_schedule(tokenizer, tiny_model_dir, tmp_path):
    from tunesmith.config import load_config
    from tunesmith.train.schedule import build_scheduler
    from tunesmith.train.setup import build_optimizer

    model = apply_lora(tiny_model(tokenizer, seed=3), LoraConfig(r=4, alpha=8))
    names = {id(p): name for name, p in model.named_parameters()}
    plain = build_optimizer(model, load_config(overrides={"train.lr": 1e-3}))
    assert {group["lr"] for group in plain.param_groups} == {1e-3}
    plus = build_optimizer(model, load_config(overrides={"train.lr": 1e-3, "lora.plus_lr_ratio": 16}))
    by_lr = {group["lr"]: {names[id(p)] for p in group["params"]} for group in plus.param_groups}
    assert set(by_lr) == {1e-3, 16e-3}
    assert by_lr[16e-3] and all("lora_B" in name for name in by_lr[16e-3])
    assert not any("lora_B" in name for name in by_lr[1e-3])
    scheduler = build_scheduler(plus, "cosine", 0.5, 4)  # warm-up: 2 steps
    plus.step(), scheduler.step()
    assert sorted(group["lr"] for group in plus.param_groups) == pytest.approx([0.5e-3, 8e-3])  # both halfway up
    full = build_optimizer(tiny_model(tokenizer, seed=3), load_config(overrides={"train.method": "full", "lora.plus_lr_ratio": 16}))
    assert {group["lr"] for group in full.param_groups} == {2e-4}  # no LoRA, nothing to split


@pytest.mark.parametrize("micro_batch_size, passes", [(2, 3), (8, 2), (16, 1)])
def test_validation_passes_hold_four_micro_batches_of_examples_at_least_sixteen(tokenizer, monkeypatch,
                                                                               micro_batch_size, passes):
    from tunesmith.train.loop import validation_metrics
    from tunesmith.train.objective import TokenObjective

    examples = fact_examples(tokenizer) * 5  # 40 rows
    model, run, collated = tiny_model(tokenizer, seed=1), settings(tokenizer, micro_batch_size=micro_batch_size), []
    collate = TokenObjective.collate
    monkeypatch.setattr(TokenObjective, "collate", lambda self, chunk, layout: collated.append(len(chunk)) or collate(self, chunk, layout))
    metrics = validation_metrics(model, examples, run)
    assert len(collated) == passes and sum(collated) == 40
    one_pass = validation_metrics(model, examples, run, batch_size=40)  # the same mean, however the rows are cut
    assert metrics["valid_loss"] == pytest.approx(one_pass["valid_loss"], rel=1e-5)
