"""tunesmith command line: thin wrappers that parse, call library functions and print.

Run as: tunesmith --help
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(help="Finetune a general LLM into your model, prove the gain, serve it.", no_args_is_help=True)
data_app = typer.Typer(help="Check training data before spending compute.", no_args_is_help=True)
app.add_typer(data_app, name="data")
keys_app = typer.Typer(help="API keys for `tunesmith serve`.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
audit_app = typer.Typer(help="The registry's tamper-evident audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
guard_app = typer.Typer(help="Moderation guards on served models (operator settings).", no_args_is_help=True)
models_app = typer.Typer(help="Named models with numbered versions: register, promote, roll back.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(guard_app, name="guard")
console = Console()
# Messages are not broken at the console's width (80 columns off a terminal): a path:line in an error stays one
# string to copy or grep (seen split as 'train.j\nsonl:3' under a longer temporary directory).
err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


@data_app.command("check")
def data_check(
    file: Path = typer.Argument(..., help="Training file (chat/instruction JSONL, .txt/JSONL text, or preference pairs for DPO)."),
    valid: Optional[Path] = typer.Option(None, help="Validation file: checked too, and for rows shared with train."),
    base: Optional[str] = typer.Option(None, help="Base model whose tokenizer and chat template count tokens."),
    max_length: int = typer.Option(1024, help="Rows longer than this are warned about (they would be truncated)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Validate every row (line, field, fix), warn about length/duplicates/leakage/PII, show token stats."""
    from tunesmith.cli_render import print_data_report
    from tunesmith.data.check import check_data
    from tunesmith.models.load import load_tokenizer

    tokenizer = load_tokenizer(base) if base else None
    report = check_data(file, valid, tokenizer=tokenizer, max_length=max_length)
    if as_json:
        print(report.model_dump_json(indent=2))
    else:
        print_data_report(report, console)
    if not report.ok:
        raise typer.Exit(1)


@data_app.command("augment")
def data_augment(
    spec: Path = typer.Argument(..., help="Augment spec YAML: relations with answer and question templates."),
    records: Optional[list[Path]] = typer.Option(None, "--records", help="CSV or JSONL records (repeatable)."),
    documents: Optional[list[Path]] = typer.Option(None, "--documents", help="Text/markdown split into passages (repeatable)."),
    out: Path = typer.Option(..., "--out", help="Directory for train/valid/eval.jsonl and sources.jsonl."),
    holdout: str = typer.Option("by-source", help="by-source: some sources only in valid/eval; by-template: phrasings held out."),
    holdout_fraction: float = typer.Option(0.2, help="Share of sources held out (by-source)."),
    seed: int = typer.Option(0, help="Same seed, same files."),
    paraphrase: int = typer.Option(0, help="Model paraphrases per question template (0: none)."),
    paraphrase_model: str = typer.Option("smollm2-135m-instruct", help="Model that writes the paraphrases."),
) -> None:
    """Turn records and documents into many phrasings of each fact: train/valid chat rows and eval QA items.

    Run as: tunesmith data augment SPEC.yaml --records FILE.csv --out DIR [--holdout by-template] [--paraphrase 3]
    """
    from tunesmith.cli_render import print_augment_summary
    from tunesmith.data.augment import AugmentError, augment_files
    from tunesmith.models.load import ChatTemplateError
    from tunesmith.models.resolve import ModelNotFoundError

    try:
        summary = augment_files(spec, records or [], documents or [], out, holdout, holdout_fraction, seed,
                                paraphrase, paraphrase_model)
    except (AugmentError, ChatTemplateError, ModelNotFoundError) as exc:
        fail(str(exc))
    print_augment_summary(summary, console)


