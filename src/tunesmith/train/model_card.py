"""The model card: a Hugging Face README.md for an exported model, generated from its run directory alone.

Sources, all written by the run: config.yaml (the resolved config), run.json (data files and their
SHA-256, steps, tokens, time, machine), metrics.jsonl (the loss curve) and, once the run has been
evaluated, the newest report.json that run.json's `evaluations` names (else eval/report.json): baseline
vs candidate per task, gates; for an update also its eval/update.json (every earlier suite kept or not). The training data is re-read for its row
counts and a PII scan only while its SHA-256 still matches run.json. Nothing is typed by a person: the
same run gives the same card, so write it after export and again after evaluation.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

import tunesmith
from tunesmith.config import TrainConfig
from tunesmith.data.formats import load_file
from tunesmith.data.hashing import file_sha256
from tunesmith.data.pii import find_pii
from tunesmith.data.prompts import is_prompt_file, load_prompt_rows
from tunesmith.train.metrics import METRICS_FILE, read_metrics

PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*)_\d+>")  # what `tunesmith data redact` writes
METHOD_NAMES = {"lora": "LoRA finetune", "full": "full finetune", "dpo": "preference finetune (DPO)",
                "classification": "classification finetune", "reinforcement": "reinforcement finetune (GRPO)"}
HYPERPARAMETERS = {"lora": ("r", "alpha", "rslora", "dropout", "target_modules"),
                   "train": ("epochs", "max_steps", "lr", "batch_size", "micro_batch_size", "warmup_ratio",
                             "scheduler", "weight_decay", "max_grad_norm", "neftune_alpha", "early_stopping_patience",
                             "seed", "distributed"),
                   "data": ("max_length", "packing"),
                   "reinforcement": ("group_size", "max_new_tokens", "temperature", "top_p", "beta", "scale_rewards",
                                     "mask_truncated_answers")}


@dataclass
class DataFacts:
    role: str  # train or valid
    path: str
    sha256: str | None
    present: bool  # the file is still there with the recorded SHA-256
    format: str | None = None
    rows: int | None = None
    valid_rows: int | None = None
    pii: dict[str, int] | None = None  # kind → findings of tunesmith.data.pii's rules
    placeholders: int | None = None  # values redacted before training


@dataclass
class RunFacts:
    run_dir: Path
    config: dict
    run: dict
    metrics: list[dict]
    report: dict | None
    data: list[DataFacts]
    update: dict | None = None  # an update's eval/update.json: every earlier version's suite kept (or not)


def write_model_card(run_dir: str | Path, model_dir: str | Path | None = None) -> Path:
    """Write MODEL_DIR/README.md (default RUN_DIR/model) and return its path."""
    run_dir = Path(run_dir)
    path = Path(model_dir or run_dir / "model") / "README.md"
    path.write_text(model_card(read_run_facts(run_dir)))
    return path


def read_run_facts(run_dir: Path) -> RunFacts:
    run = json.loads((run_dir / "run.json").read_text())
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").is_file() else {}
    report_path = latest_report(run_dir, run)
    report = json.loads(report_path.read_text()) if report_path.is_file() else None
    data = [data_facts(role, run.get(f"{role}_file"), run.get(f"{role}_sha256"))
            for role in ("train", "valid") if run.get(f"{role}_file")]
    update_path = latest_report(run_dir, run, kind="update")
    update = json.loads(update_path.read_text()) if update_path is not None and update_path.is_file() else None
    return RunFacts(run_dir, config or {}, run, read_metrics(run_dir / METRICS_FILE), report, data, update)


def latest_report(run_dir: Path, run: dict, kind: str = "suite") -> Path | None:
    """The newest evaluation of this kind recorded in run.json: `suite` (`run_record.add_evaluation`; else the
    default place eval/report.json) or `update` (`run_record.add_update_evaluation`; else None)."""
    evaluations = [e for e in run.get("evaluations") or [] if e.get("kind", "suite") == kind]
    if not evaluations:
        return run_dir / "eval" / "report.json" if kind == "suite" else None
    path = Path(evaluations[-1]["reports"]["json"]["path"])
    return path if path.is_absolute() else run_dir / path


def hardware(run: dict) -> str:
    machine = run.get("machine")
    if not machine:
        return run.get("hardware") or "not recorded in run.json"
    gpus = ", ".join(machine["gpus"]) if machine.get("gpus") else "no GPU"
    return f"{machine['cpu']} ({machine['cpu_count']} cores), {gpus}, {machine['world_size']} process(es)"


def data_facts(role: str, path: str, sha256: str | None) -> DataFacts:
    """Row counts and a PII scan of a training file, if it is still the file the run read."""
    file = Path(path)
    if not file.is_file() or sha256 is None or file_sha256(file) != sha256:
        return DataFacts(role, path, sha256, present=False)
    if is_prompt_file(file):  # reinforcement prompts (data/prompts.py): no answers to read
        prompts = load_prompt_rows(file)
        texts = ["\n".join(m["content"] for m in row.messages) for row in prompts.rows]
        shape = ("prompts", prompts.row_count, len(prompts.rows))
    else:
        loaded = load_file(file)
        texts = [record.text if record.kind == "text" else "\n".join(m["content"] for m in record.messages)
                 for record in loaded.records]
        shape = (loaded.format, loaded.rows, len(loaded.records))
    pii = Counter(finding.kind for text in texts for finding in find_pii(text))
    placeholders = sum(len(PLACEHOLDER.findall(text)) for text in texts)
    return DataFacts(role, path, sha256, True, *shape, dict(pii), placeholders)


def model_card(facts: RunFacts) -> str:
    sections = [front_matter(facts), f"# {facts.run_dir.name}", generated_note(facts), intended_use(facts),
                training_data(facts), training_procedure(facts), evaluation(facts), limitations(facts)]
    return "\n\n".join(sections) + "\n"


def front_matter(facts: RunFacts) -> str:
    meta = {"base_model": facts.run.get("base_model"), "license": base_license(facts.run.get("base_model")),
            "library_name": "transformers", "pipeline_tag": "text-generation",
            "tags": ["tunesmith", facts.run.get("method", "finetuned")],
            "datasets": [f"sha256:{d.sha256}" for d in facts.data if d.sha256]}
    if facts.report is not None:
        meta["model-index"] = [{"name": facts.run_dir.name, "results": model_index_results(facts.report)}]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---"


def base_license(base: str | None) -> str:
    """The `license:` of a local base model's own card; `other` (see the card's text) when none is found."""
    readme = Path(base) / "README.md" if base else None
    if readme is not None and readme.is_file():
        match = re.match(r"---\n(.*?)\n---", readme.read_text(), re.S)
        if match and isinstance(meta := yaml.safe_load(match.group(1)), dict) and meta.get("license"):
            return str(meta["license"])
    return "other"


def model_index_results(report: dict) -> list[dict]:
    """One result per task: the candidate's metrics, each named with the baseline's value beside it."""
    results = []
    for task in report["tasks"]:
        metrics = [{"type": metric, "value": value, "name": f"{metric} (base model: {_number(task['baseline']['metrics'].get(metric))})",
                    "verified": False} for metric, value in task["candidate"]["metrics"].items() if value is not None]
        results.append({"task": {"type": "text-generation", "name": f"{task['kind']}: {task['name']}"},
                        "dataset": {"name": task["name"], "type": f"tunesmith-suite/{report['suite']['name']}"},
                        "metrics": metrics})
    return results


def generated_note(facts: RunFacts) -> str:
    return (f"This card was generated by tunesmith {tunesmith.__version__} from the run directory "
            f"`{facts.run_dir}` (config.yaml, run.json, metrics.jsonl{', eval/report.json' if facts.report else ''}). "
            "Do not edit it by hand: write it again from the run.")


def intended_use(facts: RunFacts) -> str:
    train = next((d for d in facts.data if d.role == "train"), None)
    shape = f"{train.valid_rows} {train.format} rows of `{train.path}`" if train and train.present else \
        f"`{facts.run.get('train_file')}`"
    tasks = ", ".join(f"{t['name']} ({t['kind']})" for t in facts.report["tasks"]) if facts.report else None
    lines = ["## Intended use", "",
             f"A {METHOD_NAMES.get(facts.run.get('method'), 'finetune')} of `{facts.run.get('base_model')}` on {shape}: it is meant "
             "for prompts like those rows, answered in their style."]
    lines.append(f"It was measured on: {tasks}; use beyond those tasks is unmeasured." if tasks else
                 "It has not been evaluated yet; nothing beyond the training loss has been measured.")
    return "\n".join(lines)


def training_data(facts: RunFacts) -> str:
    lines = ["## Training data", "", "| role | file | sha256 | format | rows (valid) | PII findings | redacted values |",
             "|---|---|---|---|---:|---|---:|"]
    for d in facts.data:
        if not d.present:
            lines.append(f"| {d.role} | `{d.path}` | `{d.sha256}` | not re-read: the file is gone or changed since training | | | |")
            continue
        pii = ", ".join(f"{kind} {count}" for kind, count in sorted(d.pii.items())) or "none found"
        lines.append(f"| {d.role} | `{d.path}` | `{d.sha256}` | {d.format} | {d.rows} ({d.valid_rows}) | {pii} | {d.placeholders} |")
    lines += ["", "PII findings come from tunesmith's rule-based scan (emails, phones, cards, IBANs, national ids, IP "
              "and street addresses; no person names); redacted values count `tunesmith data redact` placeholders."]
    return "\n".join(lines)


def training_procedure(facts: RunFacts) -> str:
    run, config = facts.run, facts.config
    lines = ["## Training procedure", "",
             f"- method: {run.get('method')}, base model `{run.get('base_model')}`, "
             f"{_number(run.get('trainable_parameters'))} trainable parameters",
             f"- {run.get('steps')} optimizer steps, {_number(run.get('trained_tokens'))} trained tokens, "
             f"{_duration(run.get('seconds'))}" + (f", resumed from step {run['resumed_from']}" if run.get("resumed_from") else ""),
             f"- hardware: {hardware(run)}"]
    if run.get("started_at"):
        lines.append(f"- started {run['started_at']} by {run.get('started_by')}, finished {run.get('finished_at')}; "
                     f"tunesmith {run.get('tunesmith_version')} at revision {run.get('code_revision') or 'unknown'}; "
                     f"base weights sha256 `{run.get('base_model_sha256')}`")
    if run.get("parent"):
        lines.append(f"- continued from the run `{run['parent']['run_dir']}` (`tunesmith lineage` shows the chain)")
    lines.append("- lineage: `lineage.json` beside this card holds the record of this run and of every ancestor "
                 "(data files with SHA-256, base weights, evaluations); `tunesmith lineage MODEL_DIR` prints it")
    losses = [m for m in facts.metrics if m.get("loss") is not None]
    if run.get("method") == "reinforcement":  # its loss is a surrogate (0 in value): the reward says what it learnt
        lines.append(reinforcement_line(facts))
    elif losses:
        lines.append(f"- training loss {_number(losses[0]['loss'])} (step {losses[0].get('step')}) → "
                     f"{_number(losses[-1]['loss'])} (step {losses[-1].get('step')})"
                     + (f"; final validation loss {_number(run['final_valid_loss'])}" if run.get("final_valid_loss") is not None else ""))
    stopping = run.get("early_stopping")
    if stopping and stopping.get("best_step") is not None:
        lines.append(f"- early stopping (patience {stopping['patience']}): "
                     + (f"stopped at step {stopping['stopped_at_step']}; " if stopping.get("stopped_at_step") else "")
                     + f"these are the weights of step {stopping['best_step']}, validation loss "
                       f"{_number(stopping['best_valid_loss'])}")
    lines += ["", "| hyperparameter | value |", "|---|---|"]
    for section, names in HYPERPARAMETERS.items():
        if section == "lora" and not trains_lora(config):
            continue
        if section == "reinforcement" and run.get("method") != "reinforcement":
            continue
        values = config.get(section) or {}
        lines += [f"| {section}.{name} | {values[name]} |" for name in names if values.get(name) is not None]
    return "\n".join(lines)


def trains_lora(config: dict) -> bool:
    """Whether the run's saved config trained LoRA adapters (config.TrainConfig.uses_lora, read as the config says)."""
    return TrainConfig.model_validate(config.get("train") or {}).uses_lora


