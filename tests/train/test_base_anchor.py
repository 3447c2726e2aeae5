"""data.replay.general_loss: kl_to_base — replayed general text pulls the model towards the base's predictions."""
import json

import pytest
import torch

from tests.train.test_continual import NEW_FACTS
from tests.train.test_sft_run import write_chat_file
from tunesmith.config import ConfigError, load_config
from tunesmith.data.formats import load_file
from tunesmith.data.render import records_to_examples
from tunesmith.models.load import load_tokenizer
from tunesmith.train.base_anchor import AnchoredExample, AnchoredTokenObjective
from tunesmith.train.lora import adapters_switched_off
from tunesmith.train.replay import load_replay
from tunesmith.train.setup import build_model, loop_settings
from tunesmith.train.sft import train


def anchored_config(tiny_model_dir, tmp_path, **overrides):
    general = tmp_path / "general.txt"
    general.write_text("\n\n".join(" ".join(f"word{i + j}" for i in range(40)) for j in range(6)) + "\n")
    return load_config(overrides={
        "model.base": str(tiny_model_dir), "out": tmp_path / "run", "data.max_length": 64,
        "data.train": write_chat_file(tmp_path / "new.jsonl", NEW_FACTS),
        "data.replay.from_parent": False, "data.replay.general_text": general, "data.replay.share": 0.5,
        "data.replay.general_chunk_tokens": 8, "data.replay.general_loss": "kl_to_base",
        "train.batch_size": 4, "train.lr": 1e-2, "train.max_steps": 4, "lora.r": 4, "train.bf16": False, **overrides})


def test_general_chunks_become_anchored_examples_and_the_loop_uses_the_anchored_objective(tiny_model_dir, tmp_path):
    config = anchored_config(tiny_model_dir, tmp_path)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    pool = load_replay(config, tokenizer)
    [general] = pool.sources
    assert general.examples and all(isinstance(e, AnchoredExample) for e in general.examples)
    settings = loop_settings(config, 6, tokenizer.pad_token_id, replay=pool)
    assert isinstance(settings.objective, AnchoredTokenObjective)
    plain_config = anchored_config(tiny_model_dir, tmp_path, **{"data.replay.general_loss": "next_token"})
    plain = load_replay(plain_config, tokenizer)
    assert not any(isinstance(e, AnchoredExample) for e in plain.sources[0].examples)
    assert type(loop_settings(plain_config, 6, tokenizer.pad_token_id, replay=plain).objective) is not AnchoredTokenObjective

    batch = settings.objective.collate([*general.examples[:2]], settings)
    assert batch.tokens.num_trained == 0 and batch.anchored.num_trained == len(batch.anchor_index) > 0
    assert batch.anchored.input_ids.shape[0] == 2  # the base's forward: one row per chunk


def kl_of(model, objective, chunks, new, settings):
    """KL(base || model) and agreement over `chunks`, packed with `new` examples: the loss less their cross-entropy."""
    total, metrics = objective.loss_sum(model, objective.collate([*new, *chunks], settings))
    alone, alone_metrics = objective.loss_sum(model, objective.collate(new, settings)) if new else (0.0, {"token_accuracy": 0})
    return total - alone, metrics["token_accuracy"] - alone_metrics["token_accuracy"]


def test_kl_is_zero_while_the_adapter_changes_nothing_and_pulls_back_once_it_does(tiny_model_dir, tmp_path):
    config = anchored_config(tiny_model_dir, tmp_path)
    model = build_model(config)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    pool = load_replay(config, tokenizer)
    settings = loop_settings(config, 6, tokenizer.pad_token_id, replay=pool)
    objective, chunks = settings.objective, pool.sources[0].examples[:3]
    kl, agreed = kl_of(model, objective, chunks, [], settings)
    assert abs(kl.item()) < 1e-5 and agreed.item() == sum(e.num_trained for e in chunks)  # fresh LoRA: B = 0

    lora = [p for name, p in model.named_parameters() if "lora_" in name]
    with torch.no_grad():
        for p in lora:
            p.add_(torch.randn_like(p) * 0.5)  # the adapter now changes general text too
    moved, _ = kl_of(model, objective, chunks, [], settings)
    assert moved.item() > 1e-3
    # packed beside new examples, each chunk's positions still meet the base's predictions for the same tokens
    new = records_to_examples(load_file(config.data.train), tokenizer, 64)[:3]
    assert kl_of(model, objective, chunks, new, settings)[0].item() == pytest.approx(moved.item(), rel=1e-4)
    optimizer = torch.optim.Adam(lora, lr=0.02)
    for _ in range(30):
        optimizer.zero_grad()
        kl_of(model, objective, chunks, [], settings)[0].backward()
        optimizer.step()
    assert kl_of(model, objective, chunks, [], settings)[0].item() < moved.item() / 2  # the KL alone pulls it back
    base = [p for name, p in model.named_parameters() if "lora_" not in name]
    assert all(p.grad is None for p in base)  # only the adapters move


