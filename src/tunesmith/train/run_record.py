"""RUN_DIR/run.json, the lineage record every training recipe writes, and beside the exported model its card
(README.md) and lineage.json (the run.json of the model's run and of every ancestor).

Run as: library code; sft.py (and every other recipe) calls `guard_personal_data` before reading its data
and `write_run_record` after export, evaluation calls `add_evaluation` (and for an update's kept suites
`add_update_evaluation`).

A record answers an auditor's questions from the run directory alone: which base weights (name and
SHA-256), which parent run it continued, which data files (SHA-256 and rows; for a redacted file also the
file it was redacted from), the resolved config, the tunesmith version and git revision, the machine,
when it started and ended, who started it (an API key id when the server's worker trains, else `os:USER`)
and every evaluation of it with the SHA-256 of each report. `registry/lineage.py` walks these records.
The flat keys `train_file`/`train_sha256`/`valid_file`/`valid_sha256` stay for older readers.

The parent key is `parent: {"run_dir": ..., ...}`: recipes that continue a run pass it; a run whose
`model.base` is itself a run directory gets it without asking.
"""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import tunesmith
from tunesmith.config import RunConfig
from tunesmith.data.formats import load_file
from tunesmith.data.hashing import file_sha256
from tunesmith.data.pii_policy import PiiOutcome, apply_pii_policy
from tunesmith.models.resolve import ModelNotFoundError
from tunesmith.train.model_card import write_model_card
from tunesmith.train.provenance import base_weights_sha256, code_revision, machine, os_user

RUN_RECORD = "run.json"
MODEL_LINEAGE = "lineage.json"  # RUN/model/lineage.json: the chain's run.json records, carried with the weights
REDACTED_DIR = "redacted"  # RUN_DIR/redacted/: the copies a `data.pii: redact` run trains on
PII_REMEDY = ("set data.pii: redact to train on a redacted copy (or run tunesmith data redact IN OUT), "
              "or data.pii: allow if this data may be trained on as it is")


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def read_run_record(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / RUN_RECORD).read_text())


def guarded_files(config: RunConfig) -> dict[str, Path]:
    """Role → file for every file whose text the run trains on as given: train, valid and the replayed
    general text (`general_text`). The ancestors' files a run replays are not in it: they are what the
    ancestors trained on after their own policy (their redacted copies, under redact), and the parent's
    weights carry them already."""
    replay = config.data.replay
    files = {"train": config.data.train, "valid": config.data.valid,
             "general_text": replay.general_text if replay is not None else None}
    return {role: Path(path) for role, path in files.items() if path is not None}


def guard_personal_data(config: RunConfig, run_dir: Path, scan: bool = True) -> tuple[RunConfig, dict[str, PiiOutcome]]:
    """Apply `data.pii` to the train, valid and replayed general-text files: the config to train with
    (redacted copies under `redact`), and each role's outcome. Raises PersonalDataRefused under `refuse`.

    `scan=False` (the other processes of a distributed run) only names the copies the main process writes.
    """
    given = guarded_files(config)
    targets = {role: run_dir / REDACTED_DIR / f"{role}{path.suffix or '.jsonl'}" for role, path in given.items()}
    outcomes = {role: apply_pii_policy(given[role], config.data.pii, target, PII_REMEDY)
                for role, target in targets.items()} if scan else {}
    if config.data.pii != "redact":
        return config, outcomes
    copies: dict = {role: targets[role] for role in ("train", "valid") if role in targets}
    if "general_text" in targets:
        copies["replay"] = config.data.replay.model_copy(update={"general_text": targets["general_text"]})
    return config.model_copy(update={"data": config.data.model_copy(update=copies)}), outcomes


def parent_of(base: str) -> dict | None:
    """The run a `model.base` that is a run directory continues, or None for a plain base model."""
    path = Path(base).expanduser()
    record = path / RUN_RECORD
    if not record.is_file():
        return None
    return {"run_dir": str(path.resolve()), "run_json_sha256": file_sha256(record)}


