"""Train the same LoRA DPO run with tunesmith and with TRL's DPOTrainer; print pairs/s, wall time, memory and reward accuracy as JSON.

Run as: .venv/bin/python benchmarks/dpo_throughput.py [--pairs 128] [--out result.json]

Each side runs in its own process (tunesmith through its CLI, TRL through this script with --side trl), so
whole-process wall time and peak RSS (os.wait4's ru_maxrss for that child alone) are comparable. TRL runs
twice: with DPOConfig's defaults (gradient checkpointing on) and with gradient checkpointing off, its fastest
CPU setting here (DPOConfig.padding_free is disabled in TRL 1.16 and falls back to padding; precomputing the
reference log-probs moves the same reference forward passes before the loop instead of saving them).
Both sides train the same batches in the same order: TRL is given the pairs in tunesmith's seeded order and
draws them sequentially (train_sampling_strategy="sequential"; the TRL child checks every batch it trains).
With the same seed both start from the same LoRA weights, and with the same batches a tunesmith run and
DPOTrainer.train() compute the same updates (tests/train/test_dpo_trl_run.py, fp32, within 1e-5).
Afterwards this process loads every adapter and scores it on the same held-out pairs with one function.

Measured:
  pairs_per_s     preference pairs trained per second of the training loop. tunesmith: loop seconds from
                  metrics.jsonl windows (as train_throughput.py); TRL: pairs of every collated training batch,
                  between the on_train_begin and on_train_end callbacks.
  tokens_per_s    real tokens (padding excluded) of both answers' sequences per second of the loop.
  wall_s          the whole child process: imports, data preparation, model load, training, saving (tunesmith
                  also writes a checkpoint and exports the merged model).
  reward_accuracy share of held-out pairs whose implicit reward beta * (log pi - log pi_base) is higher for the
                  preferred answer, and the mean margin, scored here for every adapter by
                  tunesmith.evaluate.preference (fp32; the base model is the reference). Held out: every pair of
                  --valid, and every row of --train after the first --pairs whose answers no trained row has.
                  With a 95% interval from a bootstrap over terms (pairs sharing a preferred answer are
                  paraphrases of one question, so they are resampled together), also for the paired
                  difference tunesmith - TRL.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from json_report import emit
# Shared with the supervised benchmark beside this file: child-process accounting, machine description,
# and tunesmith's loop seconds rebuilt from metrics.jsonl.
from train_throughput import machine_state, ratio, run_child, tunesmith_loop_figures

REPO = Path(__file__).resolve().parents[1]
LORA = {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"}


# --- shared settings and data -------------------------------------------------------------------------------------

def bench_settings(args: argparse.Namespace) -> dict:
    """The one run configuration both sides are given."""
    return {
        "base_model": args.base,
        "lora": LORA,
        "bf16": True,
        "pairs": args.pairs,
        "epochs": 1,
        "batch_size": args.batch_size,
        "micro_batch_size": args.batch_size,  # no gradient accumulation on either side
        "lr": args.lr,
        "scheduler": "cosine",
        "warmup_steps": 0,
        "beta": args.beta,
        "loss": "sigmoid",
        "seed": args.seed,
        "max_length": args.max_length,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "train_file": str(args.train),
        "valid_file": str(args.valid),
        "order": "tunesmith's seeded permutation; TRL draws the pairs in it sequentially",
    }


def write_subset(source: Path, rows: int, target: Path) -> Path:
    lines = [line for line in source.read_text().splitlines() if line.strip()][:rows]
    target.write_text("".join(line + "\n" for line in lines))
    return target


def trl_rows(path: Path, settings: dict) -> list[dict]:
    """Conversational prompt/chosen/rejected rows for TRL, read with tunesmith's own loader (the same pairs), in the
    order tunesmith's loop draws them in its one epoch (its seeded permutation, schedule.epoch_order)."""
    from tunesmith.data.preference import load_preferences
    from tunesmith.train.schedule import epoch_order

    pairs = load_preferences(path).pairs
    if settings["epochs"] != 1 or len(pairs) % settings["batch_size"]:
        raise SystemExit("one epoch of whole batches only: a later epoch or a short last batch would be drawn differently")
    return [{"prompt": pairs[i].prompt, "chosen": [{"role": "assistant", "content": pairs[i].chosen}],
             "rejected": [{"role": "assistant", "content": pairs[i].rejected}]}
            for i in epoch_order(len(pairs), settings["seed"], 0)]


