"""Lineage: what made a model (base → parents → it, with data and evaluations), and what a data file made.

Run as: tunesmith lineage runs/v2   |   tunesmith lineage --data examples/elements/train.jsonl --runs runs

Everything is read from run.json records (train/run_record.py), or for a model directory copied away from its
runs from the lineage.json it carries (the same records, root first): a model is its run directory, its
parent is `parent.run_dir`, its data are the SHA-256 digests of the files it read (a redacted copy also
names the file it came from; replayed files count too). A model trained on a file "through a parent"
has an ancestor that read it: the ancestor's weights, and so the data, live on in it. The server's
registry only adds names: a run directory's model id, and a stored file's id.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.data.hashing import file_sha256
from tunesmith.registry import files, models
from tunesmith.registry.db import Database
from tunesmith.train.run_record import MODEL_LINEAGE, RUN_RECORD, run_chain

MIN_PREFIX = 8  # a shorter hex prefix would match digests by accident


class LineageError(ValueError):
    """A model or data reference that names nothing; the message says what to pass instead."""


@dataclass
class RunNode:
    run_dir: Path
    record: dict
    model_id: str | None = None  # the registry's id, when a server trained it

    @property
    def parent_dir(self) -> Path | None:
        parent = self.record.get("parent")
        return Path(parent["run_dir"]) if parent and parent.get("run_dir") else None

    def data_digests(self) -> set[str]:
        """Every data file this run itself read: trained files, the files redacted into them, replayed files."""
        found = {self.record.get(key) for key in ("train_sha256", "valid_sha256")}
        for entry in self.record.get("data") or []:
            found |= {entry.get("sha256"), (entry.get("source") or {}).get("sha256")}
        for source in (self.record.get("replay") or {}).get("sources") or []:
            for item in source.get("files") or []:  # a redacted general text also names the file it came from
                if isinstance(item, dict):
                    found |= {item.get("sha256"), (item.get("source") or {}).get("sha256")}
        return {digest for digest in found if digest}

    def summary(self, file_ids: dict[str, str] | None = None) -> dict:
        """The JSON the CLI (--json), the API and the UI show for one run of a chain."""
        file_ids = file_ids or {}
        record = self.record
        data = record.get("data") or [{"role": role, "path": record.get(f"{role}_file"), "sha256": record.get(f"{role}_sha256")}
                                      for role in ("train", "valid") if record.get(f"{role}_sha256")]
        return {
            "run_dir": str(self.run_dir), "model": self.model_id, "method": record.get("method"),
            "base_model": record.get("base_model"), "base_model_sha256": record.get("base_model_sha256"),
            "parent_run_dir": str(self.parent_dir) if self.parent_dir else None,
            "started_at": record.get("started_at"), "finished_at": record.get("finished_at"),
            "started_by": record.get("started_by"), "tunesmith_version": record.get("tunesmith_version"),
            "code_revision": record.get("code_revision"), "machine": record.get("machine"),
            "data": [{"role": d.get("role"), "path": d.get("path"), "file_id": file_ids.get(d.get("sha256")),
                      "sha256": d.get("sha256"), "rows": d.get("rows"), "source": d.get("source"),
                      "pii": d.get("pii")} for d in data],
            "replay": [{"source": source.get("name"), "path": item.get("path"), "sha256": item.get("sha256"),
                        "from": item.get("source")}
                       for source in (record.get("replay") or {}).get("sources") or []
                       for item in source.get("files") or [] if isinstance(item, dict)],
            "evaluations": [{"suite": e.get("suite"), "passed": e.get("passed"), "at": e.get("at"),
                             "reports": e.get("reports")} for e in record.get("evaluations") or []],
        }


@dataclass
class TrainedOn:
    """A model made from the data: directly, or through the ancestor run `via`."""

    node: RunNode
    via: Path | None = None  # None: the run read the data itself

    def to_json(self) -> dict:
        return {"run_dir": str(self.node.run_dir), "model": self.node.model_id,
                "how": "direct" if self.via is None else "through a parent",
                "via_run_dir": str(self.via) if self.via else None}


@dataclass
class Lineage:
    chain: list[RunNode]  # the root ancestor first, the model asked about last
    file_ids: dict[str, str] = field(default_factory=dict)  # sha256 → the server's file id

    def to_json(self) -> dict:
        root = self.chain[0].record
        return {"base_model": root.get("base_model"), "base_model_sha256": root.get("base_model_sha256"),
                "chain": [node.summary(self.file_ids) for node in self.chain]}


def run_dir_of(model: str | Path) -> Path:
    """A run directory, or a run's model/ or adapter/ directory, as the run directory it belongs to."""
    path = Path(model).expanduser()
    for candidate in (path, path.parent):
        if (candidate / RUN_RECORD).is_file():
            return candidate.resolve()
    raise LineageError(f"{model}: not a tunesmith run directory (no {RUN_RECORD} in it or its parent, no "
                       f"{MODEL_LINEAGE} in it) — pass the --out directory of a training run, an exported model "
                       "directory, or with --home a model id or NAME:N")


