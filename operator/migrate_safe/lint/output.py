"""Lint reports: text for people, JSON for tools, GitHub annotations, SARIF 2.1.0."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import migrate_safe.lint.rules  # noqa: F401  (importing the rules fills RULES)
from migrate_safe import __version__
from migrate_safe.lint.model import Finding, Rule, Severity
from migrate_safe.lint.registry import RULES
from migrate_safe.lint.suppress import way_out

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_GITHUB_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}
_SARIF_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def summary(findings: Sequence[Finding]) -> dict[str, int]:
    """Counts by severity of the findings that count, plus how many were suppressed."""
    counts = Counter(f.severity.value for f in findings if f.active)
    result = {severity.value: counts.get(severity.value, 0) for severity in Severity}
    result["suppressed"] = sum(1 for f in findings if not f.active)
    return result


def refusal(errors: Sequence[Finding], *, flags: str = "", directive: bool = True) -> str:
    """One line for a run that lint errors refuse: where they are, why the first one bites,
    and the way out (see `way_out`)."""
    where = ", ".join(f"{f.rule} {Path(f.file).name}:{f.line}" for f in errors[:5])
    more = f" and {len(errors) - 5} more" if len(errors) > 5 else ""
    first = errors[0]
    return (
        f"{len(errors)} lint error(s): {where}{more} ({first.rule}: {first.message}); "
        + way_out(errors, flags=flags, directive=directive)
    )


def render_text(findings: Sequence[Finding]) -> str:
    lines: list[str] = []
    for finding in findings:
        where = f"{finding.file}:{finding.line}:{finding.column}"
        if finding.active:
            lines.append(f"{where}: {finding.rule} {finding.severity.value}: {finding.message}")
            lines.append(f"  safe alternative: {finding.safe_alternative}")
        else:
            lines.append(
                f"{where}: {finding.rule} {finding.severity.value} (suppressed by "
                f"{finding.suppressed_by}): {finding.message}"
            )
    counts = summary(findings)
    lines.append(
        f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info, "
        f"{counts['suppressed']} suppressed"
    )
    return "\n".join(lines) + "\n"


def render_json(findings: Sequence[Finding]) -> str:
    document = {"findings": [f.as_dict() for f in findings], "summary": summary(findings)}
    return json.dumps(document, indent=2) + "\n"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(findings: Sequence[Finding]) -> str:
    """Workflow commands (`::error file=…,line=…::…`); suppressed findings are left out."""
    lines = []
    for finding in findings:
        if not finding.active:
            continue
        properties = (
            f"file={_escape_property(finding.file)},line={finding.line},col={finding.column},"
            f"title={finding.rule}"
        )
        message = f"{finding.message}\nsafe alternative: {finding.safe_alternative}"
        level = _GITHUB_LEVEL[finding.severity]
        lines.append(f"::{level} {properties}::{_escape_data(message)}")
    return "".join(line + "\n" for line in lines)


def _sarif_rule(rule: Rule) -> dict[str, object]:
    return {
        "id": rule.id,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.why},
        "help": {"text": f"Safe alternative: {rule.safe_alternative}"},
        "defaultConfiguration": {"level": _SARIF_LEVEL[rule.severity]},
        "properties": {"tags": [rule.family], "lock": rule.lock, "bites": rule.bites.value},
    }


def _artifact_uri(file: str) -> str:
    path = Path(file)
    return path.as_uri() if path.is_absolute() else path.as_posix()


def _sarif_result(finding: Finding, rule_index: Mapping[str, int]) -> dict[str, object]:
    result: dict[str, object] = {
        "ruleId": finding.rule,
        "level": _SARIF_LEVEL[finding.severity],
        "message": {"text": f"{finding.message}. Safe alternative: {finding.safe_alternative}"},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": _artifact_uri(finding.file)},
                    "region": {"startLine": finding.line, "startColumn": finding.column},
                }
            }
        ],
    }
    if finding.rule in rule_index:
        result["ruleIndex"] = rule_index[finding.rule]
    if finding.suppressed_by is not None:
        kind = "external" if finding.suppressed_by.startswith("config") else "inSource"
        result["suppressions"] = [{"kind": kind, "justification": finding.suppressed_by}]
    return result


def render_sarif(findings: Sequence[Finding]) -> str:
    rules = [RULES[rule_id] for rule_id in sorted(RULES)]
    rule_index = {rule.id: index for index, rule in enumerate(rules)}
    document = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "migrate-safe",
                        "version": __version__,
                        "informationUri": "https://github.com/migrate-safe/migrate-safe",
                        "rules": [_sarif_rule(rule) for rule in rules],
                    }
                },
                "results": [_sarif_result(f, rule_index) for f in findings],
            }
        ],
    }
    return json.dumps(document, indent=2) + "\n"


FORMATS: dict[str, Callable[[Sequence[Finding]], str]] = {
    "text": render_text,
    "json": render_json,
    "github": render_github,
    "sarif": render_sarif,
}


def render(findings: Sequence[Finding], output_format: str = "text") -> str:
    return FORMATS[output_format](findings)