# --- the tunesmith side -------------------------------------------------------------------------------------------

def tunesmith_config(settings: dict, train: Path) -> dict:
    """No validation file and one checkpoint at the end: neither side evaluates during the run."""
    steps = -(-settings["pairs"] // settings["batch_size"])
    return {
        "model": {"base": settings["base_model"]},
        "data": {"train": str(train), "max_length": settings["max_length"], "packing": True},
        "lora": dict(settings["lora"]),
        "train": {
            "method": "dpo",
            "epochs": settings["epochs"],
            "lr": settings["lr"],
            "batch_size": settings["batch_size"],
            "micro_batch_size": settings["micro_batch_size"],
            "warmup_ratio": 0.0,  # settings["warmup_steps"] is 0
            "scheduler": settings["scheduler"],
            "weight_decay": settings["weight_decay"],
            "max_grad_norm": settings["max_grad_norm"],
            "seed": settings["seed"],
            "bf16": settings["bf16"],
            "log_every": 1,
            "save_every": steps,
        },
        "dpo": {"beta": settings["beta"], "loss": settings["loss"], "sft_weight": 0.0, "reference": "auto",
                **({"simpo_gamma": settings["simpo_gamma"]} if settings["loss"] == "simpo" else {})},
    }


def run_tunesmith(settings: dict, train: Path, work: Path, name: str = "tunesmith") -> dict:
    import yaml

    config_path = work / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(tunesmith_config(settings, train), sort_keys=False))
    run_dir = work / f"{name}-run"
    command = [str(Path(sys.executable).parent / "tunesmith"), "train", str(config_path), "--out", str(run_dir)]
    process = run_child(command, work / "tunesmith.log")
    loop = tunesmith_loop_figures(run_dir / "metrics.jsonl")
    run = json.loads((run_dir / "run.json").read_text())
    step_losses = [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]  # log_every 1
    return {
        **process,
        "pairs_per_s": round(settings["pairs"] / loop["train_s"], 3),
        "tokens_per_s": round(loop["real_tokens"] / loop["train_s"], 1),
        "train_s": round(loop["train_s"], 2),
        "real_tokens": loop["real_tokens"],
        "loop_peak_rss_mb": loop["loop_peak_rss_mb"],
        "steps": run["steps"],
        "final_train_loss": run["final_loss"],  # the last step's loss
        "mean_train_loss": round(sum(step_losses) / len(step_losses), 4),  # over every step (TRL's training_loss)
        "packing": True,
        "reference": "adapters disabled, in the same micro-batch" if settings["loss"] != "simpo" else "none (SimPO)",
        "adapter": str(run_dir / "adapter"),
    }


# --- the TRL side (runs in its own process) -----------------------------------------------------------------------

def run_trl(settings: dict, train: Path, work: Path, name: str, gradient_checkpointing: bool) -> dict:
    out = work / f"{name}-run"
    command = [sys.executable, str(Path(__file__).resolve()), "--side", "trl", "--settings", json.dumps(settings),
               "--train", str(train), "--trl-out", str(out)]
    if not gradient_checkpointing:
        command.append("--trl-no-gradient-checkpointing")
    process = run_child(command, work / f"{name}.log")
    inner = json.loads((out / "bench.json").read_text())
    return {**process, **inner, "adapter": str(out / "adapter")}


