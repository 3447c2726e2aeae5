"""Redaction: every kind found, placeholders consistent within a file, row structure kept, nothing leaks."""
import json

import pytest

from tunesmith.data.person_names import (
    CueNames,
    MissingNerModel,
    SpacyNames,
    name_detector,
    names_from_entities,
    ner_model_installed,
)
from tunesmith.data.pii import find_pii, iban_valid, luhn_valid, nino_valid
from tunesmith.data.redact import RedactionError, find_personal_data, redact_file

NAMES = CueNames()


@pytest.mark.parametrize(
    ("text", "kind", "found"),
    [
        ("ssn 123 45 6789 ok", "ssn", "123 45 6789"),
        ("nino AB123456C ok", "nino", "AB123456C"),
        ("nino AB 12 34 56 C ok", "nino", "AB 12 34 56 C"),
        ("host 2001:db8:85a3::8a2e:370:7334.", "ipv6", "2001:db8:85a3::8a2e:370:7334"),
        ("mapped ::ffff:192.0.2.1 ok", "ipv6", "::ffff:192.0.2.1"),
        ("call 020 7946 0958 now", "phone", "020 7946 0958"),
        ("call 06 12 34 56 78.", "phone", "06 12 34 56 78"),
        ("call (01632) 960123 now", "phone", "(01632) 960123"),
        ("at 221B Baker Street, London NW1 6XE today", "street_address", "221B Baker Street, London NW1 6XE"),
        ("to 350 West 57th St., Apt 4B, New York, NY 10019 now", "street_address",
         "350 West 57th St., Apt 4B, New York, NY 10019"),
    ],
)
def test_new_kinds_are_found(text, kind, found):
    assert [(f.kind, f.text) for f in find_pii(text)] == [(kind, found)]


@pytest.mark.parametrize(
    "decoy",
    [
        "NINO QQ123456C is HMRC's example and GB123456A is never allocated.",
        "Meet at 12:30:45 by the MAC 00:1A:2B:3C:4D:5E; ::1 is loopback.",
        "In 1911 Albert and Charles Boni printed it; the Road to Ruin has 3 Chapters.",
        "Call +44 123 45 6789, not an SSN.",
        "On 01.02.2024 and 01 02 2024, v0.12.3, ISBN 0 19 852663 6.",
    ],
)
def test_new_decoys_are_not_pii(decoy):
    assert [(f.kind, f.text) for f in find_pii(decoy) if f.kind != "phone"] == []


def test_checksums_reject_invalid_numbers():
    assert not luhn_valid("4111111111111112") and luhn_valid("4111111111111111")
    assert not iban_valid("DE89370400440532013001") and iban_valid("DE89370400440532013000")
    assert nino_valid("AB123456C") and not nino_valid("TN123456C") and not nino_valid("AB 1234 56 C")
    assert find_pii("card 4111 1111 1111 1112, iban DE89 3704 0044 0532 0130 01") == []


def test_cue_rules_find_introduced_names_only():
    text = "Dear Maria Gonzalez, my name is Sean O'Brien; Dr. McDonald agreed. Grace Hopper wrote code. I am Very"
    assert [f.text for f in NAMES.find(text)] == ["Maria Gonzalez", "Sean O'Brien", "McDonald"]


def test_only_full_names_among_person_entities_count():
    text = "Li is lithium. Ask Pieter de Vries's team, Nickel Smith or Regards, Ada Lovelace"
    entities = [("PERSON", 0, 2), ("PERSON", 19, 36), ("GPE", 44, 56), ("PERSON", 69, 81)]
    found = names_from_entities(text, entities, NAMES.find(text))
    assert [f.text for f in found] == ["Pieter de Vries", "Ada Lovelace"]  # lone "Li" dropped, cue and entity merged


def test_a_checked_kind_wins_over_an_overlapping_name():
    found = find_personal_data("Regards, Ada Lovelace at ada@example.com", NAMES)
    assert [(f.kind, f.text) for f in found] == [("person_name", "Ada Lovelace"), ("email", "ada@example.com")]


def chat(*turns):
    roles = ["user", "assistant"] * len(turns)
    return {"messages": [{"role": role, "content": text} for role, text in zip(roles, turns)]}


def test_chat_jsonl_keeps_structure_and_uses_one_placeholder_per_value(tmp_path):
    rows = [
        chat("Mail JANE@example.com or call (415) 555-2671.", "I will write to jane@example.com."),
        {"messages": [{"role": "user", "content": "Same number: +1 415 555 2671", "name": "u1"},
                      {"role": "assistant", "content": "Noted, Dear Maria Gonzalez.", "weight": 0},
                      {"role": "user", "content": "And bob@example.org?"},
                      {"role": "assistant", "content": "Yes."}]},
        chat("What is the symbol for gold?", "Au."),
    ]
    source = tmp_path / "train.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    report = redact_file(source, tmp_path / "out" / "train.jsonl", NAMES)
    out_lines = (tmp_path / "out" / "train.jsonl").read_text().split("\n")
    redacted = [json.loads(line) for line in out_lines if line]
    assert redacted[0] == chat("Mail <EMAIL_1> or call <PHONE_1>.", "I will write to <EMAIL_1>.")
    assert redacted[1]["messages"][0] == {"role": "user", "content": "Same number: <PHONE_1>", "name": "u1"}
    assert redacted[1]["messages"][1] == {"role": "assistant", "content": "Noted, Dear <PERSON_NAME_1>.", "weight": 0}
    assert redacted[1]["messages"][2]["content"] == "And <EMAIL_2>?"
    assert out_lines[2] == json.dumps(rows[2])  # untouched rows are written back as they were
    assert report.counts == {"email": 3, "phone": 2, "person_name": 1}
    assert report.distinct == {"email": 2, "phone": 1, "person_name": 1}
    assert (report.rows, report.rows_changed) == (3, 2)
    assert [(r.line, r.field, r.placeholder) for r in report.redactions[:2]] == [
        (1, "messages[0].content", "<EMAIL_1>"), (1, "messages[0].content", "<PHONE_1>")]
    assert "example.com" not in report.model_dump_json()