def reinforcement_line(facts: RunFacts) -> str:
    """The grader the run was trained against and its mean reward over the run (sampled answers), and on validation."""
    grader = (facts.config.get("reinforcement") or {}).get("grader") or {}
    rewards = [m for m in facts.metrics if m.get("reward") is not None]
    valid = [m for m in facts.metrics if m.get("valid_reward") is not None]
    line = f"- reinforcement against the grader `{grader.get('name')}` ({grader.get('type')})"
    if rewards:
        line += (f": mean reward of the sampled answers {_number(rewards[0]['reward'])} (step {rewards[0].get('step')})"
                 f" → {_number(rewards[-1]['reward'])} (step {rewards[-1].get('step')})")
    if valid:
        line += f"; greedy validation reward {_number(valid[-1]['valid_reward'])} (step {valid[-1].get('step')})"
    return line


def evaluation(facts: RunFacts) -> str:
    report = facts.report
    if report is None:
        return ("## Evaluation\n\nNot evaluated: the run has no eval/report.json "
                "(`tunesmith eval --model RUN --suite SUITE --out RUN/eval`, then write the card again).")
    lines = ["## Evaluation", "",
             f"Suite `{report['suite']['name']}` (sha256 `{report['suite']['sha256']}`), base model before vs this "
             f"model after, same prompts and decoding; {'all gates passed' if report['passed'] else 'a gate FAILED'}.",
             "", "| task | metric | base model | this model | change |", "|---|---|---:|---:|---:|"]
    for task in report["tasks"]:
        for metric, value in task["candidate"]["metrics"].items():
            lines.append(f"| {task['name']} | {metric} | {_number(task['baseline']['metrics'].get(metric))} | "
                         f"{_number(value)} | {_signed(task['delta'].get(metric))} |")
    general = [t for t in report["tasks"] if t["kind"] == "general"]
    lines += ["", "### Forgetting check", ""]
    lines += [f"- {t['name']}: " + ", ".join(f"{metric} {_number(t['baseline']['metrics'].get(metric))} → {_number(value)}"
                                             for metric, value in t["candidate"]["metrics"].items()) for t in general] \
        or ["- no general-ability task in the suite: forgetting was not measured"]
    lines += ["", "### Gates", ""]
    lines += [f"- {'passed' if gate['passed'] else 'FAILED'}: {gate['message']}" for gate in report["gates"]] or ["- none"]
    if facts.update is not None and facts.update.get("kept"):
        lines += ["", kept_section(facts.update)]
    return "\n".join(lines)