def trl_side(args: argparse.Namespace) -> None:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from tunesmith.models.resolve import resolve_model_dir

    settings = json.loads(args.settings)
    out = Path(args.trl_out)
    base_dir = resolve_model_dir(settings["base_model"])
    config = DPOConfig(
        output_dir=str(out),
        use_cpu=True,
        bf16=settings["bf16"],
        num_train_epochs=settings["epochs"],
        per_device_train_batch_size=settings["micro_batch_size"],
        gradient_accumulation_steps=settings["batch_size"] // settings["micro_batch_size"],
        learning_rate=settings["lr"],
        lr_scheduler_type=settings["scheduler"],
        warmup_steps=settings["warmup_steps"],
        weight_decay=settings["weight_decay"],
        max_grad_norm=settings["max_grad_norm"],
        seed=settings["seed"],
        train_sampling_strategy="sequential",  # the rows come in tunesmith's seeded order (trl_rows)
        max_length=settings["max_length"],
        beta=settings["beta"],
        loss_type=[settings["loss"]],
        gradient_checkpointing=not args.trl_no_gradient_checkpointing,
        save_strategy="no",
        logging_steps=1,  # every step's loss in log_history (logging costs no forward pass)
        report_to=[],
    )
    peft_config = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                             target_modules=LORA["target_modules"], task_type="CAUSAL_LM")
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)  # fp32 weights, as tunesmith loads them
    trainer = DPOTrainer(model=model, args=config, train_dataset=Dataset.from_list(trl_rows(Path(args.train), settings)),
                         processing_class=AutoTokenizer.from_pretrained(base_dir), peft_config=peft_config)

    counter = {"pairs": 0, "real_tokens": 0, "padded_tokens": 0, "counting": False, "drawn": []}
    collate = trainer.data_collator

    def counting_collator(examples):
        batch = collate(examples)  # input_ids (2P, T): the P chosen sequences, then the P rejected ones
        if counter["counting"]:
            counter["pairs"] += batch["input_ids"].shape[0] // 2
            counter["real_tokens"] += int(batch["attention_mask"].sum())
            counter["padded_tokens"] += int(batch["attention_mask"].numel())
            counter["drawn"] += [tuple(e["prompt_ids"] + e["chosen_ids"]) for e in examples]
        return batch

    class LoopClock(TrainerCallback):
        def on_train_begin(self, *_, **__):
            counter["counting"], counter["begin"] = True, time.perf_counter()

        def on_train_end(self, *_, **__):
            counter["counting"], counter["end"] = False, time.perf_counter()

    trainer.data_collator = counting_collator
    trainer.add_callback(LoopClock())
    result = trainer.train()
    trainer.save_model(str(out / "adapter"))
    train_s = counter["end"] - counter["begin"]
    prepared = [tuple(row["prompt_ids"] + row["chosen_ids"]) for row in trainer.train_dataset]
    if counter["drawn"] != prepared:  # tunesmith's batches, in its order, and nothing else
        raise SystemExit("TRL did not draw the pairs in the order given: the two sides would train different batches")
    step_losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    record = {
        "pairs_per_s": round(counter["pairs"] / train_s, 3),
        "tokens_per_s": round(counter["real_tokens"] / train_s, 1),
        "train_s": round(train_s, 2),
        "pairs_trained": counter["pairs"],
        "real_tokens": counter["real_tokens"],
        "padding_fraction": round(1 - counter["real_tokens"] / max(counter["padded_tokens"], 1), 3),
        "steps": result.global_step,
        "final_train_loss": step_losses[-1],  # the last step's loss, as tunesmith's
        "mean_train_loss": round(result.training_loss, 4),  # over every step
        "batches_in_tunesmith_order": True,  # checked above
        "gradient_checkpointing": config.gradient_checkpointing,
        "padding_free": config.padding_free,
        "precompute_ref_log_probs": config.precompute_ref_log_probs,
        "optim": str(config.optim),
        "reference": "adapters disabled (TRL's PEFT default), a second forward pass per batch",
        "torch_threads": torch.get_num_threads(),
    }
    (out / "bench.json").write_text(json.dumps(record, indent=2))