def test_instruction_rows_redact_content_fields_only(tmp_path):
    row = {"instruction": "Summarise the ticket from ip 10.1.2.3", "input": "SSN 123-45-6789", "output": "Done.",
           "source": "ticket 10.1.2.3"}
    source = tmp_path / "instr.jsonl"
    source.write_text(json.dumps(row) + "\n")
    redact_file(source, tmp_path / "redacted.jsonl", NAMES)
    assert json.loads((tmp_path / "redacted.jsonl").read_text()) == {
        "instruction": "Summarise the ticket from ip <IPV4_1>", "input": "SSN <SSN_1>", "output": "Done.",
        "source": "ticket 10.1.2.3"}


def test_prompt_completion_and_sharegpt_rows_redact_their_text_and_keep_speakers(tmp_path):
    rows = [{"prompt": "Mail jane.doe@example.com", "completion": "Sent to jane.doe@example.com."},
            {"conversations": [{"from": "human", "value": "My ip is 10.1.2.3"}, {"from": "gpt", "value": "Noted."}]}]
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    report = redact_file(source, tmp_path / "redacted.jsonl", NAMES)
    assert [json.loads(line) for line in (tmp_path / "redacted.jsonl").read_text().splitlines()] == [
        {"prompt": "Mail <EMAIL_1>", "completion": "Sent to <EMAIL_1>."},
        {"conversations": [{"from": "human", "value": "My ip is <IPV4_1>"}, {"from": "gpt", "value": "Noted."}]}]
    assert [(r.line, r.field) for r in report.redactions] == [(1, "prompt"), (1, "completion"),
                                                               (2, "conversations[0].value")]


def test_text_files_report_the_line_of_each_finding(tmp_path):
    source = tmp_path / "notes.txt"
    source.write_text("First paragraph.\n\nWrite to\nann@example.com today.\n\n\nCard 4111-1111-1111-1111 and ann@example.com.\n")
    report = redact_file(source, tmp_path / "notes.redacted.txt", NAMES)
    assert (tmp_path / "notes.redacted.txt").read_text() == (
        "First paragraph.\n\nWrite to\n<EMAIL_1> today.\n\n\nCard <CREDIT_CARD_1> and <EMAIL_1>.\n")
    assert [(r.line, r.kind) for r in report.redactions] == [(4, "email"), (7, "credit_card"), (7, "email")]
    assert (report.format, report.rows, report.rows_changed) == ("text", 3, 2)


def test_unreadable_rows_stop_the_redaction_before_anything_is_written(tmp_path):
    source = tmp_path / "bad.jsonl"
    source.write_text(json.dumps(chat("a@example.com", "ok")) + "\n{not json\n[1, 2]\n")
    with pytest.raises(RedactionError, match=r"bad.jsonl:2: invalid JSON.*\n.*bad.jsonl:3: row is not a JSON object"):
        redact_file(source, tmp_path / "out.jsonl", NAMES)
    assert not (tmp_path / "out.jsonl").exists()
    with pytest.raises(RedactionError, match="output is the input file"):
        redact_file(source, source, NAMES)


def test_a_named_ner_model_that_is_missing_is_an_error_not_a_fallback():
    with pytest.raises(MissingNerModel, match="python -m spacy download no_such_model"):
        name_detector("no_such_model")


@pytest.mark.skipif(not ner_model_installed("en_core_web_sm"), reason="spaCy's en_core_web_sm is not installed")
def test_spacy_finds_bare_names():
    found = SpacyNames().find("Yesterday Grace Hopper met Alan Turing's sister.")
    assert [f.text for f in found] == ["Grace Hopper", "Alan Turing"]


def test_cli_redacts_and_lists_findings_by_line(tmp_path):
    from typer.testing import CliRunner

    from tunesmith.cli import app

    source = tmp_path / "train.jsonl"
    source.write_text(json.dumps(chat("I am Priya Raman, mail priya@example.com", "Hello.")) + "\n")
    result = CliRunner().invoke(app, ["data", "redact", str(source), str(tmp_path / "out.jsonl"), "--no-ner"])
    assert result.exit_code == 0, result.output
    assert "2 value(s) redacted in 1 of 1 rows" in result.output
    assert "train.jsonl:1: messages[0].content: email → <EMAIL_1>" in result.output
    assert "priya@" not in result.output and "priya@" not in (tmp_path / "out.jsonl").read_text()
    missing = CliRunner().invoke(app, ["data", "redact", str(source), str(tmp_path / "x.jsonl"), "--ner-model", "nope"])
    assert missing.exit_code == 1 and not (tmp_path / "x.jsonl").exists()
