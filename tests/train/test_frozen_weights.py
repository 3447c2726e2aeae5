"""Frozen Linear weights cast to bf16 once for a LoRA run under bf16 autocast: same run, fp32 again for export."""
import contextlib
import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from tests.train.test_sft_run import run_config
from tunesmith.config import LoraConfig
from tunesmith.train import sft
from tunesmith.train.frozen_weights import frozen_weights_in_bf16
from tunesmith.train.lora import apply_lora


def lora_model(tiny_model_dir):
    return apply_lora(AutoModelForCausalLM.from_pretrained(tiny_model_dir), LoraConfig(r=4, alpha=8))


def test_inside_frozen_linears_are_bf16_and_on_exit_the_fp32_weights_are_back(tiny_model_dir):
    model = lora_model(tiny_model_dir)
    before = {name: p for name, p in model.named_parameters()}
    with frozen_weights_in_bf16(model, enabled=True) as count:
        inside = dict(model.named_parameters())
        assert count > 0
        head = model.get_output_embeddings()
        assert {n for n, p in inside.items() if p.dtype == torch.bfloat16} == \
               {n for n, p in before.items() if "base_layer.weight" in n} | {"base_model.model.lm_head.weight"}
        # every frozen projection and the tied head (a copy of its own: the embedding lookup keeps fp32), nothing else
        assert all(p.dtype == torch.float32 for n, p in inside.items() if "lora_" in n or "embed" in n or "norm" in n)
        projection = next(n for n in before if "base_layer.weight" in n)
        assert torch.equal(inside[projection], before[projection].to(torch.bfloat16))  # the value autocast would use
        assert torch.equal(head.weight, model.get_input_embeddings().weight.to(torch.bfloat16))
        adapters = [m for m in model.modules() if hasattr(m, "lora_A")]
        assert adapters and not any(m.cast_input_dtype_enabled for m in adapters)  # autocast casts their inputs
    assert all(m.cast_input_dtype_enabled for m in adapters)  # peft's default again
    assert all(p is before[name] for name, p in model.named_parameters())  # the very fp32 tensors, not copies
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied again

    with pytest.raises(RuntimeError), frozen_weights_in_bf16(model, enabled=True):
        raise RuntimeError("training failed")
    assert all(p is before[name] for name, p in model.named_parameters())


def run(tiny_model_dir, tmp_path, name, monkeypatch, cast_once: bool):
    if not cast_once:
        monkeypatch.setattr(sft, "frozen_weights_in_bf16", lambda model, enabled: contextlib.nullcontext(0))
    (tmp_path / name).mkdir()
    config = run_config(tiny_model_dir, tmp_path / name, max_steps=4, bf16=True, save_every=10)
    sft.train(config)
    run_dir = config.out
    losses = [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return losses, load_file(str(run_dir / "adapter" / "adapter_model.safetensors")), \
        load_file(str(run_dir / "model" / "model.safetensors"))


def test_a_bf16_lora_run_is_bit_identical_with_weights_cast_once_and_exports_the_fp32_base(
        tiny_model_dir, tmp_path, monkeypatch):
    losses, adapter, merged = run(tiny_model_dir, tmp_path, "cast_once", monkeypatch, cast_once=True)
    monkeypatch.undo()
    ref_losses, ref_adapter, ref_merged = run(tiny_model_dir, tmp_path, "autocast_each_call", monkeypatch, cast_once=False)
    assert losses == ref_losses and len(losses) == 4
    assert adapter.keys() == ref_adapter.keys() and all(torch.equal(adapter[k], ref_adapter[k]) for k in adapter)
    assert all(t.dtype == torch.float32 for t in merged.values())  # merged onto the fp32 base, not its bf16 copy
    assert merged.keys() == ref_merged.keys() and all(torch.equal(merged[k], ref_merged[k]) for k in merged)