# --- one held-out score for every adapter ---------------------------------------------------------------------------

def heldout_pairs(valid: Path, train: Path, trained_rows: int) -> dict[str, list]:
    """{"valid": every pair of `valid`, "train_unseen": the rows of `train` after the first `trained_rows` whose
    answers (preferred or not) none of those rows has: pairs neither side trained on, whatever their file}."""
    from tunesmith.evaluate.preference import load_pairs

    rows = load_pairs(train, None)
    seen = {answer for pair in rows[:trained_rows] for answer in (pair.chosen, pair.rejected)}
    unseen = [pair for pair in rows[trained_rows:] if pair.chosen not in seen and pair.rejected not in seen]
    return {"valid": load_pairs(valid, None), "train_unseen": unseen}


def bootstrap_interval(correct: dict[str, list[bool]], terms: list[str], resamples: int = 2000) -> dict[str, list[float]]:
    """95% percentile intervals of each side's accuracy, resampling terms (pairs sharing a preferred answer are
    paraphrases of one question, not independent draws) with a fixed seed."""
    clusters: dict[str, list[int]] = {}
    for i, term in enumerate(terms):
        clusters.setdefault(term, []).append(i)
    groups, rng = list(clusters.values()), random.Random(0)
    draws: dict[str, list[float]] = {name: [] for name in correct}
    for _ in range(resamples):
        picked = [i for _ in groups for i in rng.choice(groups)]
        for name, values in correct.items():
            draws[name].append(sum(values[i] for i in picked) / len(picked))
    return {name: [round(sorted(d)[int(0.025 * resamples)], 4), round(sorted(d)[int(0.975 * resamples) - 1], 4)]
            for name, d in draws.items()}


