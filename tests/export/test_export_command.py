"""`tunesmith export`: the files it writes and the one-line errors it ends with."""
from typer.testing import CliRunner

from tunesmith.cli import app

runner = CliRunner()


def test_export_command_writes_gguf_and_ollama_files(tiny_run, tmp_path):
    result = runner.invoke(app, ["export", str(tiny_run), "--format", "gguf", "--out", str(tmp_path / "m.gguf")])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and (tmp_path / "m.gguf").stat().st_size > 0
    result = runner.invoke(app, ["export", str(tiny_run), "--format", "ollama", "--out", str(tmp_path / "ollama"),
                                 "--type", "q4_0", "--name", "elements"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ollama" / "elements-q4_0.gguf").is_file() and (tmp_path / "ollama" / "Modelfile").is_file()
    assert "ollama create elements -f" in result.output


def test_export_command_errors_say_what_to_do(tiny_run, tmp_path):
    result = runner.invoke(app, ["export", str(tiny_run), "--format", "onnx", "--out", str(tmp_path / "m")])
    assert result.exit_code == 1 and "--format: 'onnx' is not an export format — use one of gguf, ollama, lora" in result.output
