"""Continued finetuning on the tiny model: start from a parent run, stack adapters, anchor, replay earlier data."""
import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from pydantic import ValidationError
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from tests.train.test_sft_run import FACTS, write_chat_file
from tunesmith.cli import app
from tunesmith.config import ConfigError, ReplayConfig, load_config
from tunesmith.data.hashing import file_sha256
from tunesmith.data.pii_policy import PersonalDataRefused
from tunesmith.models.load import load_tokenizer
from tunesmith.registry.erasure import erase_data
from tunesmith.registry.lineage import lineage, trained_on
from tunesmith.train.replay import load_replay, replay_per_step, replay_slots
from tunesmith.train.run_record import REDACTED_DIR, read_run_record
from tunesmith.train.setup import build_model
from tunesmith.train.sft import train

NEW_FACTS = [("zinc", "Zn"), ("nickel", "Ni"), ("sodium", "Na"), ("neon", "Ne"), ("argon", "Ar"), ("boron", "B")]


def first_run(tiny_model_dir, tmp_path, method="lora", **overrides):
    config = load_config(overrides={"model.base": str(tiny_model_dir), "out": tmp_path / "v1",
                                    "data.train": write_chat_file(tmp_path / "old.jsonl"), "train.method": method,
                                    "train.batch_size": 4, "train.lr": 1e-2, "train.max_steps": 3, "lora.r": 4,
                                    "train.bf16": False, **overrides})
    train(config)
    return tmp_path / "v1"


def update_config(tmp_path, parent: Path, **overrides):
    return load_config(overrides={"model.parent.run": parent, "out": tmp_path / "v2",
                                  "data.train": write_chat_file(tmp_path / "new.jsonl", NEW_FACTS),
                                  "train.batch_size": 4, "train.lr": 1e-2, "train.max_steps": 3,
                                  "train.bf16": False, **overrides})


def lora_weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters() if "lora_" in k}


def test_update_inherits_base_and_adapter_shape_and_continues_the_parent_adapter(tiny_model_dir, tmp_path):
    parent = first_run(tiny_model_dir, tmp_path)
    config = update_config(tmp_path, parent)
    assert config.model.base == str(tiny_model_dir) and config.lora.r == 4  # from the parent's config.yaml
    start = lora_weights(build_model(config))
    saved = load_file(str(parent / "adapter" / "adapter_model.safetensors"))
    assert len(start) == len(saved) > 0
    assert all(torch.equal(start[k.replace("lora_A.weight", "lora_A.default.weight")
                                 .replace("lora_B.weight", "lora_B.default.weight")], v) for k, v in saved.items())
    train(config)
    record = json.loads((tmp_path / "v2" / "run.json").read_text())
    assert record["parent"]["run_dir"] == str(parent.resolve()) and record["parent"]["adapter"] == "continue"
    assert len(record["parent"]["run_json_sha256"]) == 64 and len(record["parent"]["model_sha256"]) == 64
    trained = load_file(str(tmp_path / "v2" / "adapter" / "adapter_model.safetensors"))
    assert trained.keys() == saved.keys() and any(not torch.equal(trained[k], saved[k]) for k in saved)


def test_an_update_that_contradicts_the_parent_is_refused(tiny_model_dir, tmp_path):
    parent = first_run(tiny_model_dir, tmp_path)
    with pytest.raises(ConfigError, match="model.base .* follows the parent"):
        update_config(tmp_path, parent, **{"model.base": "smollm2-135m-instruct"})
    with pytest.raises(ConfigError, match="differs from the parent adapter"):
        update_config(tmp_path, parent, **{"lora.r": 8})
    with pytest.raises(ConfigError, match="not a finished tunesmith run"):
        build_model(update_config(tmp_path, tmp_path / "nowhere", **{"model.base": str(tiny_model_dir)}))


def test_stacked_adapter_exports_as_one_adapter_over_the_base_with_merged_parity(tiny_model_dir, tmp_path):
    parent = first_run(tiny_model_dir, tmp_path)
    train(update_config(tmp_path, parent, **{"model.parent.adapter": "stack", "lora.r": 2, "lora.alpha": 8}))
    adapter = tmp_path / "v2" / "adapter"
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 6  # 4 (parent) + 2 (new)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    served = PeftModel.from_pretrained(base, adapter).eval()  # what serving loads: one adapter on the base
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "v2" / "model").eval()
    ids = torch.tensor([[5, 17, 42, 99, 3, 250]])
    with torch.no_grad():
        assert torch.allclose(served(input_ids=ids).logits, merged(input_ids=ids).logits, atol=1e-4)


def test_an_anchor_of_one_over_lr_holds_the_weights_at_the_parent(tiny_model_dir, tmp_path):
    """θ -= lr·anchor·(θ − θ_parent) with lr·anchor = 1 puts θ back on the parent after every step."""
    parent = first_run(tiny_model_dir, tmp_path, method="full")
    config = update_config(tmp_path, parent, **{"train.method": "full", "train.scheduler": "constant",
                                                "train.warmup_ratio": 0, "model.parent.anchor": 100.0})
    assert config.model.base == str(parent)  # a full finetune starts from the parent's merged weights
    train(config)
    before = AutoModelForCausalLM.from_pretrained(parent / "model").state_dict()
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "v2" / "model").state_dict()
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)