def lineage(run_dir: Path, names: dict[Path, str] | None = None, file_ids: dict[str, str] | None = None) -> Lineage:
    """The run and its ancestors, root first; a parent whose directory is gone ends the chain there."""
    names = names or {}
    chain = [RunNode(path, record, names.get(path)) for path, record in run_chain(run_dir)]
    if not chain:
        raise LineageError(f"{run_dir}: no {RUN_RECORD} there — the run was deleted or never finished")
    return Lineage(chain, file_ids or {})


def lineage_of(model: str | Path, names: dict[Path, str] | None = None,
               file_ids: dict[str, str] | None = None) -> Lineage:
    """A run directory's lineage (or its model/ or adapter/ directory's), else the chain an exported model
    directory carries in its lineage.json (train/run_record.py writes it beside the weights)."""
    exported = Path(model).expanduser() / MODEL_LINEAGE
    if exported.is_file() and not (exported.parent.parent / RUN_RECORD).is_file():
        chain = json.loads(exported.read_text())["chain"]
        return Lineage([RunNode(Path(entry["run_dir"]), {k: v for k, v in entry.items() if k != "run_dir"})
                        for entry in chain], file_ids or {})
    return lineage(run_dir_of(model), names, file_ids)


def find_run_dirs(roots: list[Path]) -> list[Path]:
    """Run directories (holding a run.json) anywhere under the roots, each once."""
    found: dict[Path, None] = {}
    for root in roots:
        if Path(root).is_dir():
            found.update((path.parent.resolve(), None) for path in sorted(Path(root).rglob(RUN_RECORD)))
    return list(found)


def data_digest(reference: str, db: Database | None = None) -> str:
    """A data file's SHA-256 from its path, its digest, a digest prefix of at least 8 hex digits, or (with the
    server's registry) a stored file's id."""
    path = Path(reference).expanduser()
    if path.is_file():
        return file_sha256(path)
    if db is not None and files.FILE_ID.match(reference):
        stored = next((record for record in files.all_files(db) if record.id == reference), None)
        if stored is None or stored.sha256 is None:
            raise LineageError(f"{reference}: no such stored file (or it was deleted, or stored before digests were "
                               "kept) — pass the data file or its sha256")
        return stored.sha256
    text = reference.lower().removeprefix("sha256:")
    if re.fullmatch(r"[0-9a-f]+", text) and MIN_PREFIX <= len(text) <= 64:
        return text
    raise LineageError(f"{reference}: neither a file nor a SHA-256 — pass the data file, its sha256 (run.json and "
                       f"model cards show it), at least {MIN_PREFIX} hex digits of it, or with --home a file id")


def trained_on(digest: str, run_dirs: list[Path], names: dict[Path, str] | None = None) -> list[TrainedOn]:
    """Every run among `run_dirs` (and their ancestors) made from data with this digest or digest prefix."""
    matches = (lambda d: d == digest) if len(digest) == 64 else (lambda d: d.startswith(digest))
    found: dict[Path, TrainedOn] = {}
    for run_dir in run_dirs:
        chain = lineage(run_dir, names).chain
        source: Path | None = None  # the oldest ancestor in this chain that read the data
        for node in chain:
            direct = any(matches(d) for d in node.data_digests())
            if direct and node.run_dir not in found:
                found[node.run_dir] = TrainedOn(node)
            elif source is not None and node.run_dir not in found:
                found[node.run_dir] = TrainedOn(node, via=source)
            source = source or (node.run_dir if direct else None)
    return list(found.values())


def registry_names(db: Database, owner: str | None = None) -> dict[Path, str]:
    """Run directory → model id for the registry's models (one key's, or every key's for an operator)."""
    return {Path(m.run_dir).resolve(): m.id for m in models.all_models(db, owner)}


def registry_file_ids(db: Database, owner: str | None = None) -> dict[str, str]:
    """SHA-256 → file id for the stored files whose digest is known."""
    return {record.sha256: record.id for record in files.all_files(db, owner) if record.sha256}
