"""The harness → operator contract: a result survives the trip through its JSON form, whatever
its values, and what is not a result is refused rather than half-read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from migrate_safe.config import Redactor
from migrate_safe.outcome import LedgerDetails, LedgerOutcome, RunReport
from migrate_safe.report import TERMINATION_LIMIT, Reporter
from migrate_safe.results import (
    BackupInfo,
    CheckProblem,
    ErrorInfo,
    LedgerView,
    PhaseResult,
    PlannedMigration,
    PublishedPlan,
)

versions = st.lists(st.integers(1, 2**40), max_size=5).map(tuple)
text = st.text(max_size=30)
results = st.builds(
    PhaseResult,
    command=st.sampled_from(["preflight", "apply", "rehearse", "rollback"]),
    outcome=st.sampled_from(["succeeded", "failed", "interrupted"]),
    exit_code=st.integers(0, 143),
    run_id=text,
    ledger=st.none()
    | st.builds(
        LedgerView,
        current_version=st.none() | st.integers(1, 99),
        latest_version=st.none() | st.integers(0, 99),
        pending_count=st.integers(0, 99),
        pending=versions,
        missing_from_source=versions,
        dirty_versions=versions,
    ),
    fingerprint=st.none() | text,
    applied=versions,
    rolled_back=versions,
    preflight_problems=st.lists(st.builds(CheckProblem, text, text, text), max_size=3).map(tuple),
    backup=st.none() | st.builds(BackupInfo, text, st.integers(0, 10**12), text, text),
    plan=st.none()
    | st.builds(
        PublishedPlan,
        hash=text,
        direction=st.just("up"),
        migrations=st.lists(
            st.builds(PlannedMigration, st.integers(1, 9), text, st.booleans()), max_size=3
        ).map(tuple),
        lint=st.dictionaries(text, st.integers(0, 9), max_size=3),
    ),
    error=st.none() | st.builds(ErrorInfo, text, st.booleans(), st.none() | text),
    truncated=st.booleans(),
)


@given(results)
def test_a_result_survives_its_json_form(result: PhaseResult) -> None:
    assert PhaseResult.from_json(json.loads(json.dumps(result.to_json()))) == result


@pytest.mark.parametrize("junk", [{}, {"command": "apply"}, {"command": "x", "outcome": 1}, []])
def test_what_is_not_a_result_is_refused(junk: object) -> None:
    with pytest.raises(ValueError, match="not a migrate-safe result"):
        PhaseResult.from_json(junk)  # type: ignore[arg-type]


def test_a_long_pending_list_is_shortened_but_its_count_is_not(tmp_path: Path) -> None:
    termination = tmp_path / "termination-log"
    reporter = Reporter("preflight", tmp_path / "logs", Redactor(), termination)
    pending = list(range(1, 5001))
    ledger = LedgerOutcome(None, LedgerDetails(pending=pending))
    reporter.finish(0, "succeeded", RunReport(ledger=ledger))
    raw = termination.read_text()
    result = PhaseResult.from_json(json.loads(raw))
    assert len(raw.encode()) <= TERMINATION_LIMIT
    assert result.truncated and result.ledger is not None
    assert result.ledger.pending_count == 5000 and 0 < len(result.ledger.pending) < 5000
    assert result.ledger.pending == tuple(pending[: len(result.ledger.pending)])
