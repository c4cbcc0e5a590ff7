"""A canonical, sorted description of a database schema, read from the catalogs, and its sha256.

Same schema → same hash, on any server of the same major version and across dump/restore:
no OIDs, owners, grants, physical column numbers, sequence positions or the ledger schema.
(A `pg_dump --schema-only` hash is not stable: recent pg_dump writes a random `\\restrict` key.)

Each section is one query that returns one text: its lines, sorted in the C collation. Doing
the formatting and sorting in the server keeps a 10,000-table catalog to a few round trips.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import psycopg

# Objects in these schemas are never the application's.
_SYSTEM = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'"
)
# Objects an extension created belong to the extension (its version is what matters).
_NOT_EXTENSION_MEMBER = (
    "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = {catalog}::regclass"
    " AND d.objid = {oid} AND d.deptype = 'e')"
)


def _managed(catalog: str, oid: str) -> str:
    """WHERE fragment: an object in an application schema (not system, not the ledger)."""
    member = _NOT_EXTENSION_MEMBER.format(catalog=f"'{catalog}'", oid=oid)
    return f"{_SYSTEM} AND n.nspname <> @ledger@ AND {member}"


def _comment(catalog: str, oid: str, subid: str = "0") -> str:
    """A join to the object's comment: one hash join, not a lookup function per row."""
    return (
        f" LEFT JOIN pg_description dsc ON dsc.objoid = {oid}"
        f" AND dsc.classoid = '{catalog}'::regclass AND dsc.objsubid = {subid}"
    )


def _lines(select: str) -> str:
    """One text of sorted lines; `%` doubled for psycopg, the ledger schema as a parameter."""
    aggregate = "coalesce(string_agg(line, E'\\n' ORDER BY line COLLATE \"C\"), '')"
    query = f"SELECT {aggregate} FROM ({select}) s"
    return query.replace("%", "%%").replace("@ledger@", "%(ledger)s")


def _one_line(expression: str) -> str:
    """Definitions span lines; escape them so one object stays one line."""
    return f"replace(replace({expression}, E'\\\\', E'\\\\\\\\'), E'\\n', E'\\\\n')"