def write_run_record(run_dir: Path, config: RunConfig, result: dict, *, started_at: str, world_size: int,
                     data_files: dict[str, Path] | None = None, pii: dict[str, PiiOutcome] | None = None,
                     parent: dict | None = None, started_by: str | None = None, extra: dict | None = None) -> dict:
    """Write RUN_DIR/run.json and, when the run exported a model, RUN_DIR/model/README.md (the model card).

    `config` is the resolved config as the user gave it (data paths before redaction); `data_files` maps a
    role to the file actually trained on (default: the config's train and valid, or their redacted copies).
    `result` holds the recipe's figures (steps, losses, trained_tokens, seconds, resumed_from, finished, ...);
    `parent` is `train.parent.parent_record` for a continued run; `extra` holds a recipe's own keys (`replay`).
    A resumed run keeps the start time and evaluations of the record it continues.
    """
    run_dir = Path(run_dir)
    previous = read_run_record(run_dir) if (run_dir / RUN_RECORD).is_file() else {}
    pii = pii or {}
    files = data_files or {role: pii[role].path if role in pii else getattr(config.data, role)
                           for role in ("train", "valid") if getattr(config.data, role) is not None}
    data = [_data_entry(role, Path(path), pii.get(role), getattr(config.data, role, None))
            for role, path in files.items()]
    flat = {}  # the keys older readers (the model card's first version, the evaluator) look for
    for role in ("train", "valid"):
        entry = next((e for e in data if e["role"] == role), None)
        flat[f"{role}_file"], flat[f"{role}_sha256"] = (entry["path"], entry["sha256"]) if entry else (None, None)
    record = {
        "base_model": config.model.base,
        "base_model_sha256": _base_sha256(config.model.base),
        "parent": parent if parent is not None else parent_of(config.model.base),
        "method": config.train.method,
        **flat,
        "data": data,
        "config": config.model_dump(mode="json"),
        "tunesmith_version": tunesmith.__version__,
        "code_revision": code_revision(),
        "machine": machine(world_size),
        "started_at": previous.get("started_at", started_at) if result.get("resumed_from") else started_at,
        "finished_at": utc_now(),
        "started_by": started_by or os_user(),
        "evaluations": previous.get("evaluations", []),
        **(extra or {}),
        **{key: (str(value) if isinstance(value, Path) else value) for key, value in result.items()},
    }
    if outcome := pii.get("general_text"):
        record["replay"] = _with_general_text_checked(record.get("replay"), outcome, guarded_files(config)["general_text"])
    _write_json(run_dir / RUN_RECORD, record)
    if result.get("finished", True) and (run_dir / "model" / "config.json").is_file():
        write_model_files(run_dir)
    return record


def add_evaluation(run_dir: str | Path, reports: dict[str, Path]) -> dict:
    """Record an evaluation (its suite, verdict and each report's path and SHA-256) and rewrite the model card.

    `reports` maps json/md/html to the written files. An evaluation written again to the same place
    replaces its earlier entry: those files, and so their digests, are gone.
    """
    run_dir = Path(run_dir)
    report = json.loads(Path(reports["json"]).read_text())
    return _record_evaluation(run_dir, {
        "at": utc_now(), "suite": report["suite"]["name"], "suite_sha256": report["suite"].get("sha256"),
        "passed": report["passed"],
        "reports": {kind: _pinned(Path(path), run_dir) for kind, path in sorted(reports.items())}})


