"""Run one suite task on one model: metrics (flat numbers gates can name), details, and per-item rows.

Every kind takes the same `Decoding`, so candidate and baseline see identical prompts and settings.
Two kinds compare with a reference run (the baseline's): `general` the model's answers, where without a
reference (the baseline itself) agreement is 1 by definition, and `preference` the log-probabilities
that implicit rewards are measured against, where without one every reward is 0.
"""
from __future__ import annotations

import json
import math
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from tunesmith.data.formats import load_file
from tunesmith.data.render import records_to_examples
from tunesmith.evaluate.classification import classification_metrics, read_label
from tunesmith.evaluate.generation import evaluate_qa
from tunesmith.evaluate.likelihood import choice_scores, example_loss_sums, mean_loss, pad_id
from tunesmith.evaluate.matching import normalize_answer
from tunesmith.evaluate.multilabel import (
    category_scores, classifier_label_sets, multilabel_metrics, read_labels, threshold_curves,
)
from tunesmith.evaluate.preference import load_pairs, pair_logps, preference_rows, preference_scores, reference_logps
from tunesmith.evaluate.suite import (
    ChoiceTask, ClassifyTask, Decoding, GeneralTask, LossTask, PreferenceTask, QATask, SpeedTask, StyleTask,
    SuiteError, Task, ToolCallTask,
)
from tunesmith.evaluate.tool_calls import check_items, tool_call_metrics, tool_call_rows
from tunesmith.models.classifier import Classifier
from tunesmith.models.generate import generate_answers, generate_token_ids


@dataclass
class TaskRun:
    metrics: dict[str, float]  # the numbers gates can name
    details: dict = field(default_factory=dict)  # per-class scores, confusion matrix, by-relation accuracy, ...
    rows: list[dict] = field(default_factory=list)  # per item: id, prompt, reference, prediction, correct
    seconds: float = 0.0


def read_jsonl(path: Path, limit: int | None = None) -> list[dict]:
    rows = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise SuiteError(f"{path}:{number}: not valid JSON: {exc.msg}") from None
    return rows[:limit] if limit else rows


def require_keys(path: Path, rows: list[dict], keys: tuple[str, ...]) -> None:
    for number, row in enumerate(rows, start=1):
        missing = [key for key in keys if key not in row]
        if missing:
            raise SuiteError(f"{path}: item {number} lacks {', '.join(missing)} (needs {', '.join(keys)})")


def chat_prompt(decoding: Decoding, content: str) -> list[dict]:
    prefix = [{"role": "system", "content": decoding.system}] if decoding.system is not None else []
    return prefix + [{"role": "user", "content": content}]


def run_task(task: Task, model, tokenizer: PreTrainedTokenizerBase, decoding: Decoding,
             reference: TaskRun | None = None, progress: bool = False) -> TaskRun:
    start = time.perf_counter()
    if isinstance(model, Classifier) and task.kind != "classification":
        raise SuiteError(f"task {task.name}: a {task.kind} task needs a generative model, and this model is a "
                         "classifier — score classifiers with classification tasks only")
    if task.kind in COMPARED:
        result = COMPARED[task.kind](task, model, tokenizer, decoding, reference, progress)
    else:
        result = RUNNERS[task.kind](task, model, tokenizer, decoding, progress)
    result.seconds = time.perf_counter() - start
    return result


def run_qa(task: QATask, model, tokenizer, decoding: Decoding, progress: bool) -> TaskRun:
    items = read_jsonl(task.data, task.limit)
    require_keys(task.data, items, ("question", "answer"))
    result = evaluate_qa(model, tokenizer, items, method=task.method, max_new_tokens=decoding.max_new_tokens,
                         batch_size=decoding.rows, system=decoding.system, progress=progress)
    rows = [{"id": row.get("id", i), "prompt": row["question"], "reference": row["answer"],
             "prediction": row["prediction"], "correct": row["correct"], "group": row.get("relation")}
            for i, row in enumerate(result.rows)]
    return TaskRun({"accuracy": result.accuracy}, {"by_relation": result.by_relation, "n": len(rows),
                                                   "items_per_second": result.items_per_second}, rows)


