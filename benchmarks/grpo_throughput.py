"""Train the same LoRA GRPO steps with tunesmith and with TRL's GRPOTrainer; print answers/s, wall time, memory and reward as JSON.

Run as: .venv/bin/python benchmarks/grpo_throughput.py [--steps 8] [--out result.json]

Each side runs in its own process (tunesmith through its CLI, TRL through this script with --side trl), so
whole-process wall time and peak RSS (os.wait4's ru_maxrss for that child alone) are comparable. Both sides get the
same prompts in the same order (the first steps × batch prompts of examples/reinforce/train.jsonl in tunesmith's
seeded order; TRL takes them unshuffled), the same grader (examples/reinforce/reinforce.yaml's, called through
tunesmith's grade_many on both sides), LoRA r16 on all linear layers from the base model, 8 answers a prompt at
temperature 1.0 and at most 32 tokens, GRPO's loss normalised per answer (TRL's loss_type "grpo"), group-scaled
advantages, beta 0, one update per generation, constant lr, bf16 autocast over fp32 weights. TRL runs twice: with
GRPOConfig's defaults for everything not shared (gradient checkpointing on) and with gradient checkpointing off, its
fastest CPU setting here (vLLM, its fast sampler, needs a GPU). tunesmith runs twice too: at its defaults (activation
checkpointing off) and with train.activation_checkpointing on, TRL's default memory setting (ratios_checkpointed_vs_
trl_defaults compares those two like for like).

Measured:
  answers_per_s   sampled, graded and trained answers per second of the training loop. tunesmith: loop seconds from
                  metrics.jsonl windows (real tokens / tokens per second); TRL: between on_train_begin and on_train_end.
  wall_s          the whole child process: imports, model load, training, saving.
  mean_reward     the mean reward of every sampled answer over the run (each side's own samples).
  heldout_reward  greedy answers to --heldout validation prompts (examples/reinforce/valid.jsonl) from each side's
                  adapter, scored here by one function (tunesmith's engine, the same grader).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml
from json_report import emit
from train_throughput import machine_state, ratio, run_child

REPO = Path(__file__).resolve().parents[1]
LORA = {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"}
EXAMPLE = REPO / "examples/reinforce"


def bench_settings(args: argparse.Namespace) -> dict:
    """The one run configuration both sides are given."""
    grader = yaml.safe_load((EXAMPLE / "reinforce.yaml").read_text())["reinforcement"]["grader"]
    return {"base_model": args.base, "lora": LORA, "bf16": True, "steps": args.steps, "batch_size": args.batch_size,
            "group_size": 8, "max_new_tokens": 32, "temperature": 1.0, "lr": args.lr, "seed": args.seed,
            "max_length": 256, "max_grad_norm": 1.0, "grader": grader, "loss": "grpo (per-answer token means)",
            "scale_rewards": "group", "beta": 0.0}


def prompt_files(settings: dict, work: Path) -> tuple[Path, Path]:
    """(the prompts tunesmith is given, the same prompts in the order its loop draws them: TRL's, unshuffled)."""
    from tunesmith.train.schedule import epoch_order

    lines = [line for line in (EXAMPLE / "train.jsonl").read_text().splitlines() if line.strip()]
    count = settings["steps"] * settings["batch_size"]
    picked = lines[:count]
    (work / "prompts.jsonl").write_text("".join(line + "\n" for line in picked))
    (work / "trl-prompts.jsonl").write_text("".join(picked[i] + "\n" for i in epoch_order(count, settings["seed"], 0)))
    return work / "prompts.jsonl", work / "trl-prompts.jsonl"


# --- the tunesmith side -------------------------------------------------------------------------------------------

def run_tunesmith(settings: dict, prompts: Path, work: Path, name: str, activation_checkpointing: bool) -> dict:
    config = {
        "model": {"base": settings["base_model"]},
        "data": {"train": str(prompts), "max_length": settings["max_length"]},
        "lora": dict(settings["lora"]),
        "train": {"method": "reinforcement", "epochs": 1, "lr": settings["lr"], "batch_size": settings["batch_size"],
                  "warmup_ratio": 0.0, "scheduler": "constant", "seed": settings["seed"], "bf16": settings["bf16"],
                  "max_grad_norm": settings["max_grad_norm"], "log_every": 1, "save_every": settings["steps"],
                  "activation_checkpointing": activation_checkpointing},
        "reinforcement": {"grader": settings["grader"], "group_size": settings["group_size"],
                          "max_new_tokens": settings["max_new_tokens"], "temperature": settings["temperature"],
                          "beta": settings["beta"], "scale_rewards": settings["scale_rewards"]},
    }
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    run_dir = work / f"{name}-run"
    process = run_child([str(Path(sys.executable).parent / "tunesmith"), "train", str(path), "--out", str(run_dir)],
                        work / f"{name}.log")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    loop_s = sum(r["real_tokens"] / r["tokens_per_s"] for r in records if "tokens_per_s" in r)
    answers = settings["steps"] * settings["batch_size"] * settings["group_size"]
    return {**process, "answers_per_s": round(answers / loop_s, 3), "train_s": round(loop_s, 2),
            "steps": len(records), "mean_reward": round(sum(r["reward"] for r in records) / len(records), 4),
            "rewards": [round(r["reward"], 4) for r in records], "adapter": str(run_dir / "adapter")}


# --- the TRL side (runs in its own process) -----------------------------------------------------------------------

def run_trl(settings: dict, prompts: Path, work: Path, name: str, gradient_checkpointing: bool) -> dict:
    out = work / f"{name}-run"
    command = [sys.executable, str(Path(__file__).resolve()), "--side", "trl", "--settings", json.dumps(settings),
               "--prompts", str(prompts), "--trl-out", str(out)]
    if not gradient_checkpointing:
        command.append("--trl-no-gradient-checkpointing")
    process = run_child(command, work / f"{name}.log")
    return {**process, **json.loads((out / "bench.json").read_text()), "adapter": str(out / "adapter")}


def trl_side(args: argparse.Namespace) -> None:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from tunesmith.models.resolve import resolve_model_dir
    from tunesmith.train.graders import grade_many, parse_grader

    settings = json.loads(args.settings)
    out = Path(args.trl_out)
    base_dir = resolve_model_dir(settings["base_model"])
    grader = parse_grader(settings["grader"])
    rows = [json.loads(line) for line in Path(args.prompts).read_text().splitlines()]
    dataset = Dataset.from_list([{"prompt": row["messages"], "answer": row["answer"], "aliases": row["aliases"],
                                  "case_sensitive": row["case_sensitive"]} for row in rows])
    rewards: list[float] = []

    def graded(completions, answer, aliases, case_sensitive, **_):
        items = [{"answer": a, "aliases": al, "case_sensitive": c} for a, al, c in zip(answer, aliases, case_sensitive)]
        scores = [g.reward for g in grade_many(grader, [c[0]["content"] for c in completions], items)]
        rewards.extend(scores)
        return scores

    answers = settings["batch_size"] * settings["group_size"]
    config = GRPOConfig(
        output_dir=str(out), use_cpu=True, bf16=settings["bf16"], max_steps=settings["steps"],
        per_device_train_batch_size=answers, gradient_accumulation_steps=1,  # one generation, one update a step
        num_generations=settings["group_size"], max_completion_length=settings["max_new_tokens"],
        temperature=settings["temperature"], learning_rate=settings["lr"], lr_scheduler_type="constant",
        warmup_steps=0, max_grad_norm=settings["max_grad_norm"], seed=settings["seed"], loss_type="grpo",
        scale_rewards=settings["scale_rewards"], beta=settings["beta"], shuffle_dataset=False,
        gradient_checkpointing=not args.trl_no_gradient_checkpointing, save_strategy="no", logging_steps=1,
        report_to=[])
    peft_config = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                             target_modules=LORA["target_modules"], task_type="CAUSAL_LM")
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    trainer = GRPOTrainer(model=model, reward_funcs=graded, args=config, train_dataset=dataset,
                          processing_class=AutoTokenizer.from_pretrained(base_dir), peft_config=peft_config)
    clock = {}

    class LoopClock(TrainerCallback):
        def on_train_begin(self, *_, **__):
            clock["begin"] = time.perf_counter()

        def on_train_end(self, *_, **__):
            clock["end"] = time.perf_counter()

    trainer.add_callback(LoopClock())
    result = trainer.train()
    trainer.save_model(str(out / "adapter"))
    train_s = clock["end"] - clock["begin"]
    per_step = [sum(rewards[i:i + answers]) / answers for i in range(0, len(rewards), answers)]
    record = {"answers_per_s": round(len(rewards) / train_s, 3), "train_s": round(train_s, 2), "steps": result.global_step,
              "answers": len(rewards), "mean_reward": round(sum(rewards) / len(rewards), 4),
              "rewards": [round(r, 4) for r in per_step], "gradient_checkpointing": config.gradient_checkpointing,
              "loss_type": config.loss_type, "torch_threads": torch.get_num_threads()}
    (out / "bench.json").write_text(json.dumps(record, indent=2))