def test_replay_mixes_the_ancestors_data_into_each_step_and_records_it(tiny_model_dir, tmp_path):
    parent = first_run(tiny_model_dir, tmp_path)
    general = tmp_path / "general.txt"
    general.write_text("The quick brown fox jumps over the lazy dog.\n\nHydrogen has atomic number 1.\n")
    config = update_config(tmp_path, parent, **{"data.replay.share": 0.5, "data.replay.general_text": general,
                                                 "train.max_steps": None, "train.epochs": 1})
    result = train(config)
    assert result.steps == 3  # 6 new examples, 2 new + 2 replayed per step
    replay = json.loads((tmp_path / "v2" / "run.json").read_text())["replay"]
    assert replay["per_step"] == 2 and [s["name"] for s in replay["sources"]] == ["earlier", "general"]
    assert replay["sources"][0]["files"][0]["path"] == str(tmp_path / "old.jsonl")
    assert load_config(tmp_path / "v2" / "config.yaml").data.replay.share == 0.5


def test_general_chunk_tokens_cuts_the_general_text_shorter_than_max_length(tiny_model_dir, tmp_path):
    general = tmp_path / "general.txt"
    general.write_text(" ".join(f"word{i}" for i in range(200)) + "\n")
    tokenizer = load_tokenizer(str(tiny_model_dir))

    def chunks(**replay):
        config = load_config(overrides={"model.base": str(tiny_model_dir), "out": tmp_path / "run", "data.max_length": 256,
                                        "data.train": write_chat_file(tmp_path / "new.jsonl", NEW_FACTS),
                                        "data.replay.from_parent": False, "data.replay.general_text": general,
                                        **{f"data.replay.{k}": v for k, v in replay.items()}})
        [source] = load_replay(config, tokenizer).sources
        return [len(e.input_ids) for e in source.examples]

    whole, short = chunks(), chunks(general_chunk_tokens=16)
    assert max(whole) > 16 and max(short) == 16  # cut to 16 tokens, not to data.max_length
    assert sum(short) == sum(whole) and len(short) > len(whole)  # the same text, every token kept


def test_replay_slots_alternate_sources_and_are_a_function_of_seed_and_step():
    slots = replay_slots(step=3, seed=42, count=4, sizes=[100, 5])
    assert [source for source, _ in slots] == [1, 0, 1, 0] and all(i < 5 for s, i in slots if s == 1)
    assert slots == replay_slots(step=3, seed=42, count=4, sizes=[100, 5])
    assert slots != replay_slots(step=4, seed=42, count=4, sizes=[100, 5])
    assert replay_per_step(0.2, 16) == 3 and replay_per_step(0.01, 8) == 1 and replay_per_step(0.9, 4) == 3


def test_general_share_gives_general_text_that_fraction_of_the_slots_evenly():
    quarter = [replay_slots(step, seed=42, count=4, sizes=[100, 5], last_share=0.25) for step in range(6)]
    assert all(sum(source == 1 for source, _ in step) == 1 for step in quarter)  # one general slot in each step
    eighth = [sum(s == 1 for s, _ in replay_slots(step, 42, 4, [100, 5], 0.125)) for step in range(8)]
    assert eighth == [0, 1] * 4  # one every other step: 1/8 of 32 slots
    third = [s for step in range(3) for s, _ in replay_slots(step, 42, 4, [100, 5], 1 / 3)]
    assert sum(third) == 4 and all(sum(third[i:i + 3]) == 1 for i in range(0, 12, 3))
    assert quarter[3] == replay_slots(3, 42, 4, [100, 5], 0.25)  # a function of (seed, step): resume replays the same
    with pytest.raises(ValidationError, match="general_share splits the replay slots"):
        ReplayConfig(from_parent=True, general_share=0.25)


def test_replay_refuses_an_earlier_file_that_changed(tiny_model_dir, tmp_path):
    parent = first_run(tiny_model_dir, tmp_path)
    write_chat_file(tmp_path / "old.jsonl", FACTS[:4])  # edited after v1 trained on it
    with pytest.raises(ConfigError, match="missing or changed since that run"):
        train(update_config(tmp_path, parent, **{"data.replay.share": 0.25}))


