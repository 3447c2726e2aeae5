import json

from rich.console import Console

from tunesmith.cli_render import print_data_report
from tunesmith.data.check import check_data

GOLD = [{"role": "user", "content": "Symbol of gold?"}, {"role": "assistant", "content": "Au."}]


def write_jsonl(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def test_print_data_report_lists_errors_and_caps_long_lists(tmp_path, tokenizer):
    rows = [{"messages": GOLD}] + ["{bad"] * 25
    report = check_data(write_jsonl(tmp_path / "train.jsonl", rows), tokenizer=tokenizer)
    console = Console(record=True, width=200)
    print_data_report(report, console)
    output = console.export_text()
    assert "train.jsonl:2: invalid JSON" in output and "— write one JSON object per line" in output
    assert "train.jsonl:21:" in output and "train.jsonl:22:" not in output
    assert "5 more not shown" in output
    assert "assistant\n[[Au.<|im_end|>]]" in output and "25 errors" in output
