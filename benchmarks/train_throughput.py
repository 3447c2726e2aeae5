"""Train the same LoRA SFT run with tunesmith and with TRL's SFTTrainer; print throughput, wall time, memory and loss as JSON.

Run as: .venv/bin/python benchmarks/train_throughput.py [--rows 512] [--valid-rows 128] [--epochs 1] [--out result.json]

Each side runs in its own process (tunesmith through its CLI, TRL through this script with --side trl), so
whole-process wall time and peak RSS (os.wait4's ru_maxrss for that child alone) are comparable. Afterwards
this process loads both adapters and scores them on the same validation rows with one function.

Measured:
  tokens_per_s  tokens of real examples (padding excluded) fed to the model per second of the training loop.
                tunesmith: from metrics.jsonl windows (window tokens = tokens_per_s × window seconds, window seconds
                = trained-token delta / trained_tokens_per_s), summed. TRL: attention_mask.sum() of every collated
                training batch, over the time between the on_train_begin and on_train_end callbacks.
  wall_s        the whole child process: imports, data preparation, model load, training, in-run validation, saving.
  valid_loss    mean cross-entropy per assistant token (answer content + <|im_end|>) on the valid rows, fp32, computed
                here for both adapters by `assistant_token_loss`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from json_report import emit

REPO = Path(__file__).resolve().parents[1]
BASE = "smollm2-135m-instruct"
LORA = {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"}


# --- shared settings and data -------------------------------------------------------------------------------------

def hardware_bf16() -> bool:
    """bf16 matmuls in this CPU (AVX512-BF16 or AMX): where they are emulated, float32 is both sides' faster setting
    (and what `tunesmith train` chooses by default)."""
    import torch

    from tunesmith.models.classifier import bf16_supported

    return bf16_supported(torch.device("cpu"))


def bench_settings(args: argparse.Namespace) -> dict:
    """The one run configuration both sides are given: bf16 autocast where the CPU has bf16 matmuls, else float32."""
    return {
        "base_model": BASE,
        "lora": LORA,
        "bf16": hardware_bf16(),
        "rows": args.rows,
        "valid_rows": args.valid_rows,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "micro_batch_size": args.batch_size,  # no gradient accumulation on either side
        "lr": args.lr,
        "scheduler": "cosine",
        "warmup_ratio": 0.03,
        "seed": args.seed,
        "max_length": args.max_length,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "train_file": str(args.train),
        "valid_file": str(args.valid),
        "trl_labels": args.trl_labels,
        "trl_order": args.trl_order,
    }


def write_subset(source: Path, rows: int, target: Path) -> Path:
    lines = [line for line in source.read_text().splitlines() if line.strip()][:rows]
    target.write_text("".join(line + "\n" for line in lines))
    return target


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def warmup_steps(rows: int, batch_size: int, epochs: float, ratio: float) -> int:
    """Tunesmith's rule, int(ratio × total steps); TRL is given the same integer so both schedules are identical."""
    from tunesmith.train.schedule import total_steps

    return int(ratio * total_steps(rows, batch_size, epochs, None))


# --- child processes -----------------------------------------------------------------------------------------------