def score_adapters(base: str, adapters: dict[str, str], sets: dict[str, list], beta: float, max_length: int) -> dict:
    """Per side: reward accuracy and margin over all held-out pairs and per set, the base model as reference,
    one scorer (tunesmith.evaluate.preference, fp32) for every adapter."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tunesmith.evaluate.preference import pair_logps, preference_scores
    from tunesmith.models.load import load_tokenizer
    from tunesmith.models.resolve import resolve_model_dir

    tokenizer = load_tokenizer(base)
    pairs = [pair for name in sets for pair in sets[name]]
    set_of = [name for name in sets for _ in sets[name]]
    model = AutoModelForCausalLM.from_pretrained(resolve_model_dir(base), dtype=torch.float32).eval()
    with torch.no_grad():
        reference = pair_logps(model, tokenizer, pairs, Path("held-out"), max_length, batch_size=16)
    scores, correct = {}, {}
    for name, adapter in adapters.items():
        adapted = PeftModel.from_pretrained(model, adapter).eval()
        with torch.no_grad():
            policy = pair_logps(adapted, tokenizer, pairs, Path("held-out"), max_length, batch_size=16)
        model = adapted.unload()  # the base weights again, for the next adapter
        metrics, rewards = preference_scores(policy, reference, beta)
        correct[name] = (rewards.chosen > rewards.rejected).tolist()
        margins = (rewards.chosen - rewards.rejected).tolist()
        scores[name] = {"reward_accuracy": round(metrics["reward_accuracy"], 4), "margin": round(metrics["margin"], 4)}
        for part in sets:
            picked = [i for i, s in enumerate(set_of) if s == part]
            scores[name][f"reward_accuracy_{part}"] = round(sum(correct[name][i] for i in picked) / len(picked), 4)
            scores[name][f"margin_{part}"] = round(sum(margins[i] for i in picked) / len(picked), 4)
    terms = [pair.chosen for pair in pairs]
    intervals = bootstrap_interval(correct, terms)
    for name in adapters:
        scores[name]["reward_accuracy_ci95"] = intervals[name]
    paired = {f"tunesmith - {name}": [a - b for a, b in zip(correct["tunesmith"], correct[name])]
              for name in adapters if name != "tunesmith"}
    deltas = bootstrap_interval(paired, terms)
    return {"sides": scores, "pairs": {part: len(sets[part]) for part in sets} | {"all": len(pairs)},
            "terms": len(set(terms)), "delta_ci95": deltas,
            "disagreements": {key: {"only_tunesmith_right": v.count(1), "only_other_right": v.count(-1)}
                              for key, v in paired.items()}}


# --- the benchmark ---------------------------------------------------------------------------------------------------

def benchmark(args: argparse.Namespace) -> dict:
    settings = bench_settings(args)
    machine = machine_state()
    work = Path(tempfile.mkdtemp(prefix="tunesmith-dpo-bench-")) if args.workdir is None else args.workdir
    work.mkdir(parents=True, exist_ok=True)
    train = write_subset(args.train, args.pairs, work / "train.jsonl")
    from tunesmith.models.resolve import resolve_model_dir

    for weights in Path(resolve_model_dir(args.base)).iterdir():  # page cache warm for every side, not just the later ones
        weights.read_bytes()

    results = {"tunesmith": run_tunesmith(settings, train, work)}
    machine["load_avg_after_tunesmith"] = [round(x, 2) for x in os.getloadavg()]
    results["trl"] = run_trl(settings, train, work, "trl", gradient_checkpointing=True)
    machine["load_avg_after_trl"] = [round(x, 2) for x in os.getloadavg()]
    results["trl_no_gradient_checkpointing"] = run_trl(settings, train, work, "trl-nogc", gradient_checkpointing=False)
    machine["load_avg_after_trl_no_gc"] = [round(x, 2) for x in os.getloadavg()]
    if args.simpo_beta is not None:  # tunesmith's reference-free SimPO on the same pairs: what the reference costs
        simpo = settings | {"loss": "simpo", "beta": args.simpo_beta, "simpo_gamma": args.simpo_gamma}
        results["tunesmith_simpo"] = run_tunesmith(simpo, train, work, "tunesmith-simpo")
        results["tunesmith_simpo"].update(loss="simpo", beta=args.simpo_beta, simpo_gamma=args.simpo_gamma)
        machine["load_avg_after_simpo"] = [round(x, 2) for x in os.getloadavg()]
    sets = heldout_pairs(args.valid, args.train, args.pairs)
    scored = score_adapters(args.base, {name: r["adapter"] for name, r in results.items()}, sets, args.beta, args.max_length)
    for name, result in results.items():
        result.update(scored["sides"][name])
    return {
        **results,
        "heldout": {key: scored[key] for key in ("pairs", "terms", "delta_ci95", "disagreements")},
        "ratios_vs_trl_defaults": compare(results["tunesmith"], results["trl"]),
        "ratios_vs_trl_fastest": compare(results["tunesmith"], results["trl_no_gradient_checkpointing"]),
        **({"simpo_vs_dpo": compare(results["tunesmith_simpo"], results["tunesmith"])} if "tunesmith_simpo" in results else {}),
        "target": "pairs/s >= 1.5x TRL's fastest at equal or better held-out reward accuracy (all held-out pairs)",
        "target_met": target_met(results["tunesmith"], results["trl_no_gradient_checkpointing"]),
        "config": settings,
        "machine": machine,
        "notes": notes(machine, work),
    }


def compare(ours: dict, theirs: dict) -> dict:
    return {
        "pairs_per_s": ratio(ours["pairs_per_s"], theirs["pairs_per_s"]),  # > 1: tunesmith trains faster
        "wall_time": ratio(theirs["wall_s"], ours["wall_s"]),  # > 1: tunesmith finishes sooner
        "peak_rss": ratio(ours["peak_rss_mb"], theirs["peak_rss_mb"]),  # < 1: tunesmith uses less
        "reward_accuracy_delta": round(ours["reward_accuracy"] - theirs["reward_accuracy"], 4),  # >= 0: equal or better
        "reward_accuracy_delta_valid": round(ours["reward_accuracy_valid"] - theirs["reward_accuracy_valid"], 4),
    }


def target_met(ours: dict, fastest: dict) -> bool:
    return ours["pairs_per_s"] >= 1.5 * fastest["pairs_per_s"] and ours["reward_accuracy"] >= fastest["reward_accuracy"]


def notes(machine: dict, work: Path) -> list[str]:
    lines = [
        "Same batches in the same order (the first --pairs rows of --train in tunesmith's seeded order; TRL is given them "
        "in that order and draws them sequentially, checked batch by batch), the same initial LoRA weights (same seed), "
        "LoRA r 16 / alpha 32 / dropout 0 on all linear layers, sigmoid DPO loss, beta, max length, batch without "
        "accumulation, AdamW (wd 0), clip 1.0, cosine without warm-up, fp32 weights under bf16 CPU autocast, 1 epoch. "
        "In fp32 these give the same adapter on both sides (tests/train/test_dpo_trl_run.py).",
        "Reference on both sides: the base weights with the LoRA adapters disabled. tunesmith packs each micro-batch's "
        "chosen and rejected sequences into rows with a block-diagonal mask; TRL pads them (padding_free is disabled "
        "in TRL 1.16). Under bf16 the two layouts round differently, so the runs drift apart a little step by step.",
        "'trl' is DPOConfig's defaults for everything not shared (gradient_checkpointing=True, optim adamw_torch_fused) "
        "but the sampler (sequential over tunesmith's order instead of its own seeded shuffle); "
        "'trl_no_gradient_checkpointing' turns gradient checkpointing off, which is its fastest CPU setting here.",
        "Each side renders the pairs with the model's chat template itself (real_tokens: what each fed the model): "
        "the same tokens, but TRL also trains the newline the template writes after each answer's <|im_end|>, which "
        "tunesmith does not (the model stops at <|im_end|> and never generates it). Scoring (reward_accuracy, margin) "
        "uses tunesmith's rendering for every adapter.",
        "final_train_loss is the last step's loss on both sides, mean_train_loss the mean over every step (what TRL's "
        "train() returns as training_loss).",
        f"Work directory (logs, runs): {work}",
    ]
    worst = max(machine["load_avg_before"][0], *(machine.get(key, [0])[0] for key in
                ("load_avg_after_tunesmith", "load_avg_after_trl", "load_avg_after_trl_no_gc")))
    if worst > 1.5:
        lines.append(f"Machine was not quiet (1-min load up to {worst}); on 2 cores, contention slows torch by 10-30x.")
    return lines


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="smollm2-135m-instruct", help="base model: embedded name or local HF dir")
    parser.add_argument("--pairs", type=int, default=128, help="first N pairs of --train (128 = 8 steps of 16)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3, help="examples/voice/voice.yaml's")
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--simpo-beta", type=float, default=None, help="also train tunesmith's SimPO (dpo.loss simpo) "
                        "with this beta (the SimPO paper's 2.0-2.5); its reward accuracy is scored as every side's")
    parser.add_argument("--simpo-gamma", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--train", type=Path, default=REPO / "examples/voice/train.jsonl")
    parser.add_argument("--valid", type=Path, default=REPO / "examples/voice/valid.jsonl", help="held-out pairs scored")
    parser.add_argument("--workdir", type=Path, default=None, help="keep runs and logs here (default: a new temp dir)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    # internal: the TRL child process
    parser.add_argument("--side", choices=["trl"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--settings", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--trl-out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--trl-no-gradient-checkpointing", action="store_true", help=argparse.SUPPRESS)
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
