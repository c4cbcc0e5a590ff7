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
and reports, per statement, which lock it takes, what breaks, and the safe alternative. Lint
itself never connects to a database; run against one, the harness hands it facts from the
catalog (see "Judged against the database"). This file is generated from the rule registry
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

## Judged against the database

Many dangers depend on the table: an index build that blocks writes for minutes on a big table
takes a millisecond on an empty one. Each rule says when it bites (the **Bites** column below):

* **always**: wrong or dangerous whatever the table.
* **with rows**: a scan, rewrite or index build under a strong lock, as long as the table is
  big. Info when the table is created earlier in this run or within the small-table limits.
* **if not empty**: fails or loses data as soon as there is one row. Info when the table is
  created earlier in this run or empty (no data pages).
* **if in use**: breaks running code, or queues its queries behind the lock. Info only when
  the table is created earlier in this run (an existing table may be in use, however small).

A finding of the last three kinds is also info when the statement says `IF EXISTS` and the
object does not exist (`DROP TABLE IF EXISTS nothing_here`, `ALTER TABLE IF EXISTS …`).

* **Against a database** (`plan`, `preflight`, `apply`, `apply --dry-run`, `run`, `rollback`):
  the harness reads, in one catalog query before anything runs, whether each relation the
  files name exists (bare names resolved through the session's `search_path`), what it is and
  how big its table is: a row estimate (`reltuples` scaled to the current pages, as the
  planner does; a table never analysed counts as full pages, an upper bound) and its size with
  indexes and TOAST, summed over partitions. A table another session holds locked exclusively
  is not measured (that would queue behind the lock): its findings keep their severity. A
  finding judged harmless becomes **info** and its message says why
  (`table orders is created by 001_init.up.sql in this run: it is empty and unused`,
  `public.tags is small: about 120 rows, 48.0 KiB, within [lint] small_table_rows = 10000 and
  small_table_bytes = 8388608`); a kept one says what lint found (`public.orders holds about
  100,000 rows, 5.6 MiB, over [lint] small_table_rows = 10000`). A table counts as created in
  this run when an earlier pending file (or an earlier statement of the same file) creates
  it; `CREATE TABLE IF NOT EXISTS` of a table the catalog already has does not count.
* **Without a database** (`migrate-safe lint`, `verify`): findings keep their severity and the
  message says under which condition they bite, e.g. `…; how long it lasts grows with the
  table's rows; on a new or empty table it does not matter; table orders is created by
  001_init.up.sql: where both are pending it is new`.
* **Small-table limits**, in the settings file (both must hold; with `0`, only empty tables
  count):

      [lint]
      small_table_rows = 10000      # estimated rows
      small_table_bytes = 8388608   # bytes with indexes and TOAST (8 MiB)

  Up to these sizes an index build, a rewrite or a validation scan takes milliseconds.
* **Down files never block apply**: `apply`, `run`, `preflight` and `plan` lint the up files
  that will run. `rollback` lints the down files it is about to run (the copies stored in the
  ledger at apply time when there are any), judged against the tables as they are then, and
  refuses with exit 1, before rolling anything back, while an error remains.
* **A refusal names the way out**: the `-- migrate-safe:allow=…` directive with the rule ids,
  the `[lint.severity]` setting (and the small-table limits when the table's size decided),
  and the flags (`--warn-on Lint`; `--force` for apply and run).

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
    rows = ["| Id | Name | Severity | Bites | What it catches |", "|---|---|---|---|---|"]
    for rule in sorted(RULES.values(), key=lambda r: r.id):
        anchor = rule.id.lower()
        rows.append(
            f"| [{rule.id}](#{anchor}) | {rule.name} | {rule.severity.value} | "
            f"{rule.bites.value} | {rule.summary} |"
        )
    return "\n".join(rows)


def _section(rule: Rule) -> str:
    return f"""\
### {rule.id}

**{rule.name}** · severity **{rule.severity.value}** · bites **{rule.bites.value}**

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
