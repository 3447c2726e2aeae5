"""The line-by-line screen of a data file, and the loaders' answer to JSON nested past the parser's limit."""
from tunesmith.data.check import check_data
from tunesmith.data.line_screen import screen_lines


def test_screen_reports_each_bad_line_and_reads_past_huge_ones(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"text": "ok"}\n' + b'{"text": "' + b"a" * 5000 + b'"}\n' + b"\xff\xfe\n" + b"[" * 50_000 + b"\n"
                     + b'{"text": "fine"}\n' + b"x" * 3000)
    errors = screen_lines(path, "rows.jsonl", max_line_bytes=1000)
    assert [(e.line, e.message.split(" (")[0].split(",")[0]) for e in errors] == [
        (2, "line is 5013 bytes"), (3, "not valid UTF-8"), (4, "line is 50001 bytes"), (6, "line is 3000 bytes")]
    assert all(e.file == "rows.jsonl" and e.hint for e in errors)
    path.write_bytes(b'\xef\xbb\xbf{"text": "ok"}\n\n{"text": "a" "b"}\n')  # BOM; ordinary JSON errors are the loaders'
    assert screen_lines(path, "rows.jsonl") == []


def test_deep_nesting_is_a_row_error_in_every_loader(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    for first in ('{"text": "a"}', '{"text": "a", "label": "x"}',
                  '{"input": {"messages": [{"role": "user", "content": "q"}]}, '
                  '"preferred_output": [{"role": "assistant", "content": "a"}], '
                  '"non_preferred_output": [{"role": "assistant", "content": "b"}]}'):
        path = tmp_path / "rows.jsonl"
        path.write_text(f"{deep}\n{first}\n{deep}\n")
        report = check_data(path)
        assert [(e["line"], "nested too deeply" in e["message"]) for e in report.errors] == [(1, True), (3, True)], first


def test_blank_lines_keeps_the_other_lines_where_they_were(tmp_path):
    from tunesmith.data.line_screen import blank_lines

    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"text": "a"}\n' + b"x" * 5000 + b"\n\xff\n" + b'{"text": "b"}\n' + b"y" * 3000)
    blank_lines(path, tmp_path / "rest.jsonl", {2, 3, 5}, max_line_bytes=1000)
    assert (tmp_path / "rest.jsonl").read_bytes() == b'{"text": "a"}\n\n\n{"text": "b"}\n'
