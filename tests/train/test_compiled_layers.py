"""train.compile: the decoder layers run compiled, the run trains as the eager one does, and what cannot compile is refused."""
import json

import pytest
import torch
from torch._dynamo.utils import counters

from tunesmith.config import ConfigError, load_config
from tunesmith.train.compiled_layers import CompileUnavailable, applies, check_compiler, compile_decoder_layers, compiled
from tunesmith.train.sft import train
from tests.train.test_sft_run import run_config


def step_losses(run_dir):
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_compiled_run_trains_as_the_eager_one_within_bf16_rounding(tiny_model_dir, tmp_path):
    (tmp_path / "eager").mkdir(), (tmp_path / "compiled").mkdir()
    eager = train(run_config(tiny_model_dir, tmp_path / "eager", max_steps=4, bf16=True))
    counters.clear()
    fast = train(run_config(tiny_model_dir, tmp_path / "compiled", max_steps=4, bf16=True, compile=True))
    # two graphs: the first layer's (its input needs no gradients) and the other layers'; validation (at the last
    # step) runs eager and adds none
    assert counters["stats"]["unique_graphs"] == 2
    assert "valid_loss" in json.loads((fast.run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert eager.steps == fast.steps == 4
    eager_losses, compiled_losses = step_losses(eager.run_dir), step_losses(fast.run_dir)
    assert compiled_losses == pytest.approx(eager_losses, rel=2e-2)
    assert compiled_losses[-1] < compiled_losses[0]  # it learns
    assert (fast.run_dir / "adapter" / "adapter_config.json").is_file() and (fast.run_dir / "model" / "config.json").is_file()


def test_layers_are_compiled_in_place_and_keep_their_weights_names(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    names = list(model.state_dict())
    assert compile_decoder_layers(model) == model.config.num_hidden_layers
    assert all(compiled(layer) for layer in model.model.layers)
    assert list(model.state_dict()) == names


def test_compile_is_refused_or_not_applied_where_it_is_not_tested():
    with pytest.raises(ConfigError, match="supervised runs"):
        load_config(overrides={"train.method": "dpo", "train.compile": True})
    assert applies(1) and not applies(2)  # several processes train eager layers (sft prints NOT_APPLIED)


def test_a_cpu_without_a_cpp_compiler_is_told_what_to_install(monkeypatch):
    from torch._inductor import cpp_builder, exc

    def no_compiler():
        raise exc.InvalidCxxCompiler()

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", no_compiler)
    with pytest.raises(CompileUnavailable, match="install g\\+\\+"):
        check_compiler(torch.device("cpu"))
