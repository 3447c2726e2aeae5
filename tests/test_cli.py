"""The CLI's contract: clear errors with file, line and fix; refusing invalid data unless told otherwise."""
import json

from typer.testing import CliRunner

from tunesmith.cli import app

runner = CliRunner()

GOOD = {"messages": [{"role": "user", "content": "Symbol of gold?"}, {"role": "assistant", "content": "Au."}]}


def write_rows(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_data_check_reports_every_bad_row_with_line_and_exits_1(tmp_path):
    data = write_rows(tmp_path / "train.jsonl", [GOOD, "{not json", GOOD,
                                                 {"messages": [{"role": "bot", "content": "x"}]}])
    result = runner.invoke(app, ["data", "check", str(data), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert {(e["line"], e["field"]) for e in report["errors"]} >= {(2, "")} | {(4, "messages[0].role")}


def test_train_refuses_invalid_data_and_names_the_row(tmp_path, tiny_model_dir):
    data = write_rows(tmp_path / "train.jsonl", [GOOD, GOOD, {"messages": [{"role": "user", "content": "hi"}]}])
    result = runner.invoke(app, ["train", "--base", str(tiny_model_dir), "--data", str(data),
                                 "--out", str(tmp_path / "run"), "--max-steps", "1"])
    assert result.exit_code == 1
    assert "train.jsonl:3" in result.stderr and "--skip-invalid" in result.stderr
    assert not (tmp_path / "run" / "model").exists()


def test_an_error_naming_a_long_path_keeps_its_path_and_line_whole(tmp_path, tiny_model_dir):
    """Off a terminal the console is 80 columns wide; an error is not broken inside the path:line it names."""
    folder = tmp_path / ("a-folder-whose-name-is-long-enough-to-cross-the-console-width-" * 2)
    folder.mkdir()
    data = write_rows(folder / "train.jsonl", [GOOD, {"messages": [{"role": "user", "content": "hi"}]}])
    result = runner.invoke(app, ["train", "--base", str(tiny_model_dir), "--data", str(data),
                                 "--out", str(tmp_path / "run"), "--max-steps", "1"])
    assert result.exit_code == 1 and f"{data}:2: messages: no assistant turn" in result.stderr


def test_skip_invalid_trains_on_valid_rows_and_reports_skipped_ones(tmp_path, tiny_model_dir):
    data = write_rows(tmp_path / "train.jsonl", [GOOD, GOOD, {"messages": [{"role": "user", "content": "hi"}]}])
    result = runner.invoke(app, ["train", "--base", str(tiny_model_dir), "--data", str(data),
                                 "--out", str(tmp_path / "run"), "--max-steps", "1", "--skip-invalid"])
    assert result.exit_code == 0, result.stderr
    assert "skipped" in result.stderr and "train.jsonl:3" in result.stderr
    assert (tmp_path / "run" / "model" / "config.json").is_file()


def test_unknown_config_key_is_an_error_with_a_suggestion(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("train:\n  learning_rat: 0.1\n")
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 1
    assert "unknown key 'train.learning_rat'" in result.stderr


def test_generate_answers_from_a_run_or_model_directory(tiny_model_dir):
    result = runner.invoke(app, ["generate", str(tiny_model_dir), "--prompt", "hi", "--max-new-tokens", "3"])
    assert result.exit_code == 0, result.output


def test_chat_streams_answers_until_an_empty_line(tiny_model_dir):
    result = runner.invoke(app, ["chat", str(tiny_model_dir), "--max-new-tokens", "3"], input="hi\nand again\n\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("model>") == 2


def test_train_with_a_missing_base_model_says_which_and_exits_1(tmp_path):
    data = write_rows(tmp_path / "train.jsonl", [GOOD, GOOD])
    missing = tmp_path / "no-such-model"
    result = runner.invoke(app, ["train", "--base", str(missing), "--data", str(data), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert "error:" in result.stderr and "no-such-model" in result.stderr


def test_lora_targets_that_name_no_module_are_a_config_error(tmp_path, tiny_model_dir):
    data = write_rows(tmp_path / "train.jsonl", [GOOD, GOOD])
    config = tmp_path / "run.yaml"
    config.write_text("lora:\n  target_modules: [qproj]\n")
    result = runner.invoke(app, ["train", str(config), "--base", str(tiny_model_dir), "--data", str(data),
                                 "--out", str(tmp_path / "run"), "--max-steps", "1"])
    assert result.exit_code == 1
    assert "lora.target_modules" in result.stderr and "q_proj" in result.stderr


def test_a_bug_inside_training_surfaces_as_a_traceback_not_a_one_line_error(tmp_path, tiny_model_dir, monkeypatch):
    def broken_training(*args, **kwargs):
        raise ValueError("a bug, not a user error")

    monkeypatch.setattr("tunesmith.train.sft.train", broken_training)
    data = write_rows(tmp_path / "train.jsonl", [GOOD, GOOD])
    result = runner.invoke(app, ["train", "--base", str(tiny_model_dir), "--data", str(data),
                                 "--out", str(tmp_path / "run")])
    assert type(result.exception) is ValueError and "error:" not in result.stderr