def test_a_run_with_kl_to_base_trains_and_records_it(tiny_model_dir, tmp_path):
    result = train(anchored_config(tiny_model_dir, tmp_path, **{"train.max_steps": None, "train.epochs": 1}))
    assert result.steps == 3  # 6 new examples, 2 new + 2 anchored chunks per step
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(line["loss"])) for line in lines if "loss" in line)
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert saved.data.replay.general_loss == "kl_to_base"


def test_kl_to_base_is_refused_without_general_text_or_lora(tiny_model_dir, tmp_path):
    with pytest.raises(ConfigError, match="needs train.method: lora"):
        anchored_config(tiny_model_dir, tmp_path, **{"train.method": "full"})
    with pytest.raises(ConfigError, match="set data.replay.general_text"):
        anchored_config(tiny_model_dir, tmp_path, **{"data.replay.general_text": None,
                                                       "data.replay.from_parent": True, "model.parent.run": tmp_path})


def test_kl_to_parent_starts_at_zero_on_the_parent_where_kl_to_base_does_not(tiny_model_dir, tmp_path):
    from tests.train.test_continual import first_run, update_config
    parent = first_run(tiny_model_dir, tmp_path, **{"train.lr": 5e-2, "lora.dropout": 0.0})  # it moved general text
    general = anchored_config(tiny_model_dir, tmp_path).data.replay.general_text
    replay = {"data.replay.general_text": general, "data.replay.general_chunk_tokens": 8, "data.replay.share": 0.5}
    tokenizer = load_tokenizer(str(tiny_model_dir))
    kls = {}
    for loss in ("kl_to_base", "kl_to_parent"):
        config = update_config(tmp_path, parent, **replay, **{"data.replay.general_loss": loss})
        model, pool = build_model(config), load_replay(config, tokenizer)
        settings = loop_settings(config, 6, tokenizer.pad_token_id, replay=pool)
        chunks = [e for e in pool.sources[-1].examples[:3]]
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        kls[loss] = kl_of(model, settings.objective, chunks, [], settings)[0].item()
        assert all(torch.equal(before[name], p) for name, p in model.named_parameters())  # the parent's swapped back out
    assert abs(kls["kl_to_parent"]) < 1e-5 < kls["kl_to_base"]  # the run starts as its parent; the base differs


def test_kl_to_parent_trains_an_update_and_is_refused_without_a_parent(tiny_model_dir, tmp_path):
    from tests.train.test_continual import first_run, update_config
    parent = first_run(tiny_model_dir, tmp_path)
    general = anchored_config(tiny_model_dir, tmp_path).data.replay.general_text
    config = update_config(tmp_path, parent, **{"data.replay.general_text": general, "data.replay.general_chunk_tokens": 8,
                                                "data.replay.general_loss": "kl_to_parent", "data.replay.general_share": 0.25})
    result = train(config)
    assert result.steps == 3 and load_config(tmp_path / "v2" / "config.yaml").data.replay.general_loss == "kl_to_parent"
    with pytest.raises(ConfigError, match="kl_to_parent needs a LoRA run that continues its parent's adapter"):
        anchored_config(tiny_model_dir, tmp_path, **{"data.replay.general_loss": "kl_to_parent"})


def test_earlier_data_towards_the_parent_is_anchored_at_its_answers_and_starts_at_zero(tiny_model_dir, tmp_path):
    from tests.train.test_continual import first_run, update_config
    parent = first_run(tiny_model_dir, tmp_path, **{"train.lr": 5e-2, "lora.dropout": 0.0})
    tokenizer = load_tokenizer(str(tiny_model_dir))
    config = update_config(tmp_path, parent, **{"data.replay.earlier_loss": "kl_to_parent"})
    model, pool = build_model(config), load_replay(config, tokenizer)
    [earlier] = pool.sources
    assert earlier.name == "earlier" and all(isinstance(e, AnchoredExample) for e in earlier.examples)
    settings = loop_settings(config, 6, tokenizer.pad_token_id, replay=pool)
    rows = earlier.examples[:3]
    batch = settings.objective.collate(rows, settings)
    assert len(batch.anchor_index) == sum(e.num_trained for e in rows) > 0  # the answers, not the prompts
    kl, agreed = kl_of(model, settings.objective, rows, [], settings)
    assert abs(kl.item()) < 1e-5 and agreed.item() == len(batch.anchor_index)  # the update starts as its parent

    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.add_(torch.randn_like(p) * 0.5)
    assert kl_of(model, settings.objective, rows, [], settings)[0].item() > 1e-3  # and is pulled back once it drifts

    result = train(config)
    assert result.steps == 3 and load_config(tmp_path / "v2" / "config.yaml").data.replay.earlier_loss == "kl_to_parent"


