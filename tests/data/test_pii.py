import pytest

from tunesmith.data.pii import find_pii, iban_valid, luhn_valid, masked_snippets, redact_pii


@pytest.mark.parametrize(
    ("text", "kind", "found"),
    [
        ("write to jane.doe+tag@example.co.uk today", "email", "jane.doe+tag@example.co.uk"),
        ("call +44 20 7946 0958 now", "phone", "+44 20 7946 0958"),
        ("call +1 (415) 555-2671 now", "phone", "+1 (415) 555-2671"),
        ("call (415) 555-2671 now", "phone", "(415) 555-2671"),
        ("call 415.555.2671 now", "phone", "415.555.2671"),
        ("card 4111 1111 1111 1111 ok", "credit_card", "4111 1111 1111 1111"),
        ("card 5500-0000-0000-0004 ok", "credit_card", "5500-0000-0000-0004"),
        ("ssn 123-45-6789 ok", "ssn", "123-45-6789"),
        ("host 192.168.0.1.", "ipv4", "192.168.0.1"),
        ("iban GB82 WEST 1234 5698 7654 32 ok", "iban", "GB82 WEST 1234 5698 7654 32"),
        ("iban DE89370400440532013000 ok", "iban", "DE89370400440532013000"),
    ],
)
def test_each_kind_is_found(text, kind, found):
    assert [(f.kind, f.text) for f in find_pii(text)] == [(kind, found)]
    finding = find_pii(text)[0]
    assert text[finding.start : finding.end] == found


@pytest.mark.parametrize(
    "decoy",
    [
        "Hydrogen weighs 1.0079 and carbon 12.011.",
        "In 1999, and again from 2023-2024, on 2024-01-15.",
        "Order 12345 shipped; ref #123456789; pi is 3.14159265358979.",
        "Card 4111 1111 1111 1112 fails Luhn.",
        "SSN 000-12-3456 and 666-12-3456 are never issued.",
        "Not an address: 256.1.1.1 or 1.2.3 or 10.0.0.",
        "IBAN GB82 WEST 1234 5698 7654 33 has a bad checksum.",
        "Release v3.10.4 uses 0000 0000 0000 0000 as a placeholder.",
        "user at example dot com, @handle, a@b",
    ],
)
def test_decoys_are_not_pii(decoy):
    assert find_pii(decoy) == []


def test_checksums():
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB82 WEST 1234 5698 7654 23")


def test_redaction_replaces_every_finding_and_keeps_the_rest():
    text = "Mail a.b@example.com or +33 1 23 45 67 89; card 4111-1111-1111-1111; ip 8.8.8.8."
    assert redact_pii(text) == "Mail [EMAIL] or [PHONE]; card [CREDIT_CARD]; ip [IPV4]."


def test_snippets_never_contain_the_data():
    text = "x" * 50 + " mail me at jane@example.com or 415-555-2671 " + "y" * 50
    findings = find_pii(text)
    snippets = masked_snippets(text, findings, context=20)
    assert len(snippets) == 2
    assert all("jane@" not in s and "2671" not in s for s in snippets)
    assert "[EMAIL]" in snippets[0] and snippets[0].startswith("…") and snippets[0].endswith("…")