# --- one held-out score for every adapter ---------------------------------------------------------------------------

def heldout_rewards(settings: dict, adapters: dict[str, str], count: int) -> dict[str, float]:
    """Greedy answers to the first `count` validation prompts from each adapter on the base model, graded."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tunesmith.data.prompts import load_prompt_rows
    from tunesmith.models.chat import render_prompts
    from tunesmith.models.decoding.offline import greedy_token_ids
    from tunesmith.models.load import load_tokenizer
    from tunesmith.models.resolve import resolve_model_dir
    from tunesmith.train.graders import grade_many, parse_grader

    tokenizer = load_tokenizer(settings["base_model"])
    rows = load_prompt_rows(EXAMPLE / "valid.jsonl").rows[:count]
    prompts = render_prompts(tokenizer, [row.messages for row in rows])
    grader = parse_grader(settings["grader"])
    model = AutoModelForCausalLM.from_pretrained(resolve_model_dir(settings["base_model"]), dtype=torch.float32).eval()
    scores = {}
    for name, adapter in {"base": None, **adapters}.items():
        scored = model if adapter is None else PeftModel.from_pretrained(model, adapter).merge_and_unload()
        answers = tokenizer.batch_decode(greedy_token_ids(scored, tokenizer, prompts, settings["max_new_tokens"]),
                                         skip_special_tokens=True)
        scores[name] = round(sum(g.reward for g in grade_many(grader, answers, [r.item for r in rows])) / len(rows), 4)
        model = AutoModelForCausalLM.from_pretrained(resolve_model_dir(settings["base_model"]), dtype=torch.float32).eval()
    return scores


# --- the benchmark ---------------------------------------------------------------------------------------------------

def benchmark(args: argparse.Namespace) -> dict:
    settings = bench_settings(args)
    machine = machine_state()
    work = Path(tempfile.mkdtemp(prefix="tunesmith-grpo-bench-")) if args.workdir is None else args.workdir
    work.mkdir(parents=True, exist_ok=True)
    prompts, trl_prompts = prompt_files(settings, work)
    results = {"tunesmith": run_tunesmith(settings, prompts, work, "tunesmith", activation_checkpointing=False)}
    machine["load_avg_after_tunesmith"] = [round(x, 2) for x in os.getloadavg()]
    results["tunesmith_activation_checkpointing"] = run_tunesmith(settings, prompts, work, "tunesmith-ac",
                                                                  activation_checkpointing=True)
    machine["load_avg_after_tunesmith_ac"] = [round(x, 2) for x in os.getloadavg()]
    results["trl"] = run_trl(settings, trl_prompts, work, "trl", gradient_checkpointing=True)
    machine["load_avg_after_trl"] = [round(x, 2) for x in os.getloadavg()]
    results["trl_no_gradient_checkpointing"] = run_trl(settings, trl_prompts, work, "trl-nogc",
                                                       gradient_checkpointing=False)
    machine["load_avg_after_trl_no_gc"] = [round(x, 2) for x in os.getloadavg()]
    heldout = heldout_rewards(settings, {name: r["adapter"] for name, r in results.items()}, args.heldout)
    for name, result in results.items():
        result["heldout_reward"] = heldout[name]
    return {
        **results,
        "heldout_reward_base": heldout["base"],
        "heldout_prompts": args.heldout,
        "ratios_vs_trl_defaults": compare(results["tunesmith"], results["trl"]),
        "ratios_vs_trl_fastest": compare(results["tunesmith"], results["trl_no_gradient_checkpointing"]),
        # like for like in memory: both recompute each layer's activations in backward
        "ratios_checkpointed_vs_trl_defaults": compare(results["tunesmith_activation_checkpointing"], results["trl"]),
        "config": settings,
        "machine": machine,
        "notes": [
            "Same prompts in the same order, same grader (called through tunesmith's grade_many on both sides), LoRA "
            "r16/alpha 32 on all linear layers from the same base, 8 answers a prompt at temperature 1.0 and at most 32 "
            "tokens, loss normalised per answer (TRL's loss_type grpo), group-scaled advantages, beta 0, constant lr, "
            "bf16 autocast over fp32 weights. The samples differ (each side's own sampler and seeds), so rewards are "
            "compared as means, not step by step.",
            "tunesmith samples through its serving engine (continuous batching, one prefill per prompt for its 8 answers) "
            "and packs a prompt once per row with its answers; TRL samples with transformers' generate (vLLM needs a GPU) "
            "and pads.",
            f"Work directory (logs, runs): {work}",
        ],
    }


def compare(ours: dict, theirs: dict) -> dict:
    return {"answers_per_s": ratio(ours["answers_per_s"], theirs["answers_per_s"]),  # > 1: tunesmith trains faster
            "wall_time": ratio(theirs["wall_s"], ours["wall_s"]),  # > 1: tunesmith finishes sooner
            "peak_rss": ratio(ours["peak_rss_mb"], theirs["peak_rss_mb"]),  # < 1: tunesmith uses less
            "heldout_reward_delta": round(ours["heldout_reward"] - theirs["heldout_reward"], 4)}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="smollm2-135m-instruct", help="base model: embedded name or local HF dir")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8, help="prompts a step (each answered 8 times)")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--heldout", type=int, default=64, help="validation prompts answered greedily per adapter")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    parser.add_argument("--side", choices=["trl"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--settings", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--prompts", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--trl-out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--trl-no-gradient-checkpointing", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.side == "trl":
        trl_side(args)
        return
    emit(benchmark(args), args.out)


if __name__ == "__main__":
    main()