def test_earlier_data_towards_the_parent_is_refused_without_one_parent_reference(tiny_model_dir, tmp_path):
    with pytest.raises(ConfigError, match="earlier_loss: kl_to_parent needs a LoRA run that continues"):
        anchored_config(tiny_model_dir, tmp_path, **{"data.replay.from_parent": True, "model.parent.run": tmp_path,
                                                     "data.replay.earlier_loss": "kl_to_parent", "train.method": "full",
                                                     "data.replay.general_loss": "next_token"})
    with pytest.raises(ConfigError, match="anchor to two different models"):
        anchored_config(tiny_model_dir, tmp_path, **{"data.replay.from_parent": True, "model.parent.run": tmp_path,
                                                     "data.replay.earlier_loss": "kl_to_parent"})
    with pytest.raises(ConfigError, match="set data.replay.from_parent: true"):
        anchored_config(tiny_model_dir, tmp_path, **{"data.replay.earlier_loss": "kl_to_parent"})


def test_new_examples_share_their_prefix_beside_anchored_chunks_and_the_loss_stays_the_same(tiny_model_dir, tmp_path):
    configs = [anchored_config(tiny_model_dir, tmp_path, **{"data.max_length": 512, "data.share_prefix": share})
               for share in (False, True)]
    model = build_model(configs[0])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.add_(torch.randn_like(p) * 0.5)  # the adapter changes the new facts and the general text
    tokenizer = load_tokenizer(str(tiny_model_dir))
    pool = load_replay(configs[0], tokenizer)
    examples = [*records_to_examples(load_file(configs[0].data.train), tokenizer, 512)[:3], *pool.sources[0].examples[:2]]
    batches, losses = [], []
    for config in configs:
        settings = loop_settings(config, 6, tokenizer.pad_token_id, replay=pool)
        batches.append(settings.objective.collate(examples, settings))
        with torch.no_grad():
            losses.append(settings.objective.loss_sum(model, batches[-1])[0])
    assert batches[1].tokens.input_ids.numel() < batches[0].tokens.input_ids.numel()  # the three facts share a prefix
    assert torch.equal(batches[1].anchored.input_ids, batches[0].anchored.input_ids)  # the chunks stay whole
    assert losses[1].item() == pytest.approx(losses[0].item(), rel=1e-5)


def test_switching_the_adapters_off_gives_peft_s_base_and_puts_the_adapters_back(tiny_model_dir, tmp_path):
    model = build_model(anchored_config(tiny_model_dir, tmp_path))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(torch.randn_like(p) * 0.5)
    ids = torch.tensor([[5, 9, 17, 3, 8]])
    trained = {name: p.requires_grad for name, p in model.named_parameters()}
    with torch.no_grad():
        adapted = model(input_ids=ids).logits
        with model.disable_adapter():
            peft_base = model(input_ids=ids).logits
        with adapters_switched_off(model):
            base = model(input_ids=ids).logits
        after = model(input_ids=ids).logits
    assert torch.equal(base, peft_base) and not torch.allclose(base, adapted, atol=1e-3)
    assert torch.equal(after, adapted)
    assert {name: p.requires_grad for name, p in model.named_parameters()} == trained


def test_switching_the_adapters_off_also_switches_off_modules_to_save_as_peft_does(tokenizer):
    from peft import LoraConfig as PeftLoraConfig

    from tests.tiny import tiny_model
    from tunesmith.train.lora import peft_model

    model = peft_model(tiny_model(tokenizer, seed=4), PeftLoraConfig(r=4, target_modules=["q_proj"],
                                                                      modules_to_save=["lm_head"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "modules_to_save" in name:
                p.add_(torch.randn_like(p))  # only the trained copy of the head moves
        ids = torch.tensor([[5, 9, 17, 3, 8]])
        adapted = model(input_ids=ids).logits
        with model.disable_adapter():
            peft_base = model(input_ids=ids).logits
        with adapters_switched_off(model):
            base = model(input_ids=ids).logits
    assert torch.equal(base, peft_base) and not torch.allclose(base, adapted, atol=1e-3)