def run_child(command: list[str], log_path: Path, env: dict | None = None, exit_codes: tuple[int, ...] = (0,)) -> dict:
    """Run one side to completion; its own wall time and peak RSS (not the maximum over all children). An exit code
    outside `exit_codes` is an error; the one it ended with is `exit_code`."""
    started = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode not in exit_codes:
        tail = log_path.read_text()[-3000:]
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}); log {log_path}:\n{tail}")
    return {"wall_s": round(wall, 2), "exit_code": process.returncode, "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1)}


def tunesmith_config(settings: dict, train: Path, valid: Path, packing: bool, share_prefix: bool | None = None,
                     grouped_attention: bool = True) -> dict:
    """share_prefix None: tunesmith's default (on for packed supervised runs); grouped_attention False: sdpa's kernels."""
    data = {"train": str(train), "valid": str(valid), "max_length": settings["max_length"], "packing": packing}
    if share_prefix is not None:
        data["share_prefix"] = share_prefix
    return {
        "model": {"base": settings["base_model"]},
        "data": data,
        "lora": dict(settings["lora"]),
        "train": {
            "method": "lora",
            "epochs": settings["epochs"],
            "lr": settings["lr"],
            "batch_size": settings["batch_size"],
            "micro_batch_size": settings["micro_batch_size"],
            "warmup_ratio": settings["warmup_ratio"],
            "scheduler": settings["scheduler"],
            "weight_decay": settings["weight_decay"],
            "max_grad_norm": settings["max_grad_norm"],
            "seed": settings["seed"],
            "bf16": settings["bf16"],
            "grouped_attention": grouped_attention,
        },
    }


def tunesmith_loop_figures(metrics_path: Path) -> dict:
    """Sum metrics.jsonl's logging windows back into loop seconds and real tokens."""
    from tunesmith.train.metrics import read_metrics

    seconds, real_tokens, previous_trained, valid_loss, peak = 0.0, 0.0, 0, None, None
    for record in read_metrics(metrics_path):
        if "tokens_per_s" in record:
            window = (record["trained_tokens"] - previous_trained) / record["trained_tokens_per_s"]
            seconds += window
            real_tokens += record["tokens_per_s"] * window
            previous_trained = record["trained_tokens"]
            peak = record["peak_rss_mb"]
        if "valid_loss" in record:
            valid_loss = record["valid_loss"]
    return {"train_s": seconds, "real_tokens": round(real_tokens), "trained_tokens": previous_trained,
            "in_run_valid_loss": valid_loss, "loop_peak_rss_mb": peak}


def run_tunesmith(settings: dict, train: Path, valid: Path, work: Path, packing: bool, share_prefix: bool | None = None,
                  grouped_attention: bool = True) -> dict:
    import yaml

    name = "tunesmith-no-share-prefix" if share_prefix is False else "tunesmith" if grouped_attention else "tunesmith-sdpa"
    config_path = work / f"{name}.yaml"
    config = tunesmith_config(settings, train, valid, packing, share_prefix, grouped_attention)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    run_dir = work / f"{name}-run"
    command = [str(Path(sys.executable).parent / "tunesmith"), "train", str(config_path), "--out", str(run_dir)]
    process = run_child(command, work / f"{name}.log")
    loop = tunesmith_loop_figures(run_dir / "metrics.jsonl")
    run = json.loads((run_dir / "run.json").read_text())
    return {
        **process,
        **loop,
        "tokens_per_s": round(loop["real_tokens"] / loop["train_s"], 1),
        "train_s": round(loop["train_s"], 2),
        "steps": run["steps"],
        "final_train_loss": run["final_loss"],
        "adapter": str(run_dir / "adapter"),
        "packing": packing,
        "share_prefix": yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["share_prefix"],  # as resolved
    }


def run_trl(settings: dict, train: Path, valid: Path, work: Path, name: str, gradient_checkpointing: bool,
            attention: str | None = None) -> dict:
    out = work / f"{name}-run"
    command = [sys.executable, str(Path(__file__).resolve()), "--side", "trl", "--settings", json.dumps(settings),
               "--train", str(train), "--valid", str(valid), "--trl-out", str(out)]
    if not gradient_checkpointing:
        command.append("--trl-no-gradient-checkpointing")
    if attention:
        command += ["--trl-attention", attention]
    process = run_child(command, work / f"{name}.log")
    inner = json.loads((out / "bench.json").read_text())
    return {**process, **inner, "adapter": str(out / "adapter")}


# --- the TRL side (runs in its own process) -----------------------------------------------------------------------

def prompt_completion(row: dict) -> dict:
    """Conversational prompt/completion split of a chat row: TRL trains on the completion (last assistant turn)."""
    messages = row["messages"]
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def tunesmith_ordered(trainer_class, seed: int):
    """`trainer_class` drawing each epoch's examples in tunesmith's order (train/schedule.py epoch_order), so the
    two sides see the same batches at every step and differ only in how they compute and apply them."""
    from torch.utils.data import Sampler

    from tunesmith.train.schedule import epoch_order

    class EpochOrder(Sampler):
        def __init__(self, size: int):
            self.size, self.epoch = size, 0

        def __len__(self) -> int:
            return self.size

        def __iter__(self):
            order, self.epoch = epoch_order(self.size, seed, self.epoch), self.epoch + 1
            return iter(order)

    class Ordered(trainer_class):
        def _get_train_sampler(self, train_dataset=None):
            return EpochOrder(len(train_dataset if train_dataset is not None else self.train_dataset))

    return Ordered


def trl_side(args: argparse.Namespace) -> None:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from tunesmith.models.resolve import resolve_model_dir

    settings = json.loads(args.settings)
    out = Path(args.trl_out)
    if settings["trl_labels"] == "tunesmith":  # tunesmith's own tokens and labels, which SFTTrainer keeps as given
        from tunesmith.data.render import render_chat
        from tunesmith.models.load import load_tokenizer

        tokenizer = load_tokenizer(settings["base_model"])
        rendered = lambda path: Dataset.from_list([
            {"input_ids": e.input_ids, "labels": e.labels}
            for e in (render_chat(tokenizer, r["messages"], settings["max_length"]) for r in read_rows(path))])
        train, valid = rendered(Path(args.train)), rendered(Path(args.valid))
    else:
        train = Dataset.from_list([prompt_completion(r) for r in read_rows(Path(args.train))])
        valid = Dataset.from_list([prompt_completion(r) for r in read_rows(Path(args.valid))])
    config = SFTConfig(
        output_dir=str(out),
        use_cpu=True,
        bf16=settings["bf16"],
        num_train_epochs=settings["epochs"],
        per_device_train_batch_size=settings["micro_batch_size"],
        gradient_accumulation_steps=settings["batch_size"] // settings["micro_batch_size"],
        learning_rate=settings["lr"],
        lr_scheduler_type=settings["scheduler"],
        warmup_steps=warmup_steps(settings["rows"], settings["batch_size"], settings["epochs"], settings["warmup_ratio"]),
        weight_decay=settings["weight_decay"],
        max_grad_norm=settings["max_grad_norm"],
        seed=settings["seed"],
        max_length=settings["max_length"],
        completion_only_loss=True,
        gradient_checkpointing=not args.trl_no_gradient_checkpointing,
        model_init_kwargs={"attn_implementation": args.trl_attention} if args.trl_attention else None,
        report_to=[],
    )
    peft_config = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                             target_modules=LORA["target_modules"], task_type="CAUSAL_LM")
    trainer_class = SFTTrainer
    if settings["trl_order"] == "tunesmith":  # the example order tunesmith's run takes at this seed
        trainer_class = tunesmith_ordered(SFTTrainer, settings["seed"])
    trainer = trainer_class(model=str(resolve_model_dir(settings["base_model"])), args=config,
                            train_dataset=train, eval_dataset=valid, peft_config=peft_config)

    counter = {"real_tokens": 0, "trained_tokens": 0, "padded_tokens": 0, "counting": False}
    collate = trainer.data_collator

    def counting_collator(examples):
        batch = collate(examples)
        if counter["counting"]:
            counter["real_tokens"] += int(batch["attention_mask"].sum())
            counter["padded_tokens"] += int(batch["attention_mask"].numel())
            counter["trained_tokens"] += int((batch["labels"][:, 1:] != -100).sum())
        return batch

    class LoopClock(TrainerCallback):
        def on_train_begin(self, *_, **__):
            counter["counting"], counter["begin"] = True, time.perf_counter()

        def on_train_end(self, *_, **__):
            counter["counting"], counter["end"] = False, time.perf_counter()

    trainer.data_collator = counting_collator
    trainer.add_callback(LoopClock())
    result = trainer.train()
    evaluation = trainer.evaluate()
    trainer.save_model(str(out / "adapter"))
    train_s = counter["end"] - counter["begin"]
    record = {
        "tokens_per_s": round(counter["real_tokens"] / train_s, 1),
        "train_s": round(train_s, 2),
        "real_tokens": counter["real_tokens"],
        "trained_tokens": counter["trained_tokens"],
        "padding_fraction": round(1 - counter["real_tokens"] / max(counter["padded_tokens"], 1), 3),
        "trainer_train_runtime_s": result.metrics["train_runtime"],
        "steps": result.global_step,
        "final_train_loss": result.training_loss,
        "in_run_valid_loss": evaluation["eval_loss"],
        "gradient_checkpointing": config.gradient_checkpointing,
        "attn_implementation": trainer.model.config._attn_implementation,
        "packing": config.packing,
        "optim": str(config.optim),
        "loss_mask": "completion_only_loss (prompt/completion rows)",
        "torch_threads": torch.get_num_threads(),
    }
    (out / "bench.json").write_text(json.dumps(record, indent=2))


