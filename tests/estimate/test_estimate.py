"""`tunesmith estimate`: FLOP and memory arithmetic on known shapes, the GPU table, the probe, the CLI."""
import json

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from tests.tiny import tiny_model
from tests.train.test_sft_run import FACTS, write_chat_file
from tunesmith.cli import app
from tunesmith.config import load_config
from tunesmith.data.render import TokenizedExample
from tests.train.test_dpo import write_pairs
from tunesmith.estimate.cost_model import (
    MicroBatchShape,
    Method,
    activation_bytes,
    allocator_growth,
    eval_shapes,
    micro_batch_flops,
    micro_batch_shape,
    model_shape_of,
    plan_steps,
    read_model_shape,
    static_memory,
)
from tunesmith.estimate.estimate import count_evaluations, estimate_config, load_workload, method_of
from tunesmith.estimate.hardware import GIB, UnknownHardwareError, lookup_hardware
from tunesmith.estimate.table import estimate_table
from tunesmith.train.lora import apply_lora
from tunesmith.train.loop import LoopSettings
from tunesmith.train.loss import LOSS_CHUNK
from tunesmith.train.packing import collate
from tunesmith.train.preference_objective import collate_pairs
from tunesmith.train.schedule import step_example_indices
from tunesmith.train.setup import count_parameters

runner = CliRunner()

# tests/tiny.py: hidden 64, intermediate 128, 2 layers, 4 heads of 16, 2 kv heads (k, v: 64 -> 32)
LAYER_LINEAR = 64 * 64 + 64 * 32 + 64 * 32 + 64 * 64 + 3 * 64 * 128


@pytest.fixture
def shape(tokenizer):
    return model_shape_of(tiny_model(tokenizer))


