"""An exported run in llama.cpp against the merged model in transformers: log-prob drift, greedy agreement,
held-out QA accuracy — per export type.

Run as: flock /tmp/heavy.lock .venv/bin/python benchmarks/gguf_parity.py --run runs/elements-demo \
          [--types f16,q8_0] [--suite examples/suites/elements.yaml] [--limit N] [--out runs/gguf-parity]

For each type the run is exported (`tunesmith export --format gguf`) and
  - drift: per-token log-probabilities of (prompt + the merged model's greedy answer) for the first
    --drift-items questions, llama.cpp vs the merged model: max and mean |Δ| over the answer tokens, and the
    same read back by transformers' own GGUF loader;
  - agreement: share of questions whose llama.cpp greedy answer (create_chat_completion, the GGUF's own chat
    template, temperature 0) is the merged model's greedy answer, character for character;
  - accuracy: the suite's first qa task scored on llama.cpp's answers with the suite's matcher, beside the
    merged model's accuracy from tunesmith's evaluator (issue 13: within 2 points).
Prints JSON (also OUT/results.json). Without llama-cpp-python (`bash scripts/setup.sh --tests`) only the
transformers-loader drift is measured, and the JSON says why.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tunesmith.evaluate.generation import evaluate_qa, is_correct
from tunesmith.evaluate.suite import load_suite
from tunesmith.evaluate.tasks import read_jsonl
from tunesmith.export.run_export import export
from tunesmith.models.chat import render_prompts, stop_token_ids


def merged_token_log_probs(model, ids: list[int]) -> np.ndarray:
    """(T-1,) log-probability of each token given the ones before it."""
    with torch.no_grad():
        log_probs = model(torch.tensor([ids])).logits.float().log_softmax(-1)[0, :-1]
    return log_probs.gather(-1, torch.tensor(ids[1:])[:, None])[:, 0].double().numpy()


def llama_cpp_token_log_probs(llm, ids: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(ids)
    logits = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
    log_probs = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    return log_probs[np.arange(len(ids) - 1), ids[1:]]


def drift(reference: list[np.ndarray], measured: list[np.ndarray], answer_starts: list[int]) -> dict:
    """|Δ| over the answer tokens (the positions after each prompt) of every sequence."""
    deltas = np.concatenate([np.abs(m - r)[start - 1:] for r, m, start in zip(reference, measured, answer_starts)])
    return {"max_nats": round(float(deltas.max()), 5), "mean_nats": round(float(deltas.mean()), 6),
            "tokens": int(deltas.size)}


def sequences(model, tokenizer, questions: list[str], answers: list[str]) -> tuple[list[list[int]], list[int]]:
    """Prompt ids + the merged model's answer ids + the end-of-turn token, and where each answer starts."""
    prompts = render_prompts(tokenizer, [[{"role": "user", "content": q}] for q in questions])
    end = stop_token_ids(tokenizer)[0]
    full = [p + tokenizer(a, add_special_tokens=False).input_ids + [end] for p, a in zip(prompts, answers)]
    return full, [len(p) for p in prompts]


def llama_cpp_answers(llm, questions: list[str], max_new_tokens: int) -> tuple[list[str], int]:
    answers, stopped = [], 0
    for question in questions:
        reply = llm.create_chat_completion([{"role": "user", "content": question}], max_tokens=max_new_tokens,
                                           temperature=0.0)
        answers.append(reply["choices"][0]["message"]["content"])
        stopped += reply["choices"][0]["finish_reason"] == "stop"
    return answers, stopped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--types", default="f16,q8_0")
    parser.add_argument("--suite", type=Path, default=Path("examples/suites/elements.yaml"))
    parser.add_argument("--limit", type=int, default=None, help="First N questions (default: all).")
    parser.add_argument("--drift-items", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/gguf-parity"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    suite = load_suite(args.suite)
    task = next(t for t in suite.tasks if t.kind == "qa")
    items = read_jsonl(task.data, args.limit)
    max_new = suite.decoding.max_new_tokens
    model = AutoModelForCausalLM.from_pretrained(args.run / "model", dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.run / "model")
    merged = evaluate_qa(model, tokenizer, items, method=task.method, max_new_tokens=max_new,
                         batch_size=suite.decoding.rows, progress=False)
    merged_answers = [row["prediction"] for row in merged.rows]
    drift_items = items[: args.drift_items]
    full, starts = sequences(model, tokenizer, [i["question"] for i in drift_items], merged_answers[: len(drift_items)])
    reference = [merged_token_log_probs(model, ids) for ids in full]
    results = {"run": str(args.run), "suite": str(args.suite), "questions": len(items),
               "merged": {"accuracy": round(merged.accuracy, 4), "seconds": round(merged.seconds, 1)}, "exports": {}}
    try:
        import llama_cpp
    except ImportError:
        llama_cpp, results["llama_cpp"] = None, "not installed (bash scripts/setup.sh --tests builds it)"
    for type_name in args.types.split(","):
        path = export(str(args.run), "gguf", args.out / f"{args.run.name}-{type_name}.gguf", type_name).files[0]
        entry = {"file_mib": round(path.stat().st_size / 2**20, 1)}
        loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
        entry["transformers_gguf_drift"] = drift(reference, [merged_token_log_probs(loaded, ids) for ids in full], starts)
        del loaded
        if llama_cpp is not None:
            llm = llama_cpp.Llama(model_path=str(path), n_ctx=512, n_threads=args.threads, logits_all=True,
                                  seed=0, verbose=False)
            entry["llama_cpp_drift"] = drift(reference, [llama_cpp_token_log_probs(llm, ids) for ids in full], starts)
            clock = time.perf_counter()
            answers, stopped = llama_cpp_answers(llm, [i["question"] for i in items], max_new)
            correct = [is_correct(a, item, task.method) for a, item in zip(answers, items)]
            entry |= {"greedy_agreement": round(sum(a == m for a, m in zip(answers, merged_answers)) / len(items), 4),
                      "llama_cpp_accuracy": round(sum(correct) / len(items), 4),
                      "accuracy_points_vs_merged": round(100 * (sum(correct) / len(items) - merged.accuracy), 2),
                      "stopped_at_end_of_turn": round(stopped / len(items), 4),
                      "llama_cpp_seconds": round(time.perf_counter() - clock, 1)}
        results["exports"][type_name] = entry
    results["wall_seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