# --- one validation loss for both adapters --------------------------------------------------------------------------

def assistant_example(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """(input ids, labels): labels are the ids of the final assistant turn's content through <|im_end|>, else -100."""
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("chat template does not render the prompt as a prefix of the conversation")
    answer = full[len(prompt):].rstrip()  # content + <|im_end|>, the trailing newline is not an answer token
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    return prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids


def assistant_token_loss(model, tokenizer, rows: list[dict], batch_size: int = 16) -> float:
    """Mean next-token cross-entropy over every assistant token of `rows` (token-weighted), fp32, no autocast."""
    import torch
    import torch.nn.functional as F

    examples = [assistant_example(tokenizer, row["messages"]) for row in rows]
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            width = max(len(ids) for ids, _ in chunk)
            input_ids = torch.full((len(chunk), width), tokenizer.pad_token_id)
            labels = torch.full((len(chunk), width), -100)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, (ids, lab) in enumerate(chunk):
                input_ids[i, : len(ids)], labels[i, : len(ids)], mask[i, : len(ids)] = torch.tensor(ids), torch.tensor(lab), 1
            logits = model(input_ids=input_ids, attention_mask=mask).logits.float()  # (B, T, V)
            targets = labels[:, 1:]
            total += F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                     ignore_index=-100, reduction="sum").item()
            count += int((targets != -100).sum())
    return total / count


