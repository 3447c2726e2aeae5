"""What happens to personal data in a training file: `refuse` it, `redact` it, or `allow` it.

Run as: library code; training applies `data.pii` before it reads a file, and the server applies the API
key's policy to each upload.

`refuse` stops on any value of the checked kinds (emails, phones, cards, IBANs, national ids, IP and
street addresses: `data/pii.py`, the findings `tunesmith data check` lists) and names each by line and
field. Person names alone never refuse a file: names are everywhere in legitimate data (the elements
example names its discoverers) and a detector for them guesses. `redact` replaces the checked kinds and,
where a detector is installed, person names (`data/redact.py`, consistent placeholders) and the redacted
copy is what trains or is stored. `allow` trains on the file as it is; its findings are still counted.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tunesmith.data.person_names import NameDetector, name_detector
from tunesmith.data.pii import PiiFinding
from tunesmith.data.redact import Redaction, redact_content, redact_file

PiiPolicy = Literal["refuse", "redact", "allow"]
PII_POLICIES: tuple[str, ...] = ("refuse", "redact", "allow")


class PersonalDataRefused(ValueError):
    """The policy is `refuse` and the file holds personal data; `findings` says where."""

    def __init__(self, message: str, findings: list[Redaction]):
        super().__init__(message)
        self.findings = findings


class CheckedKindsOnly:
    """The name detector for scanning: none, so only the checked kinds count (see the module docstring)."""

    description = "none: refusal looks for the checked kinds only"

    def find(self, text: str) -> list[PiiFinding]:
        return []


@dataclass
class PiiOutcome:
    policy: PiiPolicy
    path: Path  # the file to use: the redacted copy under `redact`, else the file itself
    findings: dict[str, int] = field(default_factory=dict)  # kind → values found in the file as given
    redacted: dict[str, int] = field(default_factory=dict)  # kind → values replaced (redact only)
    name_detector: str | None = None  # what looked for person names while redacting

    def summary(self) -> dict:
        return {"policy": self.policy, "findings": self.findings, "redacted": self.redacted,
                "name_detector": self.name_detector}


def scan_personal_data(path: Path) -> list[Redaction]:
    """Every checked-kind value in the file's trained text, with its line and field (nothing is written)."""
    return redact_content(Path(path), CheckedKindsOnly())[1].redactions


def refusal_message(label: str, findings: list[Redaction], remedy: str, shown: int = 20) -> str:
    """`label:line: field: kind` per finding (the values themselves never), then what to do."""
    lines = [f"{label}:{f.line}: {f.field + ': ' if f.field else ''}{f.kind}" for f in findings[:shown]]
    more = [f"… and {len(findings) - shown} more"] if len(findings) > shown else []
    return "\n".join([f"{label}: {len(findings)} personal data value(s) found and the PII policy is refuse:",
                      *lines, *more, f"— {remedy}"])


def apply_pii_policy(path: Path, policy: PiiPolicy, redacted_path: Path, remedy: str, label: str | None = None,
                     names: NameDetector | None = None) -> PiiOutcome:
    """Refuse (PersonalDataRefused), redact into `redacted_path`, or allow `path`; `label` names it in messages."""
    path = Path(path)
    findings = scan_personal_data(path)
    counts = dict(Counter(finding.kind for finding in findings))
    if policy == "refuse" and findings:
        raise PersonalDataRefused(refusal_message(label or str(path), findings, remedy), findings)
    if policy != "redact":
        return PiiOutcome(policy, path, counts)
    report = redact_file(path, redacted_path, names or name_detector())
    return PiiOutcome(policy, Path(redacted_path), counts, dict(report.counts), report.name_detector)
