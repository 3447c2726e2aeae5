"""Every YAML shipped under examples/ (and the benchmarks' run configs) loads with the strict schema of its kind, and
the files it names exist."""
from pathlib import Path

import pytest
import yaml

from tunesmith.config import load_config
from tunesmith.data.augment_spec import load_spec
from tunesmith.evaluate.suite import load_suite
from tunesmith.train.reinforce import checked_grader

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "examples").rglob("*.yaml")) + sorted((REPO / "benchmarks").glob("*.yaml"))


def kind_of(raw: dict) -> str:
    if "tasks" in raw:
        return "suite"
    if "relations" in raw:
        return "augment"
    if raw.keys() & {"model", "data", "lora", "train", "eval", "out"}:
        return "run"
    return "unknown"


def test_examples_ship_run_configs_and_suites():
    kinds = {kind_of(yaml.safe_load(path.read_text())) for path in SHIPPED}
    assert {"run", "suite", "augment"} <= kinds


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_yaml_is_valid(path, monkeypatch):
    raw = yaml.safe_load(path.read_text())
    kind = kind_of(raw)
    if kind == "suite":
        load_suite(path)  # resolves and checks its data files relative to the suite
        return
    if kind == "augment":
        load_spec(path)  # a `tunesmith data augment` template spec
        return
    assert kind == "run", f"{path}: unknown kind of YAML; teach tests/test_examples.py to validate it"
    monkeypatch.chdir(REPO)  # run configs name files relative to the repository root, as the README runs them
    config = load_config(path)
    replay_text = config.data.replay.general_text if config.data.replay is not None else None
    for named in (config.data.train, config.data.valid, config.eval.suite, replay_text):
        assert named is None or Path(named).is_file(), f"{path} names {named}, which does not exist"
    if config.train.method == "reinforcement":
        checked_grader(config)  # its grader parses (a bad one is a ConfigError naming the field)