def score_adapters(adapters: dict[str, str], valid: Path) -> dict[str, float]:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.models.resolve import resolve_model_dir

    base_dir = resolve_model_dir(BASE)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    rows = read_rows(valid)
    scores = {}
    for name, adapter in {"base_model": None, **adapters}.items():
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        if adapter is not None:
            model = PeftModel.from_pretrained(model, adapter)
        scores[name] = round(assistant_token_loss(model, tokenizer, rows), 4)
    return scores


# --- the benchmark ---------------------------------------------------------------------------------------------------

def machine_state() -> dict:
    import torch
    import transformers
    import trl

    from tunesmith.train.provenance import cpu_model

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_bf16": hardware_bf16(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "load_avg_before": [round(x, 2) for x in os.getloadavg()],
    }


def ratio(a: float, b: float) -> float:
    return round(a / b, 2)


def benchmark(args: argparse.Namespace) -> dict:
    settings = bench_settings(args)
    machine = machine_state()
    work = Path(tempfile.mkdtemp(prefix="tunesmith-bench-")) if args.workdir is None else args.workdir
    work.mkdir(parents=True, exist_ok=True)
    train = write_subset(args.train, args.rows, work / "train.jsonl")
    valid = write_subset(args.valid, args.valid_rows, work / "valid.jsonl")
    from tunesmith.models.resolve import resolve_model_dir

    for weights in Path(resolve_model_dir(BASE)).iterdir():  # page cache warm for every side, not just the later ones
        weights.read_bytes()

    sides = set(args.sides.split(",")) - ({"trl_no_gradient_checkpointing"} if args.skip_trl_no_gc else set())
    rounds = []
    for index in range(args.rounds):  # every side once per round, in the same order: the machine's drift meets each side
        folder = work if args.rounds == 1 else work / f"round-{index + 1}"
        folder.mkdir(parents=True, exist_ok=True)
        rounds.append(run_sides(sides, settings, train, valid, folder, args, machine if index == 0 else {}))
    results = rounds[0] if len(rounds) == 1 else median_sides(rounds)
    scores = score_adapters({name: r["adapter"] for name, r in results.items()}, valid)  # round 1's adapters
    for name, result in results.items():
        result["valid_loss"] = scores[name]
    report = {**results}
    if len(rounds) > 1:
        report["rounds"] = [{name: {key: side[key] for key in (*MEDIAN_FIGURES, "final_train_loss") if key in side}
                             for name, side in sides_run.items()}
                            for sides_run in rounds]
        report["ratios_vs_fastest_trl_each_round"] = [fastest_trl_ratios(sides_run) for sides_run in rounds]
    report["base_model_valid_loss"] = scores["base_model"]
    if {"tunesmith", "trl"} <= set(results):
        report["ratios"] = compare(results["tunesmith"], results["trl"])
    if {"tunesmith", "trl_no_gradient_checkpointing"} <= set(results):
        report["ratios_vs_trl_no_gradient_checkpointing"] = compare(results["tunesmith"], results["trl_no_gradient_checkpointing"])
    trl_sides = {name: r for name, r in results.items() if name.startswith("trl")}
    if trl_sides:  # TRL's fastest side in this run, whichever it is, against each tunesmith side
        fastest = max(trl_sides, key=lambda name: trl_sides[name]["tokens_per_s"])
        for ours, key in (("tunesmith", "ratios_vs_fastest_trl"), ("tunesmith_no_share_prefix", "no_share_prefix_ratios_vs_fastest_trl"),
                          ("tunesmith_sdpa", "sdpa_ratios_vs_fastest_trl")):
            if ours in results:
                report[key] = {"side": fastest, **compare(results[ours], trl_sides[fastest])}
    report["config"] = settings
    report["machine"] = machine
    report["notes"] = notes(results, machine, work, settings)
    return report