def estimate_yaml(tmp_path, tiny_model_dir, **train) -> str:
    config = {"model": {"base": str(tiny_model_dir)},
              "data": {"train": str(write_chat_file(tmp_path / "train.jsonl", FACTS * 2)),
                       "valid": str(write_chat_file(tmp_path / "valid.jsonl", FACTS[:3])), "max_length": 64},
              "lora": {"r": 4}, "train": {"batch_size": 4, "epochs": 2, **train}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_model_shape_counts_linear_head_and_lora_parameters(shape, tokenizer):
    model = tiny_model(tokenizer)
    assert (shape.hidden, shape.intermediate, shape.layers, shape.q_dim) == (64, 128, 2, 64)
    assert shape.linear_params == 2 * LAYER_LINEAR
    assert shape.head_params == len(tokenizer) * 64
    assert shape.total_params == sum(p.numel() for p in model.parameters())  # tied head counted once
    peft_model = apply_lora(model, load_config(overrides={"lora.r": 4}).lora)
    assert shape.lora_params(4, "all-linear") == count_parameters(peft_model)[0]
    assert shape.lora_params(4, ["q_proj", "v_proj"]) == 2 * 4 * ((64 + 64) + (64 + 32))


def test_meta_device_shape_equals_loaded_shape(tiny_model_dir, shape):
    assert read_model_shape(tiny_model_dir) == shape


def test_micro_batch_shape_matches_collate():
    examples = [TokenizedExample(list(range(n)), [-100] * (n // 2) + list(range(n - n // 2))) for n in (5, 9, 3, 12, 7)]
    for packing in (True, False):
        batch = collate(examples, 0, 16, packing)
        mb = micro_batch_shape(examples, 16, packing)
        assert (mb.rows, mb.width) == tuple(batch.input_ids.shape)
        assert (mb.real_tokens, mb.trained_tokens) == (batch.num_real_tokens, batch.num_trained)
    prompted = [TokenizedExample(list(range(10)) + [50 + n] * n, [-100] * 11 + [50 + n] * (n - 1)) for n in (5, 9, 3)]
    shared = collate(prompted, 0, 64, packing=True, share_prefix=True)  # one 10-token system prompt, computed once
    mb = micro_batch_shape(prompted, 64, packing=True, share_prefix=True)
    assert (mb.rows, mb.width) == tuple(shared.input_ids.shape) == (1, 10 + 5 + 9 + 3)
    assert (mb.real_tokens, mb.trained_tokens) == (shared.num_real_tokens, shared.num_trained)


def test_flops_on_a_known_shape(shape):
    mb = MicroBatchShape(rows=2, width=10, real_tokens=18, trained_tokens=6)
    linear = 2 * 2 * LAYER_LINEAR * 20  # 2 FLOPs per multiply-add, 2 layers, 20 positions (padding included)
    attention = 4 * 2 * 64 * 2 * 10**2  # QKᵀ and AV: 4·T²·q_dim per row and layer
    head = 2 * shape.head_params * 6  # output head on trained positions only
    assert micro_batch_flops(mb, shape, Method("eval")) == linear + attention + head
    assert micro_batch_flops(mb, shape, Method("full")) == 3 * (linear + attention + head)
    adapters = 2 * 4 * sum(i + o for _, i, o in shape.linears) * 20
    lora = Method("lora", lora_r=4, lora_targets=shape.linears)
    assert micro_batch_flops(mb, shape, lora) == 2 * linear + 3 * attention + 3 * adapters + 2 * head
    long = MicroBatchShape(rows=8, width=200, real_tokens=1600, trained_tokens=LOSS_CHUNK + 1)
    recompute = 2 * shape.head_params * (LOSS_CHUNK + 1)
    assert micro_batch_flops(long, shape, Method("full")) - 3 * micro_batch_flops(long, shape, Method("eval")) == recompute


def test_memory_on_a_known_shape(shape):
    mb = MicroBatchShape(rows=1, width=10, real_tokens=10, trained_tokens=4)
    per_position = 2 * (4 * 128 + 6 * 64 + 4 * 64) + 16 * 64  # bf16 casts, MLP, attention; 4 fp32 norm tensors
    expected = (per_position * 10 + 2 * 10**2) * 2 + 4 * shape.vocab * 10
    assert activation_bytes(mb, shape, Method("full"), bf16=True) == expected
    parts = static_memory(shape, trainable=shape.total_params, bf16=True)
    assert parts["weights (fp32)"] == 4 * shape.total_params
    assert parts["gradients (fp32)"] + parts["AdamW moments"] == 12 * shape.total_params
    assert static_memory(shape, trainable=10, bf16=False)["bf16 weight casts"] == 0
    assert allocator_growth(100.0, 30, already=30) == 0 < allocator_growth(100.0, 30) < allocator_growth(100.0, 300)
    assert allocator_growth(100.0, 10**12) == pytest.approx(300.0)  # capped


def test_gpu_table_and_unknown_hardware():
    h100 = lookup_hardware("H100")
    assert (h100.peak_flops, h100.memory_bytes, h100.kind) == (989e12, 80 * GIB, "gpu")
    assert h100.achieved_flops == pytest.approx(989e12 * 0.30)
    assert lookup_hardware("a100-40", mfu=0.5).achieved_flops == pytest.approx(156e12)
    assert lookup_hardware("h200").memory_bytes == 141 * GIB
    assert lookup_hardware("cpu", measured_flops=1e9).achieved_flops == 1e9
    with pytest.raises(UnknownHardwareError) as error:
        lookup_hardware("v100")
    assert all(name in str(error.value) for name in ("cpu", "t4", "l4", "a10g", "a100-80", "h100", "h200"))


def test_count_evaluations():
    assert count_evaluations(30, per_epoch=186, eval_every=50) == 1  # only after the last step
    assert count_evaluations(100, per_epoch=186, eval_every=50) == 2
    assert count_evaluations(6, per_epoch=3, eval_every=None) == 2


def test_lora_is_cheaper_than_full_which_is_cheaper_than_pretraining(tmp_path, tiny_model_dir):
    estimate = estimate_config(load_config(estimate_yaml(tmp_path, tiny_model_dir)), "h100", price_per_hour=3.0)
    lora, full, pretrain = estimate.scenarios
    assert (lora.method, full.method, pretrain.method) == ("lora", "full", "pretrain")
    assert lora.trainable < full.trainable == pretrain.trainable
    assert lora.flops < full.flops < pretrain.flops
    assert lora.peak_memory_bytes < full.peak_memory_bytes
    assert 0 < lora.train_seconds < full.train_seconds < pretrain.train_seconds
    assert lora.train_seconds < lora.total_seconds  # + data and model loading, validation, checkpoints, export
    assert 0 < lora.cost < full.cost and pretrain.cost > 0
    assert pretrain.tokens == 20 * full.trainable
    assert estimate.epoch_tokens > 0 and lora.steps == 2 * estimate.steps_per_epoch


def test_probe_runs_real_steps_and_calibrates_the_cpu(tmp_path, tiny_model_dir):
    estimate = estimate_config(load_config(estimate_yaml(tmp_path, tiny_model_dir)), "cpu", probe=True)
    assert estimate.probe["steps"] >= 1 and estimate.probe["tokens_per_s"] > 0 and estimate.probe["flops_per_s"] > 0
    assert estimate.hardware.achieved_flops == estimate.probe["flops_per_s"]
    assert estimate.scenarios[0].measured_memory and estimate.scenarios[0].peak_memory_bytes >= estimate.probe["peak_rss_bytes"]
    with pytest.raises(ValueError, match="--hardware cpu"):
        estimate_config(load_config(estimate_yaml(tmp_path, tiny_model_dir)), "h100", probe=True)


def test_a_compiled_config_is_probed_compiled_and_its_compiling_counted(tmp_path, tiny_model_dir):
    config = load_config(estimate_yaml(tmp_path, tiny_model_dir), {"train.compile": True})
    modelled = estimate_config(config, "cpu")
    assert any("train.compile is not modelled" in note for note in modelled.notes)
    probed = estimate_config(config, "cpu", probe=True, probe_steps=2, probe_warmup=1)
    assert probed.probe["compile_seconds"] > 1  # the warm-up step compiled the layers
    assert not any("train.compile" in note for note in probed.notes)
    eager = estimate_config(load_config(estimate_yaml(tmp_path, tiny_model_dir)), "cpu", probe=True, probe_steps=2, probe_warmup=1)
    assert eager.probe["compile_seconds"] == 0


@pytest.mark.parametrize("hardware", ["cpu", "h100"])
def test_cli_prints_a_table(tmp_path, tiny_model_dir, hardware):
    result = runner.invoke(app, ["estimate", estimate_yaml(tmp_path, tiny_model_dir), "--hardware", hardware,
                                 "--price-per-hour", "2"])
    assert result.exit_code == 0, result.output
    for text in ("peak memory", "total time", "LoRA", "full", "pretrain", "$"):
        assert text in result.stdout


def test_cli_json_and_unknown_hardware(tmp_path, tiny_model_dir):
    config = estimate_yaml(tmp_path, tiny_model_dir, method="full")
    result = runner.invoke(app, ["estimate", config, "--hardware", "l4", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [s["method"] for s in report["scenarios"]] == ["full", "pretrain"]
    assert report["hardware"]["name"] == "l4" and report["scenarios"][0]["peak_memory_bytes"] > 0
    result = runner.invoke(app, ["estimate", config, "--hardware", "tpu"])
    assert result.exit_code == 1 and "h100" in result.stderr
    result = runner.invoke(app, ["estimate", config, "--hardware", "h100", "--probe"])
    assert result.exit_code == 1 and "--hardware cpu" in result.stderr


def test_a_classification_config_is_refused_by_name(tiny_model_dir, tmp_path):
    config = load_config(None, {"model.base": str(tiny_model_dir), "train.method": "classification",
                                "data.train": write_chat_file(tmp_path / "train.jsonl")})
    with pytest.raises(ValueError, match="times reinforcement runs .*; a classification run is not modelled yet"):
        estimate_config(config)


def reinforcement_config(tmp_path, tiny_model_dir):
    from tests.serve.test_reinforcement_jobs import GRADER, write_prompt_file

    return load_config(None, {"model.base": str(tiny_model_dir), "train.method": "reinforcement", "lora.r": 4,
                              "train.batch_size": 2, "train.epochs": 1, "train.eval_every": 2,
                              "data.train": str(write_prompt_file(tmp_path / "prompts.jsonl")),
                              "data.valid": str(write_prompt_file(tmp_path / "valid.jsonl")),
                              "reinforcement.grader": GRADER, "reinforcement.group_size": 2,
                              "reinforcement.max_new_tokens": 4, "reinforcement.valid_samples": 3})


def test_a_reinforcement_run_is_timed_on_this_machine_not_modelled(tmp_path, tiny_model_dir):
    config = reinforcement_config(tmp_path, tiny_model_dir)
    for hardware in ("cpu", "h100"):
        with pytest.raises(ValueError, match="timed, not modelled: .* --probe` on the machine that will train"):
            estimate_config(config, hardware)
    with pytest.raises(ValueError, match="--probe measures this machine; use it with --hardware cpu"):
        estimate_config(config, "h100", probe=True)  # the same rule as for every other method
    estimate = estimate_config(config, "cpu", probe=True, probe_steps=2, probe_warmup=1, price_per_hour=1.0)
    [scenario] = estimate.scenarios
    assert scenario.label == "reinforcement (GRPO), LoRA r=4 (config)" and scenario.flops is None
    assert scenario.steps == 5 and estimate.train_examples == 10  # 10 prompts, 2 a step
    probe = estimate.probe
    assert probe["steps"] == 2 and probe["answers"] == 2 * 2 * 2 and probe["validation_seconds"] > 0
    assert scenario.train_seconds == pytest.approx(5 * probe["seconds"] / 2)
    validations = 3  # after steps 2 and 4, and the last
    assert scenario.total_seconds > scenario.train_seconds + validations * probe["validation_seconds"]
    assert scenario.measured_memory and scenario.peak_memory_bytes == probe["peak_rss_bytes"]
    assert scenario.cost == pytest.approx(scenario.total_seconds / 3600)
    console = Console(width=200, record=True)
    console.print(estimate_table(estimate))
    printed = console.export_text()
    assert scenario.label in printed and "— (timed)" in printed  # no FLOPs to show: the steps were timed


def dpo_config(tmp_path, tiny_model_dir, **dpo):
    return load_config(None, {"model.base": str(tiny_model_dir), "train.method": "dpo", "train.batch_size": 4,
                              "train.epochs": 1, "lora.r": 4, "data.max_length": 64,
                              "data.train": str(write_pairs(tmp_path / "pairs.jsonl")),
                              "data.valid": str(write_pairs(tmp_path / "valid.jsonl", ["copper", "silver"])),
                              **{f"dpo.{k}": v for k, v in dpo.items()}})


def test_a_dpo_runs_micro_batches_are_its_pairs_both_answers_as_collate_pairs_builds_them(tmp_path, tiny_model_dir,
                                                                                           tokenizer):
    config = dpo_config(tmp_path, tiny_model_dir)
    data = load_workload(config, tokenizer)
    assert len(data.train) == 10 and len(data.rows()) == 20  # pairs, and the answers they put through the model
    plan = plan_steps(data.train, 3, 4, 4, config.train.seed, 64, packing=True, expand=data.expand)
    for step, shapes in enumerate(plan):
        _, indices = step_example_indices(step, len(data.train), 4, config.train.seed)
        batch = collate_pairs([data.train[i] for i in indices], LoopSettings(
            total_steps=3, batch_size=4, micro_batch_size=4, max_length=64, packing=True, seed=0, bf16=False,
            max_grad_norm=1.0, log_every=1, eval_every=None, save_every=10, keep_checkpoints=1,
            pad_id=tokenizer.pad_token_id))
        assert (shapes[0].rows, shapes[0].width) == tuple(batch.inputs.input_ids.shape)
        assert shapes[0].real_tokens == batch.num_real_tokens
        assert shapes[0].trained_tokens == int(batch.trained.chosen.sum() + batch.trained.rejected.sum())


def test_a_dpo_estimate_counts_the_reference_forward_where_the_run_makes_it(tmp_path, tiny_model_dir, tokenizer):
    fresh = estimate_config(dpo_config(tmp_path, tiny_model_dir), "h100")  # adapters off in every step
    precomputed = estimate_config(dpo_config(tmp_path, tiny_model_dir, reference="precomputed"), "h100")
    simpo = estimate_config(dpo_config(tmp_path, tiny_model_dir, loss="simpo"), "h100")  # no reference at all
    assert [s.label for s in fresh.scenarios[:2]] == ["dpo (sigmoid), LoRA r=4 (config)", "full finetune"]
    assert fresh.train_examples == 10 and fresh.steps_per_epoch == 3
    shape = read_model_shape(tiny_model_dir)
    data = load_workload(dpo_config(tmp_path, tiny_model_dir), tokenizer)
    plan = plan_steps(data.train, 3, 4, 4, 42, 64, packing=True, expand=data.expand)
    lora = method_of(dpo_config(tmp_path, tiny_model_dir), shape)
    trained = sum(micro_batch_flops(mb, shape, lora) for step in plan for mb in step)
    reference = sum(micro_batch_flops(mb, shape, Method("eval")) for step in plan for mb in step)
    assert simpo.scenarios[0].flops == pytest.approx(trained)
    assert fresh.scenarios[0].flops == pytest.approx(trained + reference)
    assert precomputed.scenarios[0].flops == pytest.approx(trained)  # its reference pass comes before the steps,
    scored = data.expand(data.train) + data.expand(data.valid)  # once over every train and valid pair: in the total
    assert precomputed.scenarios[0].reference_seconds == pytest.approx(
        sum(micro_batch_flops(mb, shape, Method("eval")) for mb in eval_shapes(data.train, 64, True, expand=data.expand)
            + eval_shapes(data.valid, 64, True, expand=data.expand)) / precomputed.hardware.achieved_flops)
    assert precomputed.scenarios[0].reference_seconds > 0 and len(scored) == 24
    assert fresh.scenarios[0].reference_seconds == simpo.scenarios[0].reference_seconds == 0
    assert fresh.scenarios[1].flops == precomputed.scenarios[1].flops  # all weights: no adapters to switch off
    assert fresh.epoch_tokens == sum(len(e.input_ids) for e in data.rows())


def test_the_probe_times_real_dpo_steps(tmp_path, tiny_model_dir):
    for options in ({}, {"reference": "precomputed"}):
        estimate = estimate_config(dpo_config(tmp_path, tiny_model_dir, **options), "cpu", probe=True, probe_steps=1,
                                   probe_warmup=1)
        assert estimate.probe["steps"] == 1 and estimate.probe["flops_per_s"] > 0
        assert estimate.probe["real_tokens"] > 0 and estimate.scenarios[0].measured_memory