def run_choice(task: ChoiceTask, model, tokenizer, decoding: Decoding, progress: bool) -> TaskRun:
    items = read_jsonl(task.data, task.limit)
    require_keys(task.data, items, ("question", "choices", "answer"))
    answers = [item["answer"] if isinstance(item["answer"], int) else item["choices"].index(item["answer"])
               for item in items]
    scores = choice_scores(model, tokenizer, [chat_prompt(decoding, item["question"]) for item in items],
                           [item["choices"] for item in items], task.max_length, task.normalize, decoding.batch_size)
    rows = []
    for i, (item, answer, item_scores) in enumerate(zip(items, answers, scores)):
        chosen = max(range(len(item_scores)), key=item_scores.__getitem__)
        rows.append({"id": item.get("id", i), "prompt": item["question"], "reference": item["choices"][answer],
                     "prediction": item["choices"][chosen], "correct": chosen == answer,
                     "scores": [round(s, 4) for s in item_scores]})
    accuracy = sum(row["correct"] for row in rows) / len(rows) if rows else 0.0
    return TaskRun({"accuracy": accuracy}, {"n": len(rows)}, rows)


def run_classification(task: ClassifyTask, model, tokenizer, decoding: Decoding, progress: bool) -> TaskRun:
    items = read_jsonl(task.data, task.limit)
    if items and "labels" in items[0]:
        return run_multilabel(task, items, model, tokenizer, decoding, progress)
    require_keys(task.data, items, ("text", "label"))
    unknown = sorted({item["label"] for item in items} - set(task.labels))
    if unknown:
        raise SuiteError(f"{task.data}: labels {unknown} are not among the task's labels {task.labels}")
    prompts = [task.template.replace("{text}", item["text"]) for item in items]
    if isinstance(model, Classifier):
        scores = model.scores([item["text"] for item in items], decoding.batch_size)  # (N, L)
        answers = [model.labels[i] for i in scores.argmax(dim=-1).tolist()]
    else:
        answers = generate_answers(model, tokenizer, [chat_prompt(decoding, p) for p in prompts],
                                   decoding.max_new_tokens, decoding.rows, progress)
    predicted = [read_label(answer, task.labels) for answer in answers]
    scores = classification_metrics([item["label"] for item in items], predicted, task.labels)
    rows = [{"id": item.get("id", i), "prompt": prompt, "reference": item["label"], "prediction": answer,
             "label": label, "correct": label == item["label"]}
            for i, (item, prompt, answer, label) in enumerate(zip(items, prompts, answers, predicted))]
    metrics = {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"]}
    return TaskRun(metrics, {"per_class": scores["per_class"], "confusion": scores["confusion"], "n": len(rows)}, rows)


def run_multilabel(task: ClassifyTask, items: list[dict], model, tokenizer, decoding: Decoding,
                   progress: bool) -> TaskRun:
    """Multi-label items ({text, labels}): a classifier's flags at its calibrated thresholds, or the labels a chat
    model names in its answer; per-category and harmful-vs-harmless scores (multilabel.py), curves for a classifier."""
    require_keys(task.data, items, ("text", "labels"))
    unknown = sorted({label for item in items for label in item["labels"]} - set(task.labels))
    if unknown:
        raise SuiteError(f"{task.data}: labels {unknown} are not among the task's labels {task.labels}")
    truths = [set(item["labels"]) for item in items]
    marked = marked_items(task, len(items))
    texts = [item["text"] for item in items]
    curves = None
    if isinstance(model, Classifier):
        started = time.perf_counter()
        scores = model.scores(texts, decoding.batch_size)  # (N, L) in the classifier's label order
        items_per_second = len(texts) / (time.perf_counter() - started)
        predictions = classifier_label_sets(model, scores, task.labels)
        answers = [", ".join(sorted(p)) or "harmless" for p in predictions]
        mapped = category_scores(model, scores, task.labels)  # (N, task labels)
        truth = torch.tensor([[float(label in t) for label in task.labels] for t in truths])
        curves = threshold_curves(mapped, truth, task.labels, marked)
    else:
        started = time.perf_counter()
        prompts = [chat_prompt(decoding, task.template.replace("{text}", text)) for text in texts]
        answers = generate_answers(model, tokenizer, prompts, decoding.max_new_tokens, decoding.rows, progress)
        items_per_second = len(texts) / (time.perf_counter() - started)
        predictions = [read_labels(answer, task.labels) for answer in answers]
    metrics, details = multilabel_metrics(truths, predictions, task.labels, marked)
    rows = [{"id": item.get("id", i), "prompt": item["text"], "reference": ", ".join(sorted(t)) or "harmless",
             "prediction": answer, "correct": p == t, "marked": m}
            for i, (item, t, p, answer, m) in enumerate(zip(items, truths, predictions, answers, marked))]
    details.update({"n": len(rows), "items_per_second": items_per_second})
    if curves is not None:
        details["curves"] = curves
    return TaskRun(metrics, details, rows)


def marked_items(task: ClassifyTask, count: int) -> list[bool]:
    """Per item (in data order, after `limit`), whether a marked_file record matching marked_where names its line."""
    if task.marked_file is None:
        return [False] * count
    lines = set()
    for number, record in enumerate(read_jsonl(task.marked_file), start=1):
        if "line" not in record:
            raise SuiteError(f"{task.marked_file}:{number}: line: missing — each record names the data line it marks")
        if all(str(record.get(key)) == value for key, value in task.marked_where.items()):
            lines.add(int(record["line"]))
    data_lines = [number for number, text in enumerate(task.data.read_text().splitlines(), start=1) if text.strip()]
    return [line in lines for line in data_lines[:count]]


def file_loss(path: Path, tokenizer, model, max_length: int, batch_size: int, limit: int | None) -> dict:
    loaded = load_file(path)
    if loaded.errors:
        raise SuiteError(f"{path}: {len(loaded.errors)} invalid rows, first: {loaded.errors[0]}")
    loaded.records = loaded.records[:limit] if limit else loaded.records
    examples = records_to_examples(loaded, tokenizer, max_length)
    return mean_loss(example_loss_sums(model, examples, pad_id(tokenizer), batch_size))


def run_loss(task: LossTask, model, tokenizer, decoding: Decoding, progress: bool) -> TaskRun:
    scores = file_loss(task.data, tokenizer, model, task.max_length, decoding.batch_size, task.limit)
    return TaskRun({"loss": scores["loss"], "perplexity": scores["perplexity"]}, {"tokens": scores["tokens"]})


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style overlap of normalised words; 1.0 when both are empty."""
    ours, theirs = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not ours or not theirs:
        return float(ours == theirs)
    common = sum((Counter(ours) & Counter(theirs)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(ours), common / len(theirs)
    return 2 * precision * recall / (precision + recall)


def run_general(task: GeneralTask, model, tokenizer, decoding: Decoding, reference: TaskRun | None,
                progress: bool) -> TaskRun:
    scores = file_loss(task.text, tokenizer, model, task.max_length, decoding.batch_size, None)
    items = read_jsonl(task.prompts, task.limit)
    require_keys(task.prompts, items, ("prompt",))
    answers = generate_answers(model, tokenizer, [chat_prompt(decoding, item["prompt"]) for item in items],
                               decoding.max_new_tokens, decoding.rows, progress)
    baseline = [row["prediction"] for row in reference.rows] if reference is not None else answers
    rows = [{"id": item.get("id", i), "prompt": item["prompt"], "reference": base, "prediction": answer,
             "agreement": token_f1(answer, base), "correct": answer == base}
            for i, (item, answer, base) in enumerate(zip(items, answers, baseline))]
    metrics = {
        "loss": scores["loss"], "perplexity": scores["perplexity"],
        "agreement": statistics.fmean(row["agreement"] for row in rows) if rows else 1.0,
        "exact_agreement": statistics.fmean(row["correct"] for row in rows) if rows else 1.0,
    }
    return TaskRun(metrics, {"text_tokens": scores["tokens"], "prompts": len(rows)}, rows)


def run_speed(task: SpeedTask, model, tokenizer, decoding: Decoding, progress: bool) -> TaskRun:
    items = read_jsonl(task.prompts)
    prompts = [chat_prompt(decoding, item.get("prompt", item.get("question", ""))) for item in items]
    prompts = (prompts * task.requests)[: task.requests]
    generate_token_ids(model, tokenizer, prompts[:1], task.max_new_tokens, 1, False)  # warm-up, untimed
    latencies, tokens = [], 0
    for prompt in prompts:
        start = time.perf_counter()
        tokens += len(generate_token_ids(model, tokenizer, [prompt], task.max_new_tokens, 1, False)[0])
        latencies.append(time.perf_counter() - start)
    start = time.perf_counter()
    batch_tokens = sum(map(len, generate_token_ids(model, tokenizer, prompts, task.max_new_tokens,
                                                   decoding.rows, False)))
    batch_seconds = time.perf_counter() - start
    ordered = sorted(latencies)
    metrics = {
        "latency_ms_p50": 1000 * statistics.median(ordered),
        "latency_ms_p95": 1000 * ordered[math.ceil(0.95 * len(ordered)) - 1],  # nearest rank
        "tokens_per_s": tokens / sum(latencies),
        "batch_tokens_per_s": batch_tokens / batch_seconds,
    }
    return TaskRun(metrics, {"requests": len(prompts), "generated_tokens": tokens, "rows": decoding.rows})


def run_preference(task: PreferenceTask, model, tokenizer, decoding: Decoding, reference: TaskRun | None,
                   progress: bool) -> TaskRun:
    pairs = load_pairs(task.data, task.limit)
    policy = pair_logps(model, tokenizer, pairs, task.data, task.max_length, decoding.batch_size)
    base = reference_logps(reference.rows, len(pairs)) if reference is not None else policy
    metrics, rewards = preference_scores(policy, base, task.beta)
    rows = preference_rows(pairs, policy, rewards)
    return TaskRun(metrics, {"n": len(rows), "beta": task.beta,
                             "reference": "baseline" if reference is not None else "itself"}, rows)


def run_style(task: StyleTask, model, tokenizer, decoding: Decoding, progress: bool) -> TaskRun:
    # scikit-learn (with scipy and pandas) takes ~0.7 s to import: only suites with a style task pay it, not
    # every `tunesmith train` that evaluates after training
    from tunesmith.evaluate.style import target_probabilities, train_judge

    texts = read_jsonl(task.texts)
    require_keys(task.texts, texts, ("text", "label"))
    is_target = [item["label"] == task.label for item in texts]
    if all(is_target) or not any(is_target):
        raise SuiteError(f"{task.texts}: the judge needs texts labelled {task.label!r} and texts labelled otherwise "
                         f"(labels found: {sorted({item['label'] for item in texts})})")
    judge = train_judge([item["text"] for item in texts], is_target)
    items = read_jsonl(task.prompts, task.limit)
    require_keys(task.prompts, items, ("prompt",))
    answers = generate_answers(model, tokenizer, [chat_prompt(decoding, item["prompt"]) for item in items],
                               decoding.max_new_tokens, decoding.rows, progress)
    probabilities = target_probabilities(judge, answers)
    rows = [{"id": item.get("id", i), "prompt": item["prompt"], "reference": item.get("reference"),
             "prediction": answer, "probability": round(p, 4), "correct": p > 0.5}
            for i, (item, answer, p) in enumerate(zip(items, answers, probabilities))]
    share = statistics.fmean(row["correct"] for row in rows) if rows else 0.0
    return TaskRun({"share": share, "judge_accuracy": judge.accuracy},
                   {"n": len(rows), "label": task.label, "judge_texts": len(texts)}, rows)


def run_tool_calls(task: ToolCallTask, model, tokenizer, decoding: Decoding, progress: bool) -> TaskRun:
    items = read_jsonl(task.data, task.limit)
    check_items(task.data, items)
    rows = tool_call_rows(items, model, tokenizer, decoding.max_new_tokens, decoding.rows, decoding.system, progress)
    return TaskRun(tool_call_metrics(rows), {"n": len(rows), "calls_due": sum(row["due"] for row in rows)}, rows)


RUNNERS = {"qa": run_qa, "multiple_choice": run_choice, "classification": run_classification,
           "loss": run_loss, "speed": run_speed, "style": run_style, "tool_calls": run_tool_calls}
COMPARED = {"general": run_general, "preference": run_preference}  # these take the reference run too