def run_sides(sides: set[str], settings: dict, train: Path, valid: Path, work: Path, args: argparse.Namespace,
              machine: dict) -> dict:
    """One run of each side asked for, one after another; `machine` takes the load average after some of them."""
    results = {}
    if "tunesmith" in sides:
        results["tunesmith"] = run_tunesmith(settings, train, valid, work, packing=not args.tunesmith_no_packing)
        machine["load_avg_after_tunesmith"] = [round(x, 2) for x in os.getloadavg()]
    if "tunesmith_no_share_prefix" in sides:  # packing without sharing the system prompt (the default until 2026-12-05)
        results["tunesmith_no_share_prefix"] = run_tunesmith(settings, train, valid, work, packing=True, share_prefix=False)
    if "tunesmith_sdpa" in sides:  # sdpa's attention kernels instead of grouped attention (the default until 2026-12-06)
        results["tunesmith_sdpa"] = run_tunesmith(settings, train, valid, work, packing=not args.tunesmith_no_packing,
                                                  grouped_attention=False)
    if "trl" in sides:
        results["trl"] = run_trl(settings, train, valid, work, "trl", gradient_checkpointing=True)
        machine["load_avg_after_trl"] = [round(x, 2) for x in os.getloadavg()]
    if "trl_no_gradient_checkpointing" in sides:
        results["trl_no_gradient_checkpointing"] = run_trl(settings, train, valid, work, "trl-nogc", gradient_checkpointing=False)
    for name, gradient_checkpointing in (("trl_eager", True), ("trl_eager_no_gradient_checkpointing", False)):
        if name in sides:  # eager attention: matmul + softmax, the kind of kernel tunesmith uses on short rows
            results[name] = run_trl(settings, train, valid, work, name.replace("_", "-"), gradient_checkpointing, "eager")
    return results