def add_update_evaluation(run_dir: str | Path, update_report: Path, suites: dict[str, Path],
                          compared_with: list[Path]) -> dict:
    """Record an update's verdict (`evaluate/continual.py`: its own suite's gain and every ancestor suite kept):
    RUN/eval/update.json with its SHA-256, the suites it measured (name → file, with SHA-256), and the
    ancestors' update.json files whose best scores it had to keep, each with its SHA-256. Rewrites the card.
    """
    run_dir = Path(run_dir)
    update = json.loads(Path(update_report).read_text())
    return _record_evaluation(run_dir, {
        "at": utc_now(), "kind": "update", "suite": "update: " + ", ".join(suites), "passed": update["passed"],
        "suites": [{"name": name, **_pinned(path, run_dir)} for name, path in suites.items()],
        "compared_with": [_pinned(path, run_dir) for path in compared_with if path.is_file()],
        "reports": {"json": _pinned(Path(update_report), run_dir)}})


def _record_evaluation(run_dir: Path, entry: dict) -> dict:
    """Append the entry to run.json's evaluations (replacing one whose report is at the same place: those files,
    and so their digests, are gone) and write the model card again."""
    record = read_run_record(run_dir)
    kept = [e for e in record.get("evaluations", []) if e["reports"]["json"]["path"] != entry["reports"]["json"]["path"]]
    record["evaluations"] = kept + [entry]
    _write_json(run_dir / RUN_RECORD, record)
    if (run_dir / "model" / "config.json").is_file():
        write_model_files(run_dir)
    return entry


def write_model_files(run_dir: Path) -> None:
    """The model card and lineage.json beside the exported weights (RUN/model), after export and each evaluation:
    a model directory copied away from its runs still says which data and which ancestors made it."""
    write_model_card(run_dir)
    chain = [{"run_dir": str(path), **record} for path, record in run_chain(run_dir)]
    _write_json(run_dir / "model" / MODEL_LINEAGE, {"format": "tunesmith-lineage/1", "chain": chain})


def run_chain(run_dir: str | Path) -> list[tuple[Path, dict]]:
    """(run directory, run.json) of the root ancestor, ..., of this run, through each record's `parent.run_dir`;
    a parent whose directory is gone ends the chain there."""
    chain: list[tuple[Path, dict]] = []
    current: Path | None = Path(run_dir).resolve()
    while current is not None and current not in [path for path, _ in chain] and (current / RUN_RECORD).is_file():
        record = read_run_record(current)
        chain.append((current, record))
        parent = record.get("parent") or {}
        current = Path(parent["run_dir"]).resolve() if parent.get("run_dir") else None
    return chain[::-1]


def _pinned(path: Path, run_dir: Path) -> dict:
    """A file as run.json names it: its path (relative to the run when inside it) and SHA-256."""
    return {"path": _relative(path, run_dir), "sha256": file_sha256(path)}


def _data_entry(role: str, path: Path, outcome: PiiOutcome | None, given: Path | None) -> dict:
    entry = {"role": role, "path": str(path), "sha256": file_sha256(path), "rows": load_file(path).rows}
    if outcome is not None:
        entry["pii"] = outcome.summary()
    if given is not None and Path(given) != path:  # trained on a redacted copy of the file the user named
        entry["source"] = {"path": str(given), "sha256": file_sha256(Path(given))}
    return entry


def _with_general_text_checked(replay: dict | None, outcome: PiiOutcome, given: Path) -> dict | None:
    """The replay record, its general-text file entry carrying the PII outcome and, for a redacted copy, the
    file it was redacted from (so `lineage --data` and erasure find the file the user named)."""
    for source in (replay or {}).get("sources", []):
        if source["name"] == "general":
            source["files"] = [_data_entry("general_text", Path(f["path"]), outcome, given) for f in source["files"]]
    return replay


def _base_sha256(base: str) -> str | None:
    try:
        return base_weights_sha256(base)
    except ModelNotFoundError:  # a hub id no longer reachable: the run happened, its digest is unknown
        return None


def _relative(path: Path, run_dir: Path) -> str:
    try:
        return str(path.resolve().relative_to(run_dir.resolve()))
    except ValueError:
        return str(path.resolve())


def _write_json(path: Path, record: dict) -> None:
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(json.dumps(record, indent=2))
    os.replace(staging, path)  # a reader (the worker, lineage) never sees half a record