@data_app.command("redact")
def data_redact(
    source: Path = typer.Argument(..., help="File to redact: chat/instruction/text JSONL, or plain text."),
    out: Path = typer.Argument(..., help="Where the redacted copy goes (never the input)."),
    ner_model: Optional[str] = typer.Option(None, help="spaCy pipeline for person names (default: en_core_web_sm if installed)."),
    no_ner: bool = typer.Option(False, "--no-ner", help="Find names by cue rules only (titles, salutations)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Replace emails, phones, cards, IBANs, IPs, national ids, addresses and names with <KIND_N> placeholders.

    Run as: tunesmith data redact examples/elements/train.jsonl runs/train.redacted.jsonl
    """
    from tunesmith.data.person_names import CueNames, MissingNerModel, name_detector
    from tunesmith.data.redact import RedactionError, redact_file

    try:
        report = redact_file(source, out, CueNames() if no_ner else name_detector(ner_model))
    except (RedactionError, MissingNerModel) as exc:
        fail(str(exc))
    if as_json:
        print(report.model_dump_json(indent=2))
        return
    total = sum(report.counts.values())
    console.print(f"{total} value(s) redacted in {report.rows_changed} of {report.rows} rows → {report.output}",
                  soft_wrap=True)
    console.print(f"names: {report.name_detector}")
    for kind, count in sorted(report.counts.items()):
        console.print(f"  {kind}: {count} ({report.distinct[kind]} distinct)")
    for redaction in report.redactions[:20]:
        where = f"{report.source}:{redaction.line}" + (f": {redaction.field}" if redaction.field else "")
        console.print(f"  {where}: {redaction.kind} → {redaction.placeholder}", markup=False, highlight=False,
                      soft_wrap=True)
    if len(report.redactions) > 20:
        console.print(f"  … {len(report.redactions) - 20} more (--json lists all)")


@app.command()
def train(
    config: Optional[Path] = typer.Argument(None, help="YAML config (sections model, data, lora, train)."),
    base: Optional[str] = typer.Option(None, help="Base model: embedded name, local HF dir, run dir or hub id."),
    from_run: Optional[str] = typer.Option(None, "--from", help="Continue from this finished run (its adapter, or "
                                           "its merged weights for a full finetune), or a version NAME:N / NAME:latest "
                                           "with --home; the base follows it."),
    home: Optional[Path] = typer.Option(None, help="Registry whose model versions --from may name (a server's --home); "
                                        "its audit log records the run (default: $TUNESMITH_HOME or ~/.tunesmith)."),
    key: Optional[str] = typer.Option(None, help="With --home: API key id that owns the model (default: the only key)."),
    data: Optional[Path] = typer.Option(None, help="Training data file."),
    valid: Optional[Path] = typer.Option(None, help="Validation data file."),
    method: Optional[str] = typer.Option(None, help="lora (default) or full: supervised finetuning; dpo: preference pairs (config section dpo); classification: labelled texts (config section classification); reinforcement: prompts and a grader (config section reinforcement)."),
    epochs: Optional[float] = typer.Option(None, help="Passes over the data."),
    max_steps: Optional[int] = typer.Option(None, help="Stop after this many optimizer steps."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate."),
    batch_size: Optional[int] = typer.Option(None, help="Examples per optimizer step."),
    micro_batch_size: Optional[int] = typer.Option(None, help="Examples per forward pass (accumulation below batch size)."),
    max_length: Optional[int] = typer.Option(None, help="Maximum tokens per example."),
    packing: Optional[bool] = typer.Option(None, "--packing/--no-packing", help="Pack short examples together."),
    lora_r: Optional[int] = typer.Option(None, help="LoRA rank."),
    lora_alpha: Optional[int] = typer.Option(None, help="LoRA alpha."),
    seed: Optional[int] = typer.Option(None, help="Random seed."),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--no-bf16", help="bf16 autocast (default: where supported)."),
    compile_layers: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile each decoder layer "
                                                  "(train.compile; one process only)."),
    save_every: Optional[int] = typer.Option(None, help="Steps between checkpoints."),
    eval_every: Optional[int] = typer.Option(None, help="Steps between validation-loss evaluations."),
    time_budget: Optional[float] = typer.Option(None, help="Minutes the training steps must fit: after timing a few "
                                                "steps the run fixes its step count (at most what --epochs / "
                                                "--max-steps give) and the learning-rate schedule ends there."),
    out: Optional[Path] = typer.Option(None, help="Run directory."),
    resume: bool = typer.Option(False, help="Continue from the newest complete checkpoint in --out."),
    skip_invalid: bool = typer.Option(False, help="Skip invalid rows (each is reported) instead of refusing."),
    nproc: int = typer.Option(1, help="Data-parallel processes on this machine (started with torchrun)."),
    distributed: Optional[str] = typer.Option(None, help="ddp (default), fsdp or deepspeed: how --nproc processes share the run."),
    deepspeed_config: Optional[Path] = typer.Option(None, help="DeepSpeed JSON (with --distributed deepspeed)."),
    stop_after: Optional[int] = typer.Option(None, help="Checkpoint and stop after this step; continue later with --resume."),
) -> None:
    """Finetune: validate data, train (LoRA by default), checkpoint, export adapter + merged model.

    The run (or its refusal) is audited in --home's log, else the default home's ($TUNESMITH_HOME or ~/.tunesmith).
    """
    if nproc > 1:
        raise typer.Exit(relaunch_with_torchrun(nproc))
    from tunesmith.config import ConfigError, load_config
    from tunesmith.evaluate.after_training import check_eval_suite
    from tunesmith.evaluate.suite import SuiteError
    from tunesmith.models.load import ChatTemplateError
    from tunesmith.models.resolve import ModelNotFoundError
    from tunesmith.train.checkpoint import CheckpointMismatchError
    from tunesmith.train.deepspeed import DeepSpeedSetupError
    from tunesmith.train.distributed import NoGpuForRankError
    from tunesmith.train.loop import NoTrainedTokensError
    from tunesmith.train.setup import InvalidDataError, NoTrainingDataError
    from tunesmith.data.pii_policy import PersonalDataRefused
    from tunesmith.train.recipes import train_run as run_training
    from tunesmith.train.sft import RunDirectoryInUse

    overrides = {
        "model.base": base, "model.parent.run": from_run, "data.train": data, "data.valid": valid, "train.method": method,
        "train.epochs": epochs, "train.max_steps": max_steps, "train.lr": lr, "train.batch_size": batch_size,
        "train.micro_batch_size": micro_batch_size, "data.max_length": max_length, "data.packing": packing,
        "lora.r": lora_r, "lora.alpha": lora_alpha, "train.seed": seed, "train.bf16": bf16, "train.compile": compile_layers,
        "train.save_every": save_every, "train.eval_every": eval_every, "out": out, "train.time_budget": time_budget,
        "data.skip_invalid": skip_invalid or None, "train.distributed": distributed,
        "train.deepspeed_config": deepspeed_config,
    }
    if from_run is not None and home is not None and not Path(from_run).is_dir():
        overrides["model.parent.run"] = version_run_dir(from_run, home, key)
    saved = out / "config.yaml" if out is not None else None
    if resume and config is None and saved is not None and saved.is_file():
        config = saved  # `--out DIR --resume` continues with the run's own resolved config
    audited = os.environ.get("RANK", "0") == "0"  # under torchrun the first process speaks for the run
    run_config = None
    try:
        run_config = load_config(config, overrides)
        check_eval_suite(run_config)  # a broken suite fails now, not after the training it was meant to judge
        result = run_training(run_config, resume=resume, console=err, stop_after=stop_after)
    except (ConfigError, SuiteError, InvalidDataError, NoTrainingDataError, ChatTemplateError, ModelNotFoundError,
            RunDirectoryInUse, CheckpointMismatchError, DeepSpeedSetupError, NoTrainedTokensError,
            PersonalDataRefused, NoGpuForRankError) as exc:
        if audited and run_config is not None:  # a refused run is recorded; a config that does not load is a typo
            audit_cli_action(home, None, "run.trained", str(run_config.out.resolve()),
                             "refused: " + str(exc).splitlines()[0][:200], config=str(config) if config else None)
        fail(str(exc))
    if audited:
        audit_trained_run(home, result.run_dir, config, result.finished)
    if not result.finished:
        console.print(f"stopped after step {result.steps} with a checkpoint; continue with: "
                      f"tunesmith train --out {result.run_dir} --resume")
        return
    stopped = {"time_budget": " (the time budget's)", "early_stopping": " (stopped early)"}.get(result.stopped_by, "")
    console.print(f"done: {result.steps} steps{stopped}, final loss {result.final_loss:.4f}"
                  + (f", valid loss {result.final_valid_loss:.4f}" if result.final_valid_loss is not None else ""))
    if result.early_stopping and result.early_stopping["best_step"] != result.steps:
        best = result.early_stopping
        console.print(f"exported the weights of step {best['best_step']}, the best validation loss "
                      f"({best['best_valid_loss']:.4f})")
    console.print(f"adapter and merged model in {result.run_dir}")
    if os.environ.get("RANK", "0") == "0":  # under torchrun only the first process evaluates
        evaluate_finished_run(run_config, result.run_dir)


def audit_trained_run(home: Optional[Path], run_dir: Path, config: Optional[Path], finished: bool) -> None:
    """The audit entry of a training run: its directory, parent and the SHA-256 of every file it trained on."""
    from tunesmith.train.run_record import read_run_record

    record = read_run_record(run_dir)
    audit_cli_action(home, None, "run.trained", str(Path(run_dir).resolve()), "ok" if finished else "stopped",
                     config=str(config) if config else None, method=record.get("method"),
                     base_model_sha256=record.get("base_model_sha256"),
                     parent=(record.get("parent") or {}).get("run_dir"), steps=record.get("steps"),
                     data={entry["role"]: entry["sha256"] for entry in record.get("data") or []})


def version_run_dir(ref: str, home: Path, key: Optional[str]) -> str:
    """The run directory of a registered version (NAME:N, or NAME:latest for the promoted one)."""
    from tunesmith.registry.versions import resolve

    db = open_existing_registry(home, None)
    version = resolve(db, registry_owner(db, key), ref)
    if version is None:
        fail(f"--from: {ref} is neither a run directory nor a version in {home} (write NAME:N or NAME:latest)")
    return version.run_dir


def evaluate_finished_run(run_config, run_dir: Path) -> None:
    """The config's `eval:` suite, base model (or parent) vs the run, and for an update every ancestor's suite
    kept (eval/update.json); exit 1 on a failed gate unless told otherwise."""
    from tunesmith.evaluate.after_training import failed_gates_message, print_gates
    from tunesmith.evaluate.continual import evaluate_update

    evaluation = evaluate_update(run_config, run_dir, err)
    if evaluation is None:
        return
    print_gates(evaluation.gain.result.gates, console)
    for kept in evaluation.kept:
        console.print(("[green]" if kept.passed else "[bold red]") + kept.describe(), highlight=False)
    console.print(f"evaluation report: {evaluation.gain.reports['html']}")
    if not evaluation.passed and run_config.eval.fail_on_gate:
        forgotten = [k.describe() for k in evaluation.kept if not k.passed]
        fail("; ".join(filter(None, [failed_gates_message(evaluation.gain.result.gates) if not evaluation.gain.passed
                                     else "", *forgotten])) + f" (the model is kept in {run_dir})")


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/elements-demo"), help="Run directory (replaced if it exists)."),
    eval_limit: Optional[int] = typer.Option(None, help="Evaluate on the first N held-out questions only."),
    max_steps: Optional[int] = typer.Option(None, help="Cap training steps (for a quick look)."),
) -> None:
    """Finetune the embedded SmolLM2-135M-Instruct on element facts, prove the held-out gain, write a report."""
    from tunesmith.demo import gain_table, run_demo
    from tunesmith.evaluate.after_training import failed_gates_message, print_gates

    result = run_demo(out, err, eval_limit=eval_limit, overrides={"train.max_steps": max_steps})
    console.print(gain_table(result))
    gates = result.evaluation.result.gates
    print_gates(gates, console)
    console.print(f"finetuned model: {result.run_dir / 'model'}  (try: tunesmith chat {result.run_dir})")
    console.print(f"report: {result.evaluation.reports['html']}  (open it in a browser); "
                  f"total {result.seconds / 60:.1f} min")
    if not result.evaluation.passed:
        fail(failed_gates_message(gates))


@app.command()
def estimate(
    config: Path = typer.Argument(..., help="YAML config of the run to estimate."),
    hardware: str = typer.Option("cpu", help="cpu (this machine) or a GPU: t4, l4, a10g, a100-40, a100-80, h100, h200."),
    price_per_hour: Optional[float] = typer.Option(None, help="Price of the hardware in USD per hour, for the cost row."),
    probe: bool = typer.Option(False, help="Run a few real training steps here to measure speed and peak memory (a reinforcement config needs it: its steps are timed, not modelled)."),
    mfu: Optional[float] = typer.Option(None, help="GPU: fraction of peak FLOP/s reached (default 0.30)."),
    as_json: bool = typer.Option(False, "--json", help="Print the estimate as JSON."),
) -> None:
    """Predict peak memory, time and cost of a run, next to full finetuning and pretraining from scratch (supervised and
    dpo configs modelled from their data, reinforcement configs timed with --probe)."""
    import json

    from tunesmith.config import ConfigError, load_config
    from tunesmith.estimate.estimate import estimate_config
    from tunesmith.estimate.hardware import HardwareError
    from tunesmith.estimate.table import estimate_table
    from tunesmith.models.load import ChatTemplateError
    from tunesmith.models.resolve import ModelNotFoundError
    from tunesmith.train.loop import NoTrainedTokensError
    from tunesmith.train.setup import InvalidDataError, NoTrainingDataError

    try:
        result = estimate_config(load_config(config), hardware, price_per_hour, probe=probe, mfu=mfu)
    except (ConfigError, InvalidDataError, NoTrainingDataError, ChatTemplateError, ModelNotFoundError, HardwareError,
            NoTrainedTokensError) as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(result.to_json(), indent=2, default=str))
    else:
        console.print(estimate_table(result))


def relaunch_with_torchrun(nproc: int) -> int:
    """Run this same `train` command in `nproc` processes (gloo on CPU, nccl on GPU) and wait for them."""
    import subprocess

    args = sys.argv[sys.argv.index("train") + 1 :]
    rest, skip = [], False
    for arg in args:  # drop "--nproc N" / "--nproc=N": each child runs as one process of the group
        if skip or arg.startswith("--nproc="):
            skip = False
            continue
        skip = arg == "--nproc"
        if not skip:
            rest.append(arg)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "tunesmith.cli", "train", *rest]
    return subprocess.call(command)


def load_for_generation(model_ref: str):
    from tunesmith.models.load import load_model, load_tokenizer

    return load_model(model_ref).eval(), load_tokenizer(model_ref)


@app.command()
def generate(
    model: str = typer.Argument(..., help="Base model name, run directory or model directory."),
    prompt: str = typer.Option(..., help="User message."),
    system: Optional[str] = typer.Option(None, help="System message."),
    max_new_tokens: int = typer.Option(128),
    temperature: float = typer.Option(0.0, help="0 = greedy."),
    seed: Optional[int] = typer.Option(None),
) -> None:
    """Answer one prompt with the model's chat template."""
    from tunesmith.models.generate import stream_chat

    loaded, tokenizer = load_for_generation(model)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    for piece in stream_chat(loaded, tokenizer, messages, max_new_tokens, temperature, seed):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")


@app.command()
def chat(
    model: str = typer.Argument(..., help="Base model name, run directory or model directory."),
    system: Optional[str] = typer.Option(None, help="System message."),
    max_new_tokens: int = typer.Option(256),
    temperature: float = typer.Option(0.0, help="0 = greedy."),
) -> None:
    """Interactive chat; answers stream as they are generated. Empty line or Ctrl-D quits."""
    from tunesmith.models.generate import stream_chat

    loaded, tokenizer = load_for_generation(model)
    messages = [{"role": "system", "content": system}] if system else []
    while True:
        try:
            user = console.input("[bold cyan]you>[/] ")
        except EOFError:
            break
        if not user.strip():
            break
        messages.append({"role": "user", "content": user})
        console.print("[bold green]model>[/] ", end="")
        answer = ""
        for piece in stream_chat(loaded, tokenizer, messages, max_new_tokens, temperature):
            answer += piece
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        messages.append({"role": "assistant", "content": answer})


@app.command("export")
def export_command(
    model: str = typer.Argument(..., help="Run directory, merged model directory or base model name."),
    fmt: str = typer.Option("gguf", "--format", help="gguf: one file for llama.cpp; ollama: GGUF + Modelfile in "
                            "--out DIR; lora: the run's LoRA adapter alone, for llama.cpp --lora."),
    out: Path = typer.Option(..., "--out", help="The .gguf file (gguf, lora) or a directory (ollama)."),
    tensor_type: str = typer.Option("f16", "--type", help="f32, f16, bf16, q8_0 or q4_0 (matrices; norms stay f32)."),
    name: Optional[str] = typer.Option(None, help="general.name in the file (default: the run's directory name)."),
) -> None:
    """Export for llama.cpp, Ollama, LM Studio: merged weights, tokenizer, chat template, stop tokens, lineage.

    Run as: tunesmith export runs/elements-demo --format ollama --out exports/elements --type q8_0
    """
    from tunesmith.export.errors import ExportError
    from tunesmith.export.run_export import export
    from tunesmith.models.resolve import ModelNotFoundError

    try:
        result = export(model, fmt, out, tensor_type, name)
    except (ExportError, ModelNotFoundError) as exc:
        fail(str(exc))
    for path in result.files:
        console.print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)", soft_wrap=True, highlight=False)
    if fmt == "ollama":
        console.print(f"then: ollama create {result.name} -f {out / 'Modelfile'}", soft_wrap=True, highlight=False)


@app.command()
def serve(
    home: Path = typer.Option(..., help="Directory for the database, uploaded files and job runs."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port."),
    base: Optional[list[str]] = typer.Option(None, help="Base model to serve and fine-tune (repeatable); default the embedded one."),
    database: Optional[Path] = typer.Option(None, help="SQLite file (default HOME/tunesmith.sqlite)."),
    max_upload_mb: float = typer.Option(512, help="Uploads larger than this are refused with 413."),
    checkpoint_every: int = typer.Option(50, help="Training steps between a job's checkpoints."),
    retention_days: Optional[float] = typer.Option(None, help="Delete uploads, models and failed jobs' runs older "
                                                   "than this many days (audited); default: keep them."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for inference (default: half the cores, since "
                                          "the job worker trains on the rest; more threads than free cores thrash)."),
    moderation_model: Optional[Path] = typer.Option(None, help="Classifier directory served as omni-moderation-latest."),
    guard: Optional[str] = typer.Option(None, help="Screen every model's input, output or both with --moderation-model "
                                        "(registry guards, `tunesmith guard set`, take precedence)."),
    audit_flagged_text: bool = typer.Option(False, help="Keep flagged texts in the audit log (default: categories and scores)."),
    allow_python_graders: bool = typer.Option(False, envvar="TUNESMITH_ALLOW_PYTHON_GRADERS",
                                              help="Accept python graders (callers' code, run with this server's user "
                                                   "and files) in graders/run and reinforcement jobs."),
    max_concurrent: int = typer.Option(16, help="Completions one key may have in flight (a key's own limit overrides it)."),
    tokens_per_minute: Optional[int] = typer.Option(None, help="Tokens one key may request per minute (default: no limit)."),
    max_queued_jobs: int = typer.Option(16, help="Fine-tuning jobs one key may have waiting or running."),
    max_job_hours: float = typer.Option(24, help="A fine-tuning job running longer than this is stopped and failed."),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--no-bf16", help="Serve models with bf16 weights "
                                        "(default: where the hardware has bf16 matmuls)."),
) -> None:
    """OpenAI-compatible API: files, fine-tuning jobs (trained by a worker), models, chat completions, moderations."""
    import torch

    from tunesmith.serve.app import run_server
    from tunesmith.serve.settings import ServeSettings

    torch.set_num_threads(threads or max(1, (os.cpu_count() or 2) // 2))
    overrides = {"bases": base} if base else {}
    if guard is not None:
        if moderation_model is None:
            fail("--guard: screens with the default moderation model — pass --moderation-model DIR too")
        overrides["guard"] = default_guard(guard)
    settings = ServeSettings(home=home, database=database, max_upload_bytes=int(max_upload_mb * 1024 * 1024),
                             checkpoint_every=checkpoint_every, retention_days=retention_days, moderation_model=moderation_model,
                             audit_flagged_text=audit_flagged_text, allow_python_graders=allow_python_graders,
                             max_concurrent_requests=max_concurrent,
                             tokens_per_minute=tokens_per_minute, max_queued_jobs=max_queued_jobs,
                             max_job_seconds=max_job_hours * 3600, bf16=bf16, **overrides)
    run_server(settings, host, port)


PII_HELP = ("What an upload with personal data gets: refuse (400 listing each finding by line), redact (the "
            "redacted copy is stored) or allow.")


def check_pii_policy(policy: str) -> str:
    from tunesmith.data.pii_policy import PII_POLICIES

    if policy not in PII_POLICIES:
        fail(f"--pii: unknown policy '{policy}' — use one of {', '.join(PII_POLICIES)}")
    return policy


SCOPE_HELP = "What the key may do: fine-tune (everything), inference-only (completions, moderations, reads) or read-only."


def check_scope(scope: str) -> str:
    from tunesmith.registry.keys import SCOPES

    if scope not in SCOPES:
        fail(f"--scope: unknown scope '{scope}' — use one of {', '.join(SCOPES)}")
    return scope


@keys_app.command("create")
def keys_create(
    home: Path = typer.Option(..., help="The server's --home directory."),
    name: Optional[str] = typer.Option(None, help="A label to recognise the key by."),
    database: Optional[Path] = typer.Option(None, help="SQLite file, if the server uses --database."),
    pii: str = typer.Option("refuse", help=PII_HELP),
    scope: str = typer.Option("fine-tune", help=SCOPE_HELP),
) -> None:
    """Create an API key; the secret is printed once, as the last line."""
    from tunesmith.registry.audit import os_actor
    from tunesmith.registry.keys import create_key
    from tunesmith.serve.app import open_registry
    from tunesmith.serve.settings import ServeSettings

    db = open_registry(ServeSettings(home=home, database=database))
    key_id, secret = create_key(db, name, check_pii_policy(pii), actor=os_actor(), scope=check_scope(scope))
    err.print(f"created {key_id} (uploads with personal data: {pii}); send it as 'Authorization: Bearer KEY' "
              "(shown only now):")
    print(secret)


@keys_app.command("pii")
def keys_pii(
    key_id: str = typer.Argument(..., help="The key's id (key-…), as `keys create` printed it."),
    policy: str = typer.Argument(..., help=PII_HELP),
    home: Path = typer.Option(..., help="The server's --home directory."),
    database: Optional[Path] = typer.Option(None, help="SQLite file, if the server uses --database."),
) -> None:
    """Set what the key's uploads with personal data get (audited).

    Run as: tunesmith keys pii key-… redact --home ~/.tunesmith
    """
    from tunesmith.registry.audit import os_actor
    from tunesmith.registry.keys import set_pii_policy

    if not set_pii_policy(open_existing_registry(home, database), key_id, check_pii_policy(policy), os_actor()):
        fail(f"{key_id}: no such key, or it was revoked — `tunesmith audit export` lists the keys created")
    console.print(f"{key_id}: uploads with personal data now get {policy}")


@keys_app.command("list")
def keys_list(
    home: Path = typer.Option(..., help="The server's --home directory."),
    database: Optional[Path] = typer.Option(None, help="SQLite file, if the server uses --database."),
) -> None:
    """Every key with its name, scope, limits (blank: the server's default) and whether it is revoked.

    Run as: tunesmith keys list --home ~/.tunesmith
    """
    from datetime import datetime, timezone

    from rich.table import Table

    from tunesmith.registry.keys import list_keys

    def day(seconds: int | None) -> str:
        return "" if seconds is None else datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d")

    table = Table("id", "name", "scope", "pii", "concurrent", "tokens/min", "jobs", "created", "revoked")
    for key in list_keys(open_existing_registry(home, database)):
        limits = [str(value) if value is not None else "" for value in
                  (key.max_concurrent, key.tokens_per_minute, key.max_queued_jobs)]
        table.add_row(key.id, key.name or "", key.scope, key.pii_policy, *limits, day(key.created_at), day(key.revoked_at))
    console.print(table)


@keys_app.command("scope")
def keys_scope(
    key_id: str = typer.Argument(..., help="The key's id (key-…)."),
    scope: str = typer.Argument(..., help=SCOPE_HELP),
    home: Path = typer.Option(..., help="The server's --home directory."),
    database: Optional[Path] = typer.Option(None, help="SQLite file, if the server uses --database."),
) -> None:
    """Set what the key may do, from its next request (audited).

    Run as: tunesmith keys scope key-… inference-only --home ~/.tunesmith
    """
    from tunesmith.registry.audit import os_actor
    from tunesmith.registry.keys import set_scope

    if not set_scope(open_existing_registry(home, database), key_id, check_scope(scope), os_actor()):
        fail(f"{key_id}: no such key, or it was revoked — `tunesmith keys list` lists the keys")
    console.print(f"{key_id}: scope {scope}")


@keys_app.command("limits")
def keys_limits(
    key_id: str = typer.Argument(..., help="The key's id (key-…)."),
    home: Path = typer.Option(..., help="The server's --home directory."),
    database: Optional[Path] = typer.Option(None, help="SQLite file, if the server uses --database."),
    concurrent: Optional[int] = typer.Option(None, min=0, help="Completions in flight at once (0 = the server's default)."),
    tokens_per_minute: Optional[int] = typer.Option(None, min=0, help="Tokens (prompt + max_tokens × n) per minute (0 = the server's default)."),
    jobs: Optional[int] = typer.Option(None, min=0, help="Fine-tuning jobs waiting or running (0 = the server's default)."),
) -> None:
    """Set the key's own limits over the server's defaults; more than a limit gets 429 with Retry-After (audited).

    Run as: tunesmith keys limits key-… --concurrent 4 --tokens-per-minute 20000 --jobs 2 --home ~/.tunesmith
    """
    from tunesmith.registry.audit import os_actor
    from tunesmith.registry.keys import set_limits

    given = {"max_concurrent": concurrent, "tokens_per_minute": tokens_per_minute, "max_queued_jobs": jobs}
    limits = {name: (value or None) for name, value in given.items() if value is not None}
    if not limits:
        fail("name at least one limit: --concurrent, --tokens-per-minute or --jobs (0 = the server's default)")
    if not set_limits(open_existing_registry(home, database), key_id, limits, os_actor()):
        fail(f"{key_id}: no such key, or it was revoked — `tunesmith keys list` lists the keys")
    console.print(f"{key_id}: " + ", ".join(f"{name} {value or 'server default'}" for name, value in limits.items()))


@keys_app.command("revoke")
def keys_revoke(
    key_id: str = typer.Argument(..., help="The key's id (key-…)."),
    home: Path = typer.Option(..., help="The server's --home directory."),
    database: Optional[Path] = typer.Option(None, help="SQLite file, if the server uses --database."),
) -> None:
    """Revoke a key at once: its requests get 401 from now on (audited).

    Run as: tunesmith keys revoke key-… --home ~/.tunesmith
    """
    from tunesmith.registry.audit import os_actor
    from tunesmith.registry.keys import revoke_key

    if not revoke_key(open_existing_registry(home, database), key_id, actor=os_actor()):
        fail(f"{key_id}: no such key, or it is already revoked")
    console.print(f"revoked {key_id}")


def open_existing_registry(home: Path, database: Optional[Path]):
    """The server's database, never a new empty one: verifying a mistyped --home must not pass."""
    from tunesmith.registry.db import Database
    from tunesmith.serve.settings import ServeSettings

    path = ServeSettings(home=home, database=database).database_path
    if not path.is_file():
        fail(f"{path}: no registry database — pass the server's --home (and --database if it uses one)")
    return Database(path)


def audit_cli_action(home: Optional[Path], database: Optional[Path], action: str, object_id: str,
                     outcome: str = "ok", **detail) -> None:
    """Append a command's state change to the audit log of --home, or of the default home ($TUNESMITH_HOME,
    else ~/.tunesmith) when the command was given none: no action goes unrecorded for want of a server."""
    from tunesmith.registry import audit
    from tunesmith.registry.db import Database
    from tunesmith.serve.settings import ServeSettings, default_home

    settings = ServeSettings(home=home or default_home(), database=database if home is not None else None)
    audit.append(Database(settings.database_path), audit.os_actor(), action, object_id, outcome, **detail)


@audit_app.command("verify")
def audit_verify(
    home: Path = typer.Option(..., help="The server's --home directory."),
    database: Optional[Path] = typer.Option(None, help="SQLite file, if the server uses --database."),
    head: Optional[str] = typer.Option(None, help="SEQ:HASH kept from an earlier export: catches a rewritten log."),
) -> None:
    """Check the audit log's hash chain; exit 1 naming the first edited, deleted or moved entry.

    Run as: tunesmith audit verify --home ~/.tunesmith
    """
    from tunesmith.registry import audit

    db = open_existing_registry(home, database)
    problems = audit.verify_chain(db, known_head=head)
    for problem in problems[1:20]:
        err.print(str(problem), markup=False, highlight=False, soft_wrap=True)
    if problems:
        fail(f"{problems[0]} ({len(problems)} problem(s) in all)")
    count = db.query_one("SELECT COUNT(*) AS n FROM audit_log")["n"]
    console.print(f"{count} entries, chain intact; head {audit.head(db)}", soft_wrap=True, highlight=False)


@audit_app.command("export")
def audit_export(
    home: Path = typer.Option(..., help="The server's --home directory."),
    database: Optional[Path] = typer.Option(None, help="SQLite file, if the server uses --database."),
    since: Optional[str] = typer.Option(None, help="ISO time (UTC unless it has an offset): entries at or after it."),
    format: str = typer.Option("jsonl", help="jsonl or csv."),
    out: Optional[Path] = typer.Option(None, help="Write here instead of standard output."),
) -> None:
    """Write audit entries with their hash links, oldest first; the head to keep goes to standard error.

    Run as: tunesmith audit export --home ~/.tunesmith --since 2026-01-01 --format csv --out audit.csv
    """
    import datetime

    from tunesmith.registry import audit

    if format not in ("jsonl", "csv"):
        fail(f"--format: unknown format '{format}' — use jsonl or csv")
    try:
        start = datetime.datetime.fromisoformat(since) if since else None
    except ValueError:
        fail(f"--since: '{since}' is not an ISO time — write e.g. 2026-01-31 or 2026-01-31T12:00:00+01:00")
    db = open_existing_registry(home, database)
    text = audit.export(db, start, format)
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
    err.print(f"head {audit.head(db)} — keep it to check this log later: tunesmith audit verify --head SEQ:HASH",
              soft_wrap=True, highlight=False)


SCREENS = {"input": (True, False), "output": (False, True), "both": (True, True)}


def screen_flags(screen: str) -> tuple[bool, bool]:
    if screen not in SCREENS:
        fail(f"--screen/--guard: '{screen}' is not one of {', '.join(SCREENS)}")
    return SCREENS[screen]


def default_guard(screen: str):
    from tunesmith.registry.guards import Guard
    from tunesmith.serve.moderation import ALIASES

    return Guard(ALIASES[0], *screen_flags(screen))


@guard_app.command("set")
def guard_set(
    home: Path = typer.Option(..., help="The server's --home directory."),
    moderation_model: str = typer.Option(..., help="An ft: classification model id, omni-moderation-latest (the "
                                         "server's --moderation-model) or a classifier directory."),
    model: str = typer.Option("*", help="The served model to guard; * = every model."),
    key: str = typer.Option("*", help="The API key id (key-...) whose requests are screened; * = every key."),
    screen: str = typer.Option("both", help="input, output or both."),
    database: Optional[Path] = typer.Option(None, help="SQLite file, if the server uses --database."),
) -> None:
    """Screen a model's prompts and/or answers with a moderation model; takes effect on the next request.

    Run as: tunesmith guard set --home ~/.tunesmith --model ft:base:x:abc --moderation-model ft:base:mod:def
    """
    from tunesmith.registry import audit, guards
    from tunesmith.serve.errors import APIError
    from tunesmith.serve.moderation import ALIASES, moderation_model_dir
    from tunesmith.serve.settings import ServeSettings

    db = open_existing_registry(home, database)
    if key != guards.ANY and db.query_one("SELECT id FROM api_keys WHERE id = ?", (key,)) is None:
        fail(f"--key: no API key {key} — give the key-... id that `tunesmith keys create` printed, or * for every key")
    if moderation_model not in ALIASES:
        try:
            moderation_model = str(moderation_model_dir(db, ServeSettings(home=home), moderation_model, owner=None))
        except APIError as exc:
            fail(f"--moderation-model: {exc.message}")
    guards.set_guard(db, audit.os_actor(), guards.Guard(moderation_model, *screen_flags(screen), model=model, owner=key))
    console.print(f"guard set: {model} for key {key} screened ({screen}) by {moderation_model}", highlight=False)


@guard_app.command("list")
def guard_list(
    home: Path = typer.Option(..., help="The server's --home directory."),
    database: Optional[Path] = typer.Option(None, help="SQLite file, if the server uses --database."),
) -> None:
    """The guards in the registry, one per line: model, key, screen, moderation model.

    Run as: tunesmith guard list --home ~/.tunesmith
    """
    from tunesmith.registry import guards

    for guard in guards.list_guards(open_existing_registry(home, database)):
        screen = next(name for name, flags in SCREENS.items() if flags == (guard.screen_input, guard.screen_output))
        print(f"{guard.model}\t{guard.owner}\t{screen}\t{guard.moderation_model}")  # tab-separated, for scripts


@guard_app.command("remove")
def guard_remove(
    home: Path = typer.Option(..., help="The server's --home directory."),
    model: str = typer.Option("*", help="The guarded model, as given to `guard set`."),
    key: str = typer.Option("*", help="The key id, as given to `guard set`."),
    database: Optional[Path] = typer.Option(None, help="SQLite file, if the server uses --database."),
) -> None:
    """Remove one guard (the server's --guard default, if any, then covers that model).

    Run as: tunesmith guard remove --home ~/.tunesmith --model ft:base:x:abc
    """
    from tunesmith.registry import audit, guards

    if not guards.remove_guard(open_existing_registry(home, database), audit.os_actor(), model, key):
        fail(f"no guard for model {model} and key {key} — see `tunesmith guard list`")
    console.print(f"guard removed: {model} for key {key}", highlight=False)


def lineage_sources(runs: Path, home: Optional[Path], database: Optional[Path]):
    """(run directories to search, the registry or None, run dir → model id, sha256 → file id)."""
    from tunesmith.registry.lineage import find_run_dirs, registry_file_ids, registry_names
    from tunesmith.serve.settings import ServeSettings

    db = open_existing_registry(home, database) if home is not None else None
    roots = [runs] + ([ServeSettings(home=home, database=database).jobs_dir] if home is not None else [])
    names = registry_names(db) if db is not None else {}
    return find_run_dirs(roots), db, names, registry_file_ids(db) if db is not None else {}


@app.command("lineage")
def lineage_command(
    model: Optional[str] = typer.Argument(None, help="A run directory (or its model/ directory, also when copied "
                                          "elsewhere), or with --home a model id or a version NAME:N / NAME:latest."),
    data: Optional[str] = typer.Option(None, "--data", help="A data file, its sha256 (8+ hex digits), or with --home a file id: list the models trained on it."),
    runs: Path = typer.Option(Path("runs"), help="Directory searched (recursively) for run directories."),
    home: Optional[Path] = typer.Option(None, help="A server's --home: its models by id, and its job runs, too."),
    key: Optional[str] = typer.Option(None, help="With --home and NAME:N: API key id that owns the model (default: the only key)."),
    database: Optional[Path] = typer.Option(None, help="SQLite file, if the server uses --database."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """What made a model (base → parents → model, with data and evaluations), or every model a data file made.

    Run as: tunesmith lineage runs/elements-demo   |   tunesmith lineage elements-assistant:latest --home H   |
    tunesmith lineage --data examples/elements/train.jsonl
    """
    import json

    from tunesmith.cli_render import print_lineage, print_trained_on
    from tunesmith.registry.lineage import LineageError, data_digest, lineage_of, trained_on

    if (model is None) == (data is None):
        fail("pass a MODEL to see what made it, or --data FILE_OR_HASH to see what it made (not both)")
    run_dirs, db, names, file_ids = lineage_sources(runs, home, database)
    try:
        if data is not None:
            digest = data_digest(data, db)
            found = [item.to_json() for item in trained_on(digest, run_dirs, names)]
            if as_json:
                print(json.dumps({"sha256": digest, "trained_models": found}, indent=2))
            else:
                print_trained_on(digest, found, console)
            return
        tree = lineage_of(registered_run_dir(model, db, key), names, file_ids).to_json()
    except LineageError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(tree, indent=2))
    else:
        print_lineage(tree, console)


def registered_run_dir(model: str, db, key: Optional[str]) -> str:
    """The run directory a registry name stands for (a model id, or a version NAME:N / NAME:latest); a path as given."""
    from tunesmith.registry.models import find_model
    from tunesmith.registry.versions import VERSION_REF, resolve

    if Path(model).exists():
        return model
    if VERSION_REF.match(model):
        if db is None:
            fail(f"{model}: a version is looked up in a registry — pass the server's --home")
        version = resolve(db, registry_owner(db, key), model)
        if version is None:
            fail(f"{model}: no such version in {db.path} (`tunesmith models list` shows them)")
        return version.run_dir
    registered = find_model(db, model) if db is not None else None
    return registered.run_dir if registered else model


@app.command()
def erase(
    data: str = typer.Option(..., "--data", help="The data file, its sha256 (8+ hex digits), or with --home a file id."),
    delete_models: bool = typer.Option(False, "--delete-models", help="Also delete every model trained on it."),
    runs: Path = typer.Option(Path("runs"), help="Directory searched (recursively) for run directories."),
    home: Optional[Path] = typer.Option(None, help="A server's --home: its stored copies and models too (audited)."),
    database: Optional[Path] = typer.Option(None, help="SQLite file, if the server uses --database."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Delete a data file and its recorded copies; list (or with --delete-models delete) the models made from it,
    directly or through a parent. Audited in --home's log, else the default home's ($TUNESMITH_HOME or ~/.tunesmith).

    Run as: tunesmith erase --data people.jsonl --runs runs --home ~/.tunesmith [--delete-models]
    """
    import json

    from tunesmith.cli_render import print_erasure
    from tunesmith.registry.audit import os_actor
    from tunesmith.registry.erasure import ErasureBlocked, erase_data
    from tunesmith.registry.files import all_files
    from tunesmith.registry.lineage import LineageError, data_digest
    from tunesmith.serve.settings import ServeSettings

    run_dirs, db, names, _ = lineage_sources(runs, home, database)
    try:
        digest = data_digest(data, db)
        stored = [f for f in all_files(db) if (f.sha256 or "").startswith(digest)] if db is not None else []
        files_dir = ServeSettings(home=home, database=database).files_dir if home is not None else None
        local = Path(data) if Path(data).is_file() else None
        report = erase_data(digest, run_dirs, actor=os_actor(), names=names, db=db, stored=stored,
                            files_dir=files_dir, local_file=local, delete_models=delete_models)
    except (LineageError, ErasureBlocked) as exc:
        fail(str(exc))
    # the registry audits its own files and models; this entry also names what was deleted on disk
    audit_cli_action(home, database, "data.erased", digest, deleted_files=report.deleted_files,
                     deleted_models=report.deleted_models,
                     trained_models=[item.node.model_id or str(item.node.run_dir) for item in report.trained])
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print_erasure(report.to_json(), console)


@app.command("eval")
def eval_suite(
    model: str = typer.Option(..., help="Candidate: run directory, model directory or model name."),
    suite: Path = typer.Option(..., help="Suite YAML (tasks and gates)."),
    out: Path = typer.Option(..., help="Report directory: report.json, report.md, report.html."),
    baseline: Optional[str] = typer.Option(None, help="Baseline model (default: the run's base model)."),
    limit: Optional[int] = typer.Option(None, help="Use only the first N items of each task (a quick look)."),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--fp32", help="Weights for both models (default: the suite's "
                                        "decoding.bf16, else bf16 where the hardware has bf16 matmuls)."),
) -> None:
    """Run a suite on candidate and baseline, write the reports, exit 1 when a gate fails.

    A run directory as --model also gets the reports in its run.json (with their SHA-256) and a new model card.

    Run as: tunesmith eval --model runs/elements-demo --suite examples/suites/elements.yaml --out runs/elements-demo/eval
    """
    from tunesmith.evaluate.after_training import failed_gates_message, print_gates, write_recorded_reports
    from tunesmith.evaluate.runner import NoBaselineError, run_eval
    from tunesmith.evaluate.suite import SuiteError
    from tunesmith.models.load import ChatTemplateError
    from tunesmith.models.resolve import ModelNotFoundError

    try:
        result = run_eval(model, suite, baseline, limit, console=err, bf16=bf16)
    except (SuiteError, NoBaselineError, ModelNotFoundError, ChatTemplateError) as exc:
        fail(str(exc))
    paths = write_recorded_reports(result, model, out)
    print_gates(result.gates, console)
    console.print(f"report: {paths['html']}  ({paths['md'].name}, {paths['json'].name})")
    if not result.passed:
        fail(failed_gates_message(result.gates))


def registry_owner(db, key: Optional[str]) -> str:
    """The API key whose models a `models` command acts on: --key, or the registry's only active key."""
    rows = db.query("SELECT id FROM api_keys WHERE revoked_at IS NULL ORDER BY rowid")
    ids = [row["id"] for row in rows]
    if key is not None:
        if key not in ids:
            fail(f"--key: {key} is no active API key of this registry (keys: {', '.join(ids) or 'none'})")
        return key
    if len(ids) != 1:
        fail(f"--key: this registry has {len(ids)} active keys ({', '.join(ids) or 'none'}); name the one that owns "
             "the model (`tunesmith keys create` makes one)")
    return ids[0]


def print_version(version, served: Optional[int] = None) -> None:
    from tunesmith.registry.versions import failures

    mark = " (serving as latest)" if served == version.number else ""
    verdict = "[green]passed[/]" if version.passed else "[bold red]failed[/]"
    parent = f"parent {version.name}:{version.parent}" if version.parent else f"from {version.base}"
    console.print(f"[bold]{version.id}[/]{mark}  {verdict}  {parent}  {version.run_dir}", soft_wrap=True, highlight=False)
    for problem in failures(version):
        console.print(f"  {problem}", markup=False, highlight=False, soft_wrap=True)


@models_app.command("register")
def models_register(
    name: str = typer.Argument(..., help="Model name, e.g. elements-assistant."),
    run: Path = typer.Argument(..., help="A finished run evaluated on its suite (RUN/eval/update.json)."),
    home: Path = typer.Option(..., help="The server's --home directory."),
    key: Optional[str] = typer.Option(None, help="API key id that owns the model (default: the only key)."),
    database: Optional[Path] = typer.Option(None, help="SQLite file, if the server uses --database."),
    promote: bool = typer.Option(True, "--promote/--no-promote", help="Serve it as NAME:latest when its gates passed."),
) -> None:
    """Add a run as the next version of NAME; it is promoted only if its evaluation passed.

    Run as: tunesmith models register elements-assistant runs/continual/v2 --home ~/.tunesmith
    """
    from tunesmith.registry.audit import os_actor
    from tunesmith.registry.versions import VersionError, promoted, register_version

    db = open_existing_registry(home, database)
    owner = registry_owner(db, key)
    try:
        version = register_version(db, owner, name, run, os_actor(), promote=promote)
    except VersionError as exc:
        fail(str(exc))
    current = promoted(db, owner, name)
    print_version(version, current.number if current else None)
    if not version.passed:
        fail(f"{version.id} is registered but not promoted: its gates failed; "
             f"{name}:latest stays {current.id if current else 'unset'}")


@models_app.command("list")
def models_list(
    home: Path = typer.Option(..., help="The server's --home directory."),
    name: Optional[str] = typer.Argument(None, help="Only this model's versions."),
    key: Optional[str] = typer.Option(None, help="API key id that owns the models (default: the only key)."),
    database: Optional[Path] = typer.Option(None, help="SQLite file, if the server uses --database."),
) -> None:
    """Every version, with its verdict and parent; the one NAME:latest serves is marked."""
    from tunesmith.registry.versions import list_versions, promoted

    db = open_existing_registry(home, database)
    owner = registry_owner(db, key)
    for version in list_versions(db, owner, name):
        current = promoted(db, owner, version.name)
        print_version(version, current.number if current else None)


@models_app.command("scores")
def models_scores(
    name: str = typer.Argument(..., help="Model name, e.g. elements-assistant."),
    home: Path = typer.Option(..., help="The server's --home directory."),
    key: Optional[str] = typer.Option(None, help="API key id that owns the model (default: the only key)."),
    database: Optional[Path] = typer.Option(None, help="SQLite file, if the server uses --database."),
) -> None:
    """Every task's score after every version: its own suite and each earlier version's, kept or forgotten.

    Run as: tunesmith models scores elements-assistant --home ~/.tunesmith
    """
    from tunesmith.cli_render import print_score_history
    from tunesmith.registry.versions import list_versions, promoted, score_history

    db = open_existing_registry(home, database)
    owner = registry_owner(db, key)
    versions = list_versions(db, owner, name)
    if not versions:
        fail(f"{name}: no versions — register a run first (tunesmith models register {name} RUN --home {home})")
    current = promoted(db, owner, name)
    print_score_history(name, score_history(versions), current.number if current else None, console)


@models_app.command("show")
def models_show(
    ref: str = typer.Argument(..., help="NAME:N or NAME:latest."),
    home: Path = typer.Option(..., help="The server's --home directory."),
    key: Optional[str] = typer.Option(None, help="API key id that owns the model (default: the only key)."),
    database: Optional[Path] = typer.Option(None, help="SQLite file, if the server uses --database."),
) -> None:
    """A version's parent, data, config and evaluation (gain gates and every ancestor score kept), as JSON."""
    import json
    from dataclasses import asdict

    from tunesmith.registry.versions import resolve

    db = open_existing_registry(home, database)
    version = resolve(db, registry_owner(db, key), ref)
    if version is None:
        fail(f"{ref}: no such version (write NAME:N or NAME:latest; `tunesmith models list` shows them)")
    print(json.dumps(asdict(version) | {"id": version.id}, indent=2))


@models_app.command("promote")
def models_promote(
    ref: str = typer.Argument(..., help="NAME:N, the version to serve as NAME:latest."),
    home: Path = typer.Option(..., help="The server's --home directory."),
    key: Optional[str] = typer.Option(None, help="API key id that owns the model (default: the only key)."),
    database: Optional[Path] = typer.Option(None, help="SQLite file, if the server uses --database."),
) -> None:
    """Serve a version that passed its gates as NAME:latest (a running server switches at its next request)."""
    from tunesmith.registry.audit import os_actor
    from tunesmith.registry.versions import VERSION_REF, VersionError, promote

    match = VERSION_REF.match(ref)
    if match is None or match["tag"] == "latest":
        fail(f"{ref}: write NAME:N, e.g. elements-assistant:2")
    db = open_existing_registry(home, database)
    try:
        version = promote(db, registry_owner(db, key), match["name"], int(match["tag"]), os_actor())
    except VersionError as exc:
        fail(str(exc))
    console.print(f"{match['name']}:latest is now {version.id}")


@models_app.command("rollback")
def models_rollback(
    name: str = typer.Argument(..., help="Model name."),
    home: Path = typer.Option(..., help="The server's --home directory."),
    key: Optional[str] = typer.Option(None, help="API key id that owns the model (default: the only key)."),
    database: Optional[Path] = typer.Option(None, help="SQLite file, if the server uses --database."),
) -> None:
    """Serve again the version promoted before the current one (instant: both are adapters on one base)."""
    from tunesmith.registry.audit import os_actor
    from tunesmith.registry.versions import VersionError, rollback

    db = open_existing_registry(home, database)
    try:
        version = rollback(db, registry_owner(db, key), name, os_actor())
    except VersionError as exc:
        fail(str(exc))
    console.print(f"{name}:latest is now {version.id}")


if __name__ == "__main__":
    app()