MEDIAN_FIGURES = ("tokens_per_s", "train_s", "wall_s", "peak_rss_mb", "cpu_s")  # a side's figures over the rounds


def median_sides(rounds: list[dict]) -> dict:
    """Each side's figures as the median over the rounds (its adapter, scored for valid_loss, and the rest from
    round 1). A side trains the same steps in every round: `same_training_each_round` says whether its final train
    loss was the same in all of them."""
    merged = {}
    for name, first in rounds[0].items():
        runs = [sides_run[name] for sides_run in rounds]
        merged[name] = {**first, **{key: statistics.median(run[key] for run in runs)
                                    for key in MEDIAN_FIGURES if key in first}, "rounds": len(runs),
                        "same_training_each_round": len({run.get("final_train_loss") for run in runs}) == 1}
    return merged


def fastest_trl_ratios(results: dict) -> dict:
    trl_sides = {name: r for name, r in results.items() if name.startswith("trl")}
    if "tunesmith" not in results or not trl_sides:
        return {}
    fastest = max(trl_sides, key=lambda name: trl_sides[name]["tokens_per_s"])
    return {"side": fastest, **compare(results["tunesmith"], trl_sides[fastest], loss=False)}


def compare(ours: dict, theirs: dict, loss: bool = True) -> dict:
    return {
        "throughput": ratio(ours["tokens_per_s"], theirs["tokens_per_s"]),
        "wall_time": ratio(theirs["wall_s"], ours["wall_s"]),  # > 1: tunesmith finishes sooner
        "train_time": ratio(theirs["train_s"], ours["train_s"]),
        "peak_rss": ratio(ours["peak_rss_mb"], theirs["peak_rss_mb"]),  # < 1: tunesmith uses less
        **({"valid_loss_delta": round(ours["valid_loss"] - theirs["valid_loss"], 4)} if loss else {}),  # <= 0: tunesmith equal or better
    }