def test_drop_matching_leaves_superseded_earlier_rows_out_of_the_replay_and_records_it(tiny_model_dir, tmp_path):
    parent = first_run(tiny_model_dir, tmp_path)  # trained on FACTS: gold Au, ..., lead Pb
    tokenizer = load_tokenizer(str(tiny_model_dir))
    everything = load_replay(update_config(tmp_path, parent, **{"data.replay.share": 0.5}), tokenizer)
    config = update_config(tmp_path, parent, **{"data.replay.share": 0.5,
                                                 "data.replay.drop_matching": [r"\bgold\b", "(?i)SILVER|copper"]})
    [earlier] = load_replay(config, tokenizer).sources
    assert len(earlier.examples) == len(everything.sources[0].examples) - 3 == len(FACTS) - 3
    assert earlier.dropped == {r"\bgold\b": 1, "(?i)SILVER|copper": 2}
    kept = [tokenizer.decode(e.input_ids) for e in earlier.examples]
    assert not any(name in text for text in kept for name in ("gold", "silver", "copper"))
    assert sum("lead" in text for text in kept) == 1

    train(config)
    [recorded] = json.loads((tmp_path / "v2" / "run.json").read_text())["replay"]["sources"]
    assert recorded["examples"] == len(FACTS) - 3 and recorded["dropped"] == {r"\bgold\b": 1, "(?i)SILVER|copper": 2}


def test_drop_matching_refuses_a_pattern_that_drops_nothing_or_everything(tiny_model_dir, tmp_path):
    parent = first_run(tiny_model_dir, tmp_path)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    with pytest.raises(ConfigError, match="'unnilquadium' matches no row of the earlier training files"):
        load_replay(update_config(tmp_path, parent, **{"data.replay.drop_matching": ["gold", "unnilquadium"]}), tokenizer)
    with pytest.raises(ConfigError, match="drops every earlier row \\(10\\)"):
        load_replay(update_config(tmp_path, parent, **{"data.replay.drop_matching": ["symbol"]}), tokenizer)
    with pytest.raises(ValidationError, match="'gold\\(' is not a regular expression"):
        ReplayConfig(drop_matching=["gold("])
    with pytest.raises(ValidationError, match="needs from_parent: true"):
        ReplayConfig(from_parent=False, general_text="general.txt", drop_matching=["gold"])


def write_general_text(path: Path, contact: str) -> Path:
    path.write_text(f"The quick brown fox jumps over the lazy dog.\n\nLetters to the editor: {contact}.\n")
    return path


def test_replayed_general_text_with_personal_data_is_refused_by_default(tiny_model_dir, tmp_path):
    parent = first_run(tiny_model_dir, tmp_path)
    general = write_general_text(tmp_path / "general.txt", "ada@example.com")
    config = update_config(tmp_path, parent, **{"data.replay.general_text": general})
    with pytest.raises(PersonalDataRefused, match=rf"{general}:3: email"):
        train(config)
    assert not (tmp_path / "v2" / "run.json").exists()


def test_redact_replays_a_redacted_copy_of_the_general_text_and_records_both(tiny_model_dir, tmp_path):
    parent = first_run(tiny_model_dir, tmp_path)
    general = write_general_text(tmp_path / "general.txt", "ada@example.com")
    train(update_config(tmp_path, parent, **{"data.replay.general_text": general, "data.pii": "redact"}))
    copy = tmp_path / "v2" / REDACTED_DIR / "general_text.txt"
    assert "<EMAIL_1>" in copy.read_text() and "ada@example.com" not in copy.read_text()
    replay = read_run_record(tmp_path / "v2")["replay"]
    [entry] = next(s for s in replay["sources"] if s["name"] == "general")["files"]
    assert entry["path"] == str(copy) and entry["sha256"] == file_sha256(copy)
    assert entry["source"] == {"path": str(general), "sha256": file_sha256(general)}
    assert entry["pii"]["findings"] == {"email": 1} and entry["pii"]["redacted"] == {"email": 1}
    assert load_config(tmp_path / "v2" / "config.yaml").data.replay.general_text == general  # as the user gave it
    [found] = trained_on(file_sha256(general), [tmp_path / "v2"])  # the file the user named finds the model
    assert found.node.run_dir == (tmp_path / "v2").resolve()
    [step] = [s for s in lineage(tmp_path / "v2").to_json()["chain"] if s["run_dir"].endswith("v2")]
    replayed = {r["source"]: r for r in step["replay"]}  # the tree shows what was replayed, as for the data
    assert replayed["general"]["from"]["sha256"] == file_sha256(general) and replayed["earlier"]["path"].endswith("old.jsonl")
    printed = CliRunner().invoke(app, ["lineage", str(tmp_path / "v2")]).stdout
    assert f"replay general: {copy} (sha256 " in printed and f"(redacted from {general})" in printed
    report = erase_data(file_sha256(general), [tmp_path / "v2"], actor="os:test")  # erasure reaches the copy too
    assert sorted(report.deleted_files) == sorted([str(general.resolve()), str(copy.resolve())])


def test_allow_replays_the_general_text_as_it_is_and_counts_its_findings(tiny_model_dir, tmp_path):
    parent = first_run(tiny_model_dir, tmp_path)
    general = write_general_text(tmp_path / "general.txt", "ada@example.com")
    train(update_config(tmp_path, parent, **{"data.replay.general_text": general, "data.pii": "allow"}))
    replay = read_run_record(tmp_path / "v2")["replay"]
    [entry] = next(s for s in replay["sources"] if s["name"] == "general")["files"]
    assert entry["path"] == str(general) and entry["pii"]["findings"] == {"email": 1} and "source" not in entry
