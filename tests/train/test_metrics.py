"""metrics.jsonl has one reader: a half-written last line is dropped quietly, a damaged earlier one with a
warning naming it, and a run killed mid-line resumes with the torn line gone."""
import json
import logging

from tests.train.test_sft_run import run_config
from tunesmith.train.metrics import read_metrics
from tunesmith.train.sft import train


def test_reader_drops_a_torn_last_line_quietly_and_a_damaged_earlier_one_with_a_warning(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    assert read_metrics(path) == []  # no record logged yet
    path.write_text('{"step": 1}\n{"step": 2}')  # the last record whole, its newline not yet written
    assert read_metrics(path) == [{"step": 1}, {"step": 2}]
    with caplog.at_level(logging.WARNING, logger="tunesmith.train"):
        path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
        assert read_metrics(path) == [{"step": 1}, {"step": 2}]
        assert not caplog.records  # the line being written is no damage
        path.write_text('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n')
        assert read_metrics(path) == [{"step": 1}, {"step": 3}]
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [f"{path}:2: not valid JSON"]


def test_a_run_killed_mid_line_resumes_and_drops_the_torn_line(tiny_model_dir, tmp_path):
    config = run_config(tiny_model_dir, tmp_path, max_steps=6, save_every=3)
    train(config, stop_after=3)
    metrics = tmp_path / "run" / "metrics.jsonl"
    with metrics.open("a") as handle:
        handle.write('{"step": 4, "epoch": 1.6, "lo')  # killed while writing step 4's record, after step 3's checkpoint
    result = train(config, resume=True)
    assert result.resumed_from == 3 and result.finished
    # every line of the file parses again (the fragment was removed, not just skipped), one record per step
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [1, 2, 3, 4, 5, 6]