def notes(results: dict, machine: dict, work: Path, settings: dict) -> list[str]:
    ts = results.get("tunesmith", {"packing": True})
    lines = [
        "Loss mask: tunesmith trains assistant content + <|im_end|>; TRL's assistant_only_loss=True needs {% generation %} "
        "markers that the SmolLM2 template lacks (TRL 1.16 has no patched template for it and raises), so TRL gets the same "
        "rows as conversational prompt/completion with completion_only_loss=True, which also trains the newline after "
        "<|im_end|> (one extra, easy token per example).",
        f"tunesmith packing={'on (its default: block-diagonal mask, no cross-example attention)' if ts['packing'] else 'off'}; "
        "TRL packing=False, padding_free=False (SFTConfig defaults).",
        "TRL runs its SFTConfig defaults otherwise: gradient_checkpointing=True, optim=adamw_torch_fused, per-step "
        "entropy/token-accuracy metrics; 'trl_no_gradient_checkpointing' is the same run with gradient checkpointing off; "
        "'trl_eager' (and 'trl_eager_no_gradient_checkpointing') load the model with attn_implementation='eager' "
        "(matmul + softmax attention, as tunesmith's math kernel on short rows) instead of sdpa. ratios_vs_fastest_trl "
        "compares with whichever TRL side ran fastest.",
        "Both: fp32 weights, " + ("bf16 CPU autocast" if settings["bf16"] else "float32 (this CPU has no bf16 matmuls; "
        "before 2026-12-07 both sides ran emulated bf16 here)") + ", AdamW (betas 0.9/0.999, wd 0), clip 1.0, cosine with "
        f"int(0.03 × steps) warm-up steps, batch 16 without accumulation, seed {settings['seed']}; example order: "
        + ("TRL draws tunesmith's (the same batches at every step; valid loss moves by ~0.03 with the order alone)."
           if settings["trl_order"] == "tunesmith" else "each side's own shuffling, so the order differs."),
        f"tunesmith share_prefix={ts.get('share_prefix')} (its default: the examples' common untrained system prompt "
        "computed once per packed row; each example still computes what it would alone; tokens_per_s counts every "
        "example's tokens, prompt included, as the other sides do). tunesmith_no_share_prefix (when run): packing "
        "without it, the default until 2026-12-05. tunesmith_sdpa (when run): the training forward through sdpa's "
        "kernels over each packed row's masked square instead of grouped attention (each example's block as its own "
        "dense product), the default until 2026-12-06.",
        "wall_s includes everything each command does: tunesmith train also writes a checkpoint and exports the merged "
        "model (safetensors); TRL runs trainer.evaluate() on the valid rows and saves the adapter.",
        "valid_loss: both adapters scored in the parent process by assistant_token_loss (fp32, token-weighted mean over "
        "answer + <|im_end|>); in_run_valid_loss is each tool's own figure in the run's dtype.",
        f"Work directory (logs, runs): {work}",
    ]
    worst = max(machine["load_avg_before"][0], machine.get("load_avg_after_tunesmith", [0])[0], machine.get("load_avg_after_trl", [0])[0])
    if worst > 1.5:
        lines.append(f"Machine was not quiet (1-min load up to {worst}); on 2 cores, contention slows torch by 10-30×.")
    return lines


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=512, help="first N rows of --train")
    parser.add_argument("--valid-rows", type=int, default=128, help="first N rows of --valid")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--train", type=Path, default=REPO / "examples/elements/train.jsonl")
    parser.add_argument("--valid", type=Path, default=REPO / "examples/elements/valid.jsonl")
    parser.add_argument("--workdir", type=Path, default=None, help="keep runs and logs here (default: a new temp dir)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--tunesmith-no-packing", action="store_true", help="turn off tunesmith's default packing")
    parser.add_argument("--sides", default="tunesmith,trl,trl_no_gradient_checkpointing,trl_eager_no_gradient_checkpointing",
                        help="comma-separated subset to run (e.g. tunesmith alone, to see how its loss moves with --seed); "
                             "also trl_eager (TRL with eager attention, gradient checkpointing on) and tunesmith_no_share_prefix "
                             "(tunesmith with data.share_prefix off: every example keeps its own copy of the system prompt) and "
                             "tunesmith_sdpa (tunesmith with train.grouped_attention off: sdpa's kernels)")
    parser.add_argument("--trl-labels", choices=["trl", "tunesmith"], default="trl",
                        help="TRL's rows: its own prompt/completion rendering (trains the newline after <|im_end|> too), "
                             "or tunesmith's exact input_ids and labels")
    parser.add_argument("--trl-order", choices=["trl", "tunesmith"], default="tunesmith",
                        help="TRL's example order: the order tunesmith's run takes at --seed (the default: the order "
                             "alone moves the valid loss by ~0.03, so only the same batches compare the training), "
                             "or its own sampler's")
    parser.add_argument("--skip-trl-no-gc", action="store_true", help="skip the extra TRL run without gradient checkpointing")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every side this many times, one round after another (each round every side once, in "
                             "the same order); the figures are each side's medians, every round's are in `rounds`")
    # internal: the TRL child process
    parser.add_argument("--side", choices=["trl"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--settings", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--trl-out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--trl-no-gradient-checkpointing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--trl-attention", default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.side == "trl":
        trl_side(args)
        return
    report = benchmark(args)
    emit(report, args.out)


if __name__ == "__main__":
    main()
