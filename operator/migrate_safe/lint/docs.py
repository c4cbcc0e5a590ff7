"""Generate docs/lint-rules.md from the rule registry, so the docs never drift from the code.

python -m migrate_safe.lint.docs > docs/lint-rules.md
"""

from __future__ import annotations

import re

import migrate_safe.lint.rules  # noqa: F401  (importing the rules fills the registry)
from migrate_safe.lint.model import Rule
from migrate_safe.lint.registry import RULES

FAMILIES = {
    "indexes": "Indexes",
    "columns": "Columns",
    "constraints": "Constraints",
    "destructive": "Destructive changes",
    "locking": "Locking and maintenance",
    "transactions": "Transactions and timeouts",
    "files": "Files, names and versions",
    "hygiene": "Schema hygiene",
}

# Examples carry markers the test-suite reads; in the docs they read as the lint flags.
_MARKERS = [
    (re.compile(r"^-- lint-fixture: pg-version=(\d+)$", re.M), r"-- (lint --pg-version \1)"),
    (
        re.compile(r"^-- lint-fixture: no-harness-timeouts$", re.M),
        "-- (lint --no-harness-timeouts)",
    ),
]

INTRO = """\
# Lint rules

`migrate-safe lint` parses every migration with PostgreSQL's own parser (pglast, libpg_query)
and reports, per statement, which lock it takes, what breaks, and the safe alternative. It never
connects to a database. This file is generated from the rule registry
(`python -m migrate_safe.lint.docs > docs/lint-rules.md`); a test keeps it in sync.

## Using it

    migrate-safe lint [--migrations-dir DIR] [--pg-version N] [--format text|json|github|sarif]
                      [--strict] [--no-harness-timeouts] [--lint-config migrate-safe.toml]

* **Exit code**: 0 when no error remains, 1 when at least one unsuppressed error remains
  (with `--strict`, warnings count too). Info findings never fail.
* **`--pg-version`** (default 15): rules follow the target server's behaviour, e.g. ADD COLUMN
  with a constant default rewrites on PostgreSQL 10 and older, REINDEX CONCURRENTLY needs 12,
  SET NOT NULL skips its scan after a validated CHECK from 12, DETACH PARTITION CONCURRENTLY
  needs 14.
* **`--no-harness-timeouts`**: the harness sets a short `lock_timeout` and retries by itself;
  when another tool may run the files, this flag turns on MS604.
* Lint learns the schema from the migrations it reads in version order: an index on a table
  created earlier in the same file is fine; a type change is checked against the column type an
  earlier migration declared; SET NOT NULL is accepted after a validated `CHECK (col IS NOT
  NULL)`.
* Down migrations are linted too. Dropping what the up migration created is their job, so data
  loss there is reported as MS405 (info) rather than MS401-MS404.

## Suppressing a finding

Every suppression is still reported, marked suppressed, with its reason.

* **Whole file**: a directive in the file's leading comments:
  `-- migrate-safe:allow=MS101,MS402`
* **One statement**: the same comment on one of the statement's lines or on the line right
  above it:

      -- migrate-safe:allow=MS401  (backed up, unused since release 42)
      DROP TABLE legacy_invoices;

* **Project-wide**: `migrate-safe.toml`:

      [lint]
      disable = ["MS802"]      # reported as suppressed by config
      [lint.severity]
      MS102 = "error"          # error | warning | info

## Output formats

`text` (`file:line:col: MS101 error: message` and `  safe alternative: …`), `json`
(`findings` with `rule, severity, file, line, column, message, safe_alternative,
suppressed_by`, and a `summary`), `github` (workflow annotations
`::error file=…,line=…,col=…,title=MS101::…`; suppressed findings are left out) and `sarif`
(SARIF 2.1.0 with every rule's metadata; suppressed findings carry `suppressions`).
"""


def _example(text: str) -> str:
    for pattern, replacement in _MARKERS:
        text = pattern.sub(replacement, text)
    return text


def _table() -> str:
    rows = ["| Id | Name | Severity | What it catches |", "|---|---|---|---|"]
    for rule in sorted(RULES.values(), key=lambda r: r.id):
        anchor = rule.id.lower()
        rows.append(
            f"| [{rule.id}](#{anchor}) | {rule.name} | {rule.severity.value} | {rule.summary} |"
        )
    return "\n".join(rows)


def _section(rule: Rule) -> str:
    return f"""\
### {rule.id}

**{rule.name}** · severity **{rule.severity.value}**

{rule.summary}.

* **Lock**: {rule.lock}
* **Why**: {rule.why}
* **Safe alternative**: {rule.safe_alternative}

Unsafe:

```sql
{_example(rule.unsafe_example)}
```

Safe:

```sql
{_example(rule.safe_example)}
```
"""


def render_docs() -> str:
    parts = [INTRO, "## All rules\n", _table(), ""]
    for family, title in FAMILIES.items():
        rules = sorted((r for r in RULES.values() if r.family == family), key=lambda r: r.id)
        parts.append(f"## {title}\n")
        parts.extend(_section(rule) for rule in rules)
    return "\n".join(parts)


if __name__ == "__main__":
    print(render_docs(), end="")