def kept_section(update: dict) -> str:
    """Every earlier version's score this update had to keep: the best any ancestor reached, this model's,
    the loss against what was allowed (points; perplexity in percent), from eval/update.json."""
    verdict = "it kept everything it had to" if update["passed"] else "it was NOT promotable"
    lines = ["### Kept from earlier versions", "",
             f"Each score on an earlier version's suite against the best any ancestor recorded; {verdict}.", "",
             "| suite | task | metric | best before (run) | this model | lost | allowed | verdict |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for kept in update["kept"]:
        unit = "%" if kept["metric"] == "perplexity" else " points"
        verdict = "retired (not gated)" if kept["retired"] else ("kept" if kept["passed"] else "FORGOTTEN")
        lines.append(f"| {kept['suite']} | {kept['task']} | {kept['metric']} | {_number(kept['best'])} "
                     f"(`{Path(kept['best_run']).name}`) | {_number(kept['candidate'])} | {kept['lost']:+.2f}{unit} | "
                     f"{kept['threshold']:g}{unit} | {verdict} |")
    return "\n".join(lines)


def limitations(facts: RunFacts) -> str:
    lines = ["## Limitations", "",
             f"- It inherits the limitations and biases of `{facts.run.get('base_model')}`; see that model's card."]
    train = next((d for d in facts.data if d.role == "train"), None)
    if train and train.present:
        lines.append(f"- It learned from {train.valid_rows} rows; outside their topic expect the base model's behaviour at best.")
        found = sum(train.pii.values())
        lines.append(f"- The PII scan found {found} value(s) in the training data; the model may repeat them." if found else
                     "- The rule-based PII scan found nothing; person names are not covered by it.")
    if facts.report is None:
        lines.append("- Not evaluated: its quality and any forgetting are unmeasured.")
    else:
        failed = [gate["message"] for gate in facts.report["gates"] if not gate["passed"]]
        lines += [f"- Failed gate: {message}" for message in failed]
        lines.append("- Only the tasks in the evaluation above were measured.")
    return "\n".join(lines)


def _number(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _signed(value) -> str:
    return "n/a" if value is None else f"{value:+.4g}"


def _duration(seconds) -> str:
    if seconds is None:
        return "time not recorded"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s of wall time" if minutes else f"{rest} s of wall time"
