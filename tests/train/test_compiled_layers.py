"""train.compile: the decoder layers run compiled, the run trains as the eager one does, and what cannot compile is refused."""
import json

import pytest
import torch
from torch._dynamo.utils import counters

from tunesmith.config import ConfigError, load_config
from tunesmith.data.render import render_chat
from tunesmith.train import compiled_layers
from tunesmith.train.compiled_layers import CompileUnavailable, applies, check_compiler, compile_decoder_layers, compiled
from tunesmith.train.loop import LoopSettings
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


@pytest.mark.parametrize("padded", [True, False])
def test_a_one_row_batch_after_wider_ones_runs_their_graphs_padded_instead_of_compiling_more(tiny_model_dir, tmp_path,
                                                                                             monkeypatch, padded):
    config = run_config(tiny_model_dir, tmp_path, epochs=1, bf16=True, compile=True, batch_size=8)
    config.data.max_length = 128  # 10 examples of 40-53 tokens: a step of 8 packed into 3 rows, then 2 in one row
    if not padded:  # what it guards against: dynamo specialises one row and compiles both layer graphs again
        monkeypatch.setattr(compiled_layers, "row_floor", lambda *args: 1)
    torch._dynamo.reset()  # no graph of an earlier test's layers to reuse
    counters.clear()
    assert train(config).steps == 2
    assert counters["stats"]["unique_graphs"] == (2 if padded else 4)


def test_the_row_floor_is_two_only_where_the_first_step_has_no_one_row_micro_batch(tokenizer):
    examples = [render_chat(tokenizer, [{"role": "user", "content": f"Question {i}?"},
                                        {"role": "assistant", "content": f"Answer {i}."}], 64) for i in range(12)]
    settings = LoopSettings(total_steps=3, batch_size=4, micro_batch_size=4, max_length=64, packing=False, seed=0,
                            bf16=False, max_grad_norm=1.0, log_every=1, eval_every=None, save_every=10,
                            keep_checkpoints=1, pad_id=tokenizer.pad_token_id)
    assert compiled_layers.row_floor(examples, settings) == 2
    settings.micro_batch_size = 3  # the first step's micro-batches: 3 rows, then 1
    assert compiled_layers.row_floor(examples, settings) == 1