SECTIONS: dict[str, str] = {
    # Schemas, with their comments (a schema created by hand is drift too).
    "schemas": _lines(
        "SELECT format('%I', n.nspname) || coalesce(' -- ' || dsc.description, '') AS line"
        " FROM pg_namespace n"
        + _comment("pg_namespace", "n.oid")
        + f" WHERE {_managed('pg_namespace', 'n.oid')}"
    ),
    "extensions": _lines(
        "SELECT format('%I %s in %I', e.extname, e.extversion, n.nspname) AS line"
        " FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
        " WHERE e.extname <> 'plpgsql'"
    ),
    # Tables and other relations: kind, persistence, partitioning, RLS, comment.
    "relations": _lines(
        "SELECT format('%I.%I %s%s%s%s', n.nspname, c.relname, c.relkind,"
        " CASE c.relpersistence WHEN 'u' THEN ' unlogged' ELSE '' END,"
        " CASE WHEN c.relkind = 'p' THEN ' partition by ' || pg_get_partkeydef(c.oid) ELSE '' END,"
        " CASE WHEN c.relrowsecurity THEN ' rls' ELSE '' END)"
        " || coalesce(' -- ' || " + _one_line("dsc.description") + ", '') AS line"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        + _comment("pg_class", "c.oid")
        + " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')"
        f" AND {_managed('pg_class', 'c.oid')}"
    ),
    # Columns in order: the position counts live columns only, so a dump/restore (which
    # compacts dropped-column gaps) gives the same lines, while a reordering does not.
    "columns": _lines(
        "SELECT format('%I.%I %s %I %s%s%s%s%s%s', n.nspname, c.relname,"
        " lpad((row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum))::text, 4, '0'),"
        " a.attname, format_type(a.atttypid, a.atttypmod),"
        " CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,"
        " CASE a.attidentity WHEN 'a' THEN ' identity always' WHEN 'd' THEN ' identity by default'"
        " ELSE '' END,"
        " CASE WHEN a.attgenerated = 's' THEN ' generated ' ELSE '' END,"
        " coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), ''),"
        " CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation"
        " THEN ' collate ' || co.collname ELSE '' END)"
        " || coalesce(' -- ' || " + _one_line("dsc.description") + ", '') AS line"
        " FROM pg_attribute a"
        " JOIN pg_class c ON c.oid = a.attrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_type t ON t.oid = a.atttypid"
        " LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum"
        " LEFT JOIN pg_collation co ON co.oid = a.attcollation"
        + _comment("pg_class", "c.oid", "a.attnum")
        + " WHERE a.attnum > 0 AND NOT a.attisdropped"
        " AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')"
        f" AND {_managed('pg_class', 'c.oid')}"
    ),
    # Constraints of tables and domains; pg_get_constraintdef shows NOT VALID too.
    "constraints": _lines(
        "SELECT format('%I.%I %I ', n.nspname, coalesce(c.relname, t.typname), k.conname)"
        " || " + _one_line("pg_get_constraintdef(k.oid)") + ""
        " || coalesce(' -- ' || " + _one_line("dsc.description") + ", '')"
        " AS line FROM pg_constraint k"
        " JOIN pg_namespace n ON n.oid = k.connamespace"
        " LEFT JOIN pg_class c ON c.oid = k.conrelid"
        " LEFT JOIN pg_type t ON t.oid = k.contypid"
        + _comment("pg_constraint", "k.oid")
        + f" WHERE {_managed('pg_constraint', 'k.oid')}"
    ),
    "indexes": _lines(
        "SELECT "
        + _one_line("pg_get_indexdef(i.indexrelid)")
        + " || CASE WHEN i.indisvalid THEN '' ELSE ' -- INVALID' END"
        " || coalesce(' -- ' || " + _one_line("dsc.description") + ", '')"
        " AS line FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        + _comment("pg_class", "c.oid")
        + f" WHERE {_managed('pg_class', 'c.oid')}"
    ),
    "views": _lines(
        "SELECT format('%I.%I ', n.nspname, c.relname) || "
        + _one_line("pg_get_viewdef(c.oid, true)")
        + " AS line FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE c.relkind IN ('v', 'm') AND {_managed('pg_class', 'c.oid')}"
    ),
    "functions": _lines(
        "SELECT CASE WHEN p.prokind IN ('f', 'p') THEN "
        + _one_line("pg_get_functiondef(p.oid)")
        + " ELSE format('%I.%I(%s) %s', n.nspname, p.proname,"
        " pg_get_function_identity_arguments(p.oid), p.prokind) END"
        " || coalesce(' -- ' || " + _one_line("dsc.description") + ", '')"
        " AS line FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        + _comment("pg_proc", "p.oid")
        + f" WHERE {_managed('pg_proc', 'p.oid')}"
    ),
    "triggers": _lines(
        "SELECT "
        + _one_line("pg_get_triggerdef(g.oid)")
        + " || CASE g.tgenabled WHEN 'D' THEN ' -- disabled' ELSE '' END AS line"
        " FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE NOT g.tgisinternal AND {_managed('pg_class', 'c.oid')}"
    ),
    # Sequence definitions, never their current value.
    "sequences": _lines(
        "SELECT format('%I.%I %s start %s increment %s min %s max %s cache %s%s', n.nspname,"
        " c.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin,"
        " s.seqmax, s.seqcache, CASE WHEN s.seqcycle THEN ' cycle' ELSE '' END) AS line"
        " FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE {_managed('pg_class', 'c.oid')}"
    ),
    # Enums (labels in their order), domains, ranges and composite types.
    "types": _lines(
        "SELECT format('%I.%I %s', n.nspname, t.typname, CASE t.typtype"
        " WHEN 'e' THEN 'enum (' || (SELECT string_agg(quote_literal(e.enumlabel), ', '"
        " ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid) || ')'"
        " WHEN 'd' THEN 'domain ' || format_type(t.typbasetype, t.typtypmod)"
        " || CASE WHEN t.typnotnull THEN ' not null' ELSE '' END"
        " || coalesce(' default ' || t.typdefault, '')"
        " WHEN 'r' THEN 'range of ' || (SELECT format_type(r.rngsubtype, NULL) FROM pg_range r"
        " WHERE r.rngtypid = t.oid)"
        " ELSE 'composite' END)"
        " || coalesce(' -- ' || " + _one_line("dsc.description") + ", '') AS line"
        " FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
        " LEFT JOIN pg_class c ON c.oid = t.typrelid"
        + _comment("pg_type", "t.oid")
        + " WHERE (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND c.relkind = 'c'))"
        f" AND {_managed('pg_type', 't.oid')}"
    ),
    "policies": _lines(
        "SELECT format('%I.%I %I %s %s using %s check %s', n.nspname, c.relname, p.polname,"
        " p.polcmd, CASE WHEN p.polpermissive THEN 'permissive' ELSE 'restrictive' END,"
        " coalesce(pg_get_expr(p.polqual, p.polrelid), '-'),"
        " coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '-')) AS line"
        " FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE {_managed('pg_class', 'c.oid')}"
    ),
}


@dataclass(frozen=True)
class Fingerprint:
    hash: str
    sections: dict[str, list[str]] = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"fingerprint": self.hash, "objects": self.sections}


def _digest(sections: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(sections):
        digest.update(f"[{name}]\n{sections[name]}\n".encode())
    return digest.hexdigest()


def fingerprint(conn: psycopg.Connection[Any], ledger_schema: str) -> Fingerprint:
    """Read the schema of the connected database (excluding the ledger schema)."""
    texts: dict[str, str] = {}
    with conn.transaction():  # one snapshot for every section
        conn.execute("SET LOCAL search_path = ''")  # fully qualified names in every definition
        # Large catalogs sort tens of thousands of lines: in memory, without parallel workers
        # whose start-up costs more than they save on catalog-sized inputs.
        conn.execute("SET LOCAL work_mem = '64MB'")
        conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        for name, query in SECTIONS.items():
            row = conn.execute(query, {"ledger": ledger_schema}).fetchone()
            texts[name] = str(row[0]) if row else ""
    sections = {name: text.split("\n") if text else [] for name, text in texts.items()}
    return Fingerprint(_digest(texts), sections)


@dataclass(frozen=True)
class SectionDiff:
    section: str
    only_in_first: list[str]
    only_in_second: list[str]


def diff(first: Fingerprint, second: Fingerprint) -> list[SectionDiff]:
    """What differs, section by section: lines present on one side only."""
    differences: list[SectionDiff] = []
    for name in sorted(first.sections.keys() | second.sections.keys()):
        a, b = set(first.sections.get(name, [])), set(second.sections.get(name, []))
        if a != b:
            differences.append(SectionDiff(name, sorted(a - b), sorted(b - a)))
    return differences


def describe_diff(differences: list[SectionDiff], first: str, second: str) -> str:
    lines: list[str] = []
    for difference in differences:
        lines.append(f"[{difference.section}]")
        lines += [f"  - {line}   (only in {first})" for line in difference.only_in_first]
        lines += [f"  + {line}   (only in {second})" for line in difference.only_in_second]
    return "\n".join(lines)
