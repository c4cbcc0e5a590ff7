"""A canonical, sorted description of a database schema, read from the catalogs, and its sha256.

Same schema → same hash, on any server of the same major version and across dump/restore.
Between majors the catalogs describe the same schema differently (NOT NULL constraints are
catalog rows from 18 on, columns gained compression in 14, …), so a fingerprint names the major
it was computed on: its first two digits (see `major_of`), and two fingerprints of different
majors are never reported as drift, only as not comparable.
It covers every kind of object `pg_dump --schema-only` writes for one database, with the
comments of every kind that can carry one (docs/safety.md has the list), and leaves out on
purpose what is not the schema's shape or would differ between two identical schemas: OIDs,
owners, grants and default privileges, security labels, physical column numbers, sequence
positions, collation library versions, materialized view contents, large objects, secrets
(subscription connection strings, user mapping options), extension members (the
extension's version stands for them) and the ledger schema.
(A `pg_dump --schema-only` hash is not stable: recent pg_dump writes a random `\\restrict` key.)

Each section is one query that returns one text: its lines, sorted in the C collation. All of
them run as one statement, and the server computes the sha256 too: a caller that only needs the
hash (`schema_hash`) gets 64 characters back, not the 3 MB of lines of a 10,000-table catalog,
in one round trip; `fingerprint` reads the lines as well, for the JSON output and for a diff.
Catalog columns differ between major versions (13 to 18): the few that do are chosen by the
server's major version, never assumed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any, TypedDict

import psycopg
from psycopg import sql

from migrate_safe.catalog import application_schema

# Every object created after initdb has an OID from here on (PostgreSQL's FirstNormalObjectId):
# how objects that live outside any schema (casts, languages, …) tell built-in from user-made.
_FIRST_USER_OID = 16384


def _not_extension_member(catalog: str, oid: str) -> str:
    """Objects an extension created belong to the extension (its version is what matters).
    Its members are read once, from the extensions' side of pg_depend, into a hashed list:
    probing pg_depend object by object costs more on a catalog of thousands of objects."""
    return (
        f"{oid} NOT IN (SELECT d.objid FROM pg_depend d WHERE d.refclassid ="
        f" 'pg_extension'::regclass AND d.deptype = 'e' AND d.classid = '{catalog}'::regclass)"
    )


def _managed(catalog: str, oid: str) -> str:
    """WHERE fragment: an object in an application schema, the ledger's left out
    (`{application}` is catalog.application_schema, filled in by `fingerprint`)."""
    return f"{{application}} AND {_not_extension_member(catalog, oid)}"


def _user_made(catalog: str, oid: str) -> str:
    """WHERE fragment for objects outside schemas: created after initdb, not by an extension."""
    return f"{oid} >= {_FIRST_USER_OID} AND {_not_extension_member(catalog, oid)}"


def _one_line(expression: str) -> str:
    """Definitions span lines; escape them so one object stays one line."""
    return f"replace(replace({expression}, E'\\\\', E'\\\\\\\\'), E'\\n', E'\\\\n')"


def _comment(catalog: str, oid: str, subid: str = "0") -> str:
    """A join to the object's comment: one hash join, not a lookup function per row."""
    return (
        f" LEFT JOIN pg_description dsc ON dsc.objoid = {oid}"
        f" AND dsc.classoid = '{catalog}'::regclass AND dsc.objsubid = {subid}"
    )


# The comment joined by _comment, as a line suffix.
_COMMENTED = " || coalesce(' -- ' || " + _one_line("dsc.description") + ", '')"


def _options(array: str, label: str) -> str:
    """`name=value` options (reloptions, FDW options) sorted, so their order never counts;
    the subquery runs only for the few objects that have options."""
    return (
        f" || CASE WHEN {array} IS NULL THEN '' ELSE ' {label} (' || (SELECT string_agg("
        f"{_one_line('o')}, ', ' ORDER BY o COLLATE \"C\") FROM unnest({array}) o) || ')' END"
    )


def _lines(select: str) -> str:
    """One text of sorted lines; `{application}` is filled in by psycopg.sql (see fingerprint).
    OFFSET 0 keeps the subquery whole: flattened into the aggregate, each line would be
    computed twice (once to aggregate, once to sort): twice every pg_get_indexdef."""
    aggregate = "coalesce(string_agg(line, E'\\n' ORDER BY line COLLATE \"C\"), '')"
    return f"SELECT {aggregate} FROM ({select} OFFSET 0) s"


_SCHEMAS = _lines(
    # A schema created by hand is drift too.
    "SELECT format('%I', n.nspname)" + _COMMENTED + " AS line"
    " FROM pg_namespace n"
    + _comment("pg_namespace", "n.oid")
    + f" WHERE {_managed('pg_namespace', 'n.oid')}"
)

_EXTENSIONS = _lines(
    "SELECT format('%I %s in %I', e.extname, e.extversion, n.nspname)" + _COMMENTED + " AS line"
    " FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
    + _comment("pg_extension", "e.oid")
    + " WHERE e.extname <> 'plpgsql'"
)

# Tables and other relations: kind, persistence, the type of a typed table (CREATE TABLE … OF),
# access method, partitioning, inheritance, storage parameters (the TOAST table's too),
# tablespace, replica identity, row-level security, a foreign table's server and options,
# comment.
_RELATIONS = _lines(
    "SELECT format('%I.%I %s', n.nspname, c.relname, c.relkind)"
    " || CASE c.relpersistence WHEN 'u' THEN ' unlogged' ELSE '' END"
    " || CASE WHEN c.reloftype <> 0 THEN ' of ' || c.reloftype::regtype::text ELSE '' END"
    " || coalesce(' using ' || quote_ident(am.amname), '')"
    " || CASE WHEN c.relkind = 'p' THEN ' partition by ' || pg_get_partkeydef(c.oid) ELSE '' END"
    " || coalesce(' inherits (' || inh.parents || ')', '')"
    " || CASE WHEN c.relispartition THEN ' ' || pg_get_expr(c.relpartbound, c.oid) ELSE '' END"
    " || CASE WHEN c.reloptions IS NULL AND tc.reloptions IS NULL THEN '' ELSE ' with (' ||"
    " (SELECT string_agg(o, ', ' ORDER BY o COLLATE \"C\") FROM (SELECT unnest(c.reloptions)"
    " UNION ALL SELECT 'toast.' || unnest(tc.reloptions)) r(o)) || ')' END"
    " || coalesce(' tablespace ' || quote_ident(ts.spcname), '')"
    " || CASE WHEN c.relkind NOT IN ('r', 'p') THEN '' WHEN c.relreplident = 'f'"
    " THEN ' replica identity full' WHEN c.relreplident = 'n' THEN ' replica identity nothing'"
    " WHEN c.relreplident = 'i' THEN ' replica identity index' ELSE '' END"
    " || CASE WHEN c.relrowsecurity THEN ' rls' ELSE '' END"
    " || CASE WHEN c.relforcerowsecurity THEN ' force rls' ELSE '' END"
    " || coalesce(' server ' || quote_ident(fs.srvname)"
    + _options("ft.ftoptions", "options")
    + ", '')"
    + _COMMENTED
    + " AS line"
    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " LEFT JOIN (SELECT i.inhrelid, string_agg(i.inhparent::regclass::text, ', '"
    " ORDER BY i.inhseqno) AS parents FROM pg_inherits i GROUP BY i.inhrelid) inh"
    " ON inh.inhrelid = c.oid"
    # Only TOAST tables with storage parameters matter: the others need not be joined.
    " LEFT JOIN pg_class tc ON tc.oid = c.reltoastrelid AND tc.reloptions IS NOT NULL"
    " LEFT JOIN pg_am am ON am.oid = c.relam"
    " LEFT JOIN pg_tablespace ts ON ts.oid = c.reltablespace"
    " LEFT JOIN pg_foreign_table ft ON ft.ftrelid = c.oid"
    " LEFT JOIN pg_foreign_server fs ON fs.oid = ft.ftserver"
    + _comment("pg_class", "c.oid")
    + " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')"
    f" AND {_managed('pg_class', 'c.oid')}"
)


# A column's position among the live columns of its table: its number less the dropped
# columns before it. Few tables have dropped columns, and one scan of pg_attribute finds them
# (`dropped` in _columns); numbering every column with a window would sort them all.
_LIVE_POSITION = (
    "(a.attnum - CASE WHEN dropped.attnums IS NULL THEN 0"
    " ELSE (SELECT count(*) FROM unnest(dropped.attnums) d WHERE d < a.attnum) END)"
)

# A default cannot refer to a column, so it is deparsed without its table (relation 0): the
# same text, without pg_get_expr opening and locking every table that has a default.
_DEFAULT = "pg_get_expr(ad.adbin, 0)"


def _columns(major: int) -> str:
    """Columns in order: the position counts live columns only, so a dump/restore (which
    compacts dropped-column gaps) gives the same lines, while a reordering does not.
    Storage, compression and statistics targets only when they differ from the default,
    as pg_dump writes them."""
    compression = (
        " || CASE a.attcompression WHEN 'p' THEN ' compression pglz'"
        " WHEN 'l' THEN ' compression lz4' ELSE '' END"
        if major >= 14  # attcompression is new in 14
        else ""
    )
    return _lines(
        "SELECT format('%I.%I %s %I %s', n.nspname, c.relname,"
        f" lpad({_LIVE_POSITION}::text, 4, '0'),"
        " a.attname, format_type(a.atttypid, a.atttypmod))"
        " || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END"
        " || CASE a.attidentity WHEN 'a' THEN ' identity always'"
        " WHEN 'd' THEN ' identity by default' ELSE '' END"
        " || CASE a.attgenerated"
        " WHEN 's' THEN ' generated always as (' || pg_get_expr(ad.adbin, ad.adrelid) || ') stored'"
        " WHEN 'v' THEN ' generated always as (' || pg_get_expr(ad.adbin, ad.adrelid) || ')'"
        f" ELSE coalesce(' default ' || {_DEFAULT}, '') END"
        " || CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation"
        " THEN ' collate ' || a.attcollation::regcollation::text ELSE '' END"
        " || CASE WHEN a.attstorage = t.typstorage THEN '' WHEN a.attstorage = 'p' THEN"
        " ' storage plain' WHEN a.attstorage = 'e' THEN ' storage external'"
        " WHEN a.attstorage = 'm' THEN ' storage main' ELSE ' storage extended' END"
        + compression
        # -1 (up to 16) or NULL (17 on) is the default target.
        + " || CASE WHEN a.attstattarget >= 0 THEN ' statistics ' || a.attstattarget ELSE '' END"
        + _options("a.attoptions", "with")
        + _options("a.attfdwoptions", "options")
        + _COMMENTED
        + " AS line FROM pg_attribute a"
        " JOIN pg_class c ON c.oid = a.attrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_type t ON t.oid = a.atttypid"
        # Half the columns of a catalog may have a default: one hash of pg_attrdef costs less
        # than an index probe per column, which the planner picks when the join is open to it.
        " LEFT JOIN (SELECT adrelid, adnum, adbin FROM pg_attrdef OFFSET 0) ad"
        " ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum"
        " LEFT JOIN (SELECT attrelid, array_agg(attnum) AS attnums FROM pg_attribute"
        " WHERE attisdropped GROUP BY attrelid) dropped ON dropped.attrelid = a.attrelid"
        + _comment("pg_class", "c.oid", "a.attnum")
        + " WHERE a.attnum > 0 AND NOT a.attisdropped"
        " AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')"
        f" AND {_managed('pg_class', 'c.oid')}"
    )


# Constraints of tables and domains; pg_get_constraintdef shows NOT VALID too.
_CONSTRAINTS = _lines(
    "SELECT format('%I.%I %I ', n.nspname, coalesce(c.relname, t.typname), k.conname)"
    " || " + _one_line("pg_get_constraintdef(k.oid)") + _COMMENTED + " AS line"
    " FROM pg_constraint k"
    " JOIN pg_namespace n ON n.oid = k.connamespace"
    " LEFT JOIN pg_class c ON c.oid = k.conrelid"
    " LEFT JOIN pg_type t ON t.oid = k.contypid"
    + _comment("pg_constraint", "k.oid")
    + f" WHERE {_managed('pg_constraint', 'k.oid')}"
)

# The btree operator classes pg_get_indexdef leaves unnamed on a column of their type: the
# default for exactly that type (not a domain: a domain's default is looked up by its base
# type), without an options function (so no index column can carry options).
_DEFAULT_BTREE_OPCLASSES = (
    "SELECT opc.oid, opc.opcintype FROM pg_opclass opc"
    " JOIN pg_am am ON am.oid = opc.opcmethod AND am.amname = 'btree'"
    " JOIN pg_type ty ON ty.oid = opc.opcintype AND ty.typtype <> 'd'"
    " WHERE opc.opcdefault AND NOT EXISTS (SELECT 1 FROM pg_amproc p"
    " WHERE p.amprocfamily = opc.opcfamily AND p.amprocnum = 5"
    " AND p.amproclefttype = opc.opcintype)"
)


def _plain_index(major: int) -> str:
    """pg_get_indexdef's text, written from the catalogs, for the index a catalog has most of:
    a btree on one plain column with its type's default operator class and the column's own
    collation, no predicate, no storage parameters, no INCLUDE or NULLS NOT DISTINCT. NULL
    for any other index, which pg_get_indexdef deparses. pg_get_indexdef looks the default
    operator class up for each column by scanning pg_opclass; here one hash join does
    (`dflt`, the default btree classes)."""
    distinct = " AND NOT i.indnullsnotdistinct" if major >= 15 else ""
    # DESC's default is NULLS FIRST, ASC's NULLS LAST (indoption bits 1 and 2).
    order = (
        "CASE WHEN i.indoption[0] & 1 = 1 THEN ' DESC'"
        " || CASE WHEN i.indoption[0] & 2 = 0 THEN ' NULLS LAST' ELSE '' END"
        " WHEN i.indoption[0] & 2 = 2 THEN ' NULLS FIRST' ELSE '' END"
    )
    return (
        "CASE WHEN i.indnatts = 1 AND dflt.oid IS NOT NULL AND i.indexprs IS NULL"
        f" AND i.indpred IS NULL AND c.reloptions IS NULL{distinct}"
        " THEN (SELECT format('CREATE %sINDEX %I ON %s%I.%I USING btree (%I%s)',"
        " CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END, c.relname,"
        " CASE WHEN c.relkind = 'I' THEN 'ONLY ' ELSE '' END, n.nspname, tbl.relname,"
        f" a.attname, {order}) FROM pg_attribute a"
        " WHERE a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
        " AND a.atttypid = dflt.opcintype AND i.indcollation[0] IN (0, a.attcollation)) END"
    )


def _indexdef(major: int) -> str:
    return f"coalesce({_plain_index(major)}, pg_get_indexdef(i.indexrelid))"


def _indexes(major: int) -> str:
    """pg_get_indexdef has the method, columns, opclasses, predicate and storage parameters;
    the rest is what pg_dump writes as separate statements."""
    return _lines(
        "SELECT "
        + _one_line(_indexdef(major))
        + " || coalesce(' tablespace ' || quote_ident(ts.spcname), '')"
        " || CASE WHEN i.indisclustered THEN ' clustered' ELSE '' END"
        " || CASE WHEN i.indisreplident THEN ' replica identity' ELSE '' END"
        " || coalesce(' attached to ' || ih.inhparent::regclass::text, '')"
        " || coalesce(' statistics (' || (SELECT string_agg(a.attnum || ' ' || a.attstattarget,"
        " ', ' ORDER BY a.attnum) FROM pg_attribute a WHERE a.attrelid = i.indexrelid"
        " AND a.attstattarget >= 0) || ')', '')"
        " || CASE WHEN i.indisvalid THEN '' ELSE ' -- INVALID' END" + _COMMENTED + " AS line"
        " FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_class tbl ON tbl.oid = i.indrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" LEFT JOIN ({_DEFAULT_BTREE_OPCLASSES}) dflt ON dflt.oid = i.indclass[0]"
        " LEFT JOIN pg_tablespace ts ON ts.oid = c.reltablespace"
        " LEFT JOIN pg_inherits ih ON ih.inhrelid = i.indexrelid"
        + _comment("pg_class", "c.oid")
        # Always true (c is an index), but it keeps the tables out of the hash the planner builds.
        + f" WHERE c.relkind IN ('i', 'I') AND {_managed('pg_class', 'c.oid')}"
    )


# View options (check option, security barrier/invoker) are in `relations`.
_VIEWS = _lines(
    "SELECT format('%I.%I ', n.nspname, c.relname) || "
    + _one_line("pg_get_viewdef(c.oid, true)")
    + " AS line FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    f" WHERE c.relkind IN ('v', 'm') AND {_managed('pg_class', 'c.oid')}"
)

# Functions, procedures and window functions whole; aggregates (which pg_get_functiondef
# refuses) by their pg_aggregate row.
_AGGREGATE = (
    "format('%I.%I(%s) aggregate kind %s direct %s sfunc %s stype %s sspace %s final %s'"
    " || ' extra %s modify %s combine %s serial %s deserial %s msfunc %s minvfunc %s mstype %s'"
    " || ' msspace %s mfinal %s mextra %s mmodify %s sortop %s init %s minit %s parallel %s',"
    " n.nspname, p.proname, pg_get_function_arguments(p.oid), ag.aggkind, ag.aggnumdirectargs,"
    " ag.aggtransfn, format_type(ag.aggtranstype, NULL), ag.aggtransspace, ag.aggfinalfn,"
    " ag.aggfinalextra, ag.aggfinalmodify, ag.aggcombinefn, ag.aggserialfn, ag.aggdeserialfn,"
    " ag.aggmtransfn, ag.aggminvtransfn, format_type(ag.aggmtranstype, NULL),"
    " ag.aggmtransspace, ag.aggmfinalfn, ag.aggmfinalextra, ag.aggmfinalmodify,"
    " ag.aggsortop::regoperator, quote_nullable(ag.agginitval), quote_nullable(ag.aggminitval),"
    " p.proparallel)"
)
_FUNCTIONS = _lines(
    "SELECT CASE WHEN p.prokind = 'a' THEN "
    + _AGGREGATE
    + " ELSE "
    + _one_line("pg_get_functiondef(p.oid)")
    + " END"
    + _COMMENTED
    + " AS line FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
    " LEFT JOIN pg_aggregate ag ON ag.aggfnoid = p.oid"
    + _comment("pg_proc", "p.oid")
    + f" WHERE {_managed('pg_proc', 'p.oid')}"
)

_TRIGGERS = _lines(
    "SELECT "
    + _one_line("pg_get_triggerdef(g.oid)")
    + " || CASE g.tgenabled WHEN 'D' THEN ' disabled' WHEN 'R' THEN ' enabled replica'"
    " WHEN 'A' THEN ' enabled always' ELSE '' END" + _COMMENTED + " AS line"
    " FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    + _comment("pg_trigger", "g.oid")
    + f" WHERE NOT g.tgisinternal AND {_managed('pg_class', 'c.oid')}"
)

# Rewrite rules other than the `_RETURN` rule every view has (that one is the view).
_RULES = _lines(
    "SELECT format('%I.%I %I ', n.nspname, c.relname, r.rulename)"
    " || " + _one_line("pg_get_ruledef(r.oid)") + ""
    " || CASE r.ev_enabled WHEN 'D' THEN ' disabled' WHEN 'R' THEN ' enabled replica'"
    " WHEN 'A' THEN ' enabled always' ELSE '' END" + _COMMENTED + " AS line"
    " FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    + _comment("pg_rewrite", "r.oid")
    + f" WHERE r.rulename <> '_RETURN' AND {_managed('pg_class', 'c.oid')}"
)

_EVENT_TRIGGERS = _lines(
    "SELECT format('%I on %s execute %s', e.evtname, e.evtevent, e.evtfoid::regprocedure)"
    " || coalesce(' tags (' || (SELECT string_agg(quote_literal(x), ', ' ORDER BY x COLLATE"
    " \"C\") FROM unnest(e.evttags) x) || ')', '')"
    " || CASE e.evtenabled WHEN 'D' THEN ' disabled' WHEN 'R' THEN ' enabled replica'"
    " WHEN 'A' THEN ' enabled always' ELSE '' END" + _COMMENTED + " AS line"
    " FROM pg_event_trigger e"
    + _comment("pg_event_trigger", "e.oid")
    + f" WHERE {_user_made('pg_event_trigger', 'e.oid')}"
)

# Row-level security policies; the roles they apply to are part of what they mean.
_POLICIES = _lines(
    "SELECT format('%I.%I %I %s %s to %s using %s check %s', n.nspname, c.relname, p.polname,"
    " p.polcmd, CASE WHEN p.polpermissive THEN 'permissive' ELSE 'restrictive' END,"
    " (SELECT string_agg(x, ', ' ORDER BY x COLLATE \"C\") FROM (SELECT CASE WHEN r = 0"
    " THEN 'public' ELSE quote_ident(pg_get_userbyid(r)) END FROM unnest(p.polroles) r) rs(x)),"
    " coalesce(pg_get_expr(p.polqual, p.polrelid), '-'),"
    " coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '-'))" + _COMMENTED + " AS line"
    " FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    + _comment("pg_policy", "p.oid")
    + f" WHERE {_managed('pg_class', 'c.oid')}"
)

# Sequence definitions and the column that owns them (OWNED BY, or an identity column's);
# never their current value.
_SEQUENCES = _lines(
    "SELECT format('%I.%I %s start %s increment %s min %s max %s cache %s%s', n.nspname,"
    " c.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin,"
    " s.seqmax, s.seqcache, CASE WHEN s.seqcycle THEN ' cycle' ELSE '' END)"
    " || CASE c.relpersistence WHEN 'u' THEN ' unlogged' ELSE '' END"
    " || coalesce(' owned by ' || dep.refobjid::regclass::text || '.' || quote_ident(oa.attname)"
    " || CASE dep.deptype WHEN 'i' THEN ' (identity)' ELSE '' END, '')" + _COMMENTED + " AS line"
    " FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    " LEFT JOIN pg_depend dep ON dep.classid = 'pg_class'::regclass AND dep.objid = c.oid"
    " AND dep.refclassid = 'pg_class'::regclass AND dep.refobjsubid > 0"
    " AND dep.deptype IN ('a', 'i')"
    " LEFT JOIN pg_attribute oa ON oa.attrelid = dep.refobjid AND oa.attnum = dep.refobjsubid"
    + _comment("pg_class", "c.oid")
    + f" WHERE {_managed('pg_class', 'c.oid')}"
)


def _range(major: int) -> str:
    multirange = " || ' multirange ' || r.rngmultitypid::regtype::text" if major >= 14 else ""
    return (
        "(SELECT 'range of ' || format_type(r.rngsubtype, NULL)"
        " || coalesce(' collate ' || nullif(r.rngcollation, 0)::regcollation::text, '')"
        " || ' opclass ' || (SELECT format('%I.%I', opn.nspname, opc.opcname) FROM pg_opclass opc"
        " JOIN pg_namespace opn ON opn.oid = opc.opcnamespace WHERE opc.oid = r.rngsubopc)"
        " || ' canonical ' || r.rngcanonical::text || ' subdiff ' || r.rngsubdiff::text"
        + multirange
        + " FROM pg_range r WHERE r.rngtypid = t.oid)"
    )


_BASE_TYPE = (
    "format('base input %s output %s receive %s send %s typmod %s %s analyze %s length %s%s'"
    " || ' align %s storage %s category %s%s delimiter %s element %s%s%s', t.typinput,"
    " t.typoutput, t.typreceive, t.typsend, t.typmodin, t.typmodout, t.typanalyze, t.typlen,"
    " CASE WHEN t.typbyval THEN ' by value' ELSE '' END, t.typalign, t.typstorage,"
    " t.typcategory, CASE WHEN t.typispreferred THEN ' preferred' ELSE '' END,"
    " quote_literal(t.typdelim::text), format_type(t.typelem, NULL),"
    " CASE WHEN t.typcollation <> 0 THEN ' collatable' ELSE '' END,"
    " coalesce(' default ' || quote_literal(t.typdefault), ''))"
)


def _types(major: int) -> str:
    """Enums (labels in their order), domains (their constraints are in `constraints`),
    ranges, composite types (their attributes are in `columns`), base and shell types."""
    return _lines(
        "SELECT format('%I.%I ', n.nspname, t.typname) || CASE t.typtype"
        " WHEN 'e' THEN 'enum (' || coalesce((SELECT string_agg(quote_literal(e.enumlabel), ', '"
        " ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid), '') || ')'"
        " WHEN 'd' THEN 'domain ' || format_type(t.typbasetype, t.typtypmod)"
        " || CASE WHEN t.typnotnull THEN ' not null' ELSE '' END"
        " || coalesce(' default ' || t.typdefault, '')"
        " || CASE WHEN t.typcollation <> (SELECT b.typcollation FROM pg_type b"
        " WHERE b.oid = t.typbasetype) THEN ' collate ' || t.typcollation::regcollation::text"
        " ELSE '' END"
        " WHEN 'r' THEN " + _range(major) + " WHEN 'b' THEN " + _BASE_TYPE + ""
        " WHEN 'p' THEN 'shell' ELSE 'composite' END" + _COMMENTED + " AS line"
        " FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
        # Only stand-alone composite types: hashing every table's pg_class row to find them
        # cost more than the rest of the section.
        " LEFT JOIN pg_class c ON c.oid = t.typrelid AND c.relkind = 'c'"
        + _comment("pg_type", "t.oid")
        + " WHERE (t.typtype IN ('e', 'd', 'r', 'p') OR (t.typtype = 'c' AND c.oid IS NOT NULL)"
        # The array type PostgreSQL makes for every type is not a type anyone wrote.
        " OR (t.typtype = 'b' AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid)))"
        f" AND {_managed('pg_type', 't.oid')}"
    )


def _collations(major: int) -> str:
    """The locale columns changed in 15 (ICU locale), 16 (ICU rules) and 17 (renamed); the
    collation's library version is left out: it follows the OS, not the schema."""
    if major >= 17:
        locale = " || coalesce(' locale ' || co.colllocale, '')"
    elif major >= 15:
        locale = " || coalesce(' locale ' || co.colliculocale, '')"
    else:
        locale = ""
    rules = " || coalesce(' rules ' || co.collicurules, '')" if major >= 16 else ""
    return _lines(
        "SELECT format('%I.%I provider %s deterministic %s encoding %s collate %s ctype %s',"
        " n.nspname, co.collname, co.collprovider, co.collisdeterministic,"
        " CASE WHEN co.collencoding = -1 THEN 'any' ELSE pg_encoding_to_char(co.collencoding)"
        " END, co.collcollate, co.collctype)" + locale + rules + _COMMENTED + " AS line"
        " FROM pg_collation co JOIN pg_namespace n ON n.oid = co.collnamespace"
        + _comment("pg_collation", "co.oid")
        + f" WHERE {_managed('pg_collation', 'co.oid')}"
    )


_CONVERSIONS = _lines(
    "SELECT format('%I.%I %s to %s via %s%s', n.nspname, v.conname,"
    " pg_encoding_to_char(v.conforencoding), pg_encoding_to_char(v.contoencoding),"
    " v.conproc::regprocedure, CASE WHEN v.condefault THEN ' default' ELSE '' END)"
    + _COMMENTED
    + " AS line FROM pg_conversion v JOIN pg_namespace n ON n.oid = v.connamespace"
    + _comment("pg_conversion", "v.oid")
    + f" WHERE {_managed('pg_conversion', 'v.oid')}"
)

_CASTS = _lines(
    "SELECT format('%s as %s %s %s', format_type(k.castsource, NULL),"
    " format_type(k.casttarget, NULL), CASE k.castmethod WHEN 'f' THEN 'with function '"
    " || k.castfunc::regprocedure::text WHEN 'i' THEN 'with inout' ELSE 'without function' END,"
    " CASE k.castcontext WHEN 'e' THEN 'explicit' WHEN 'a' THEN 'as assignment'"
    " ELSE 'as implicit' END)" + _COMMENTED + " AS line"
    " FROM pg_cast k" + _comment("pg_cast", "k.oid") + f" WHERE {_user_made('pg_cast', 'k.oid')}"
)

# Operators, operator classes and operator families (with every member operator and support
# function, whether an operator class or ALTER OPERATOR FAMILY added it).
_FAMILY_MEMBERS = (
    " || coalesce(' operators (' || (SELECT string_agg(m, ', ' ORDER BY m COLLATE \"C\") FROM"
    " (SELECT format('%s %s%s', o.amopstrategy, o.amopopr::regoperator, CASE WHEN"
    " o.amoppurpose = 'o' THEN ' for order by ' || (SELECT format('%I.%I', sn.nspname,"
    " sf.opfname) FROM pg_opfamily sf JOIN pg_namespace sn ON sn.oid = sf.opfnamespace"
    " WHERE sf.oid = o.amopsortfamily) ELSE '' END) AS m FROM pg_amop o"
    " WHERE o.amopfamily = f.oid) ops) || ')', '')"
    " || coalesce(' functions (' || (SELECT string_agg(m, ', ' ORDER BY m COLLATE \"C\") FROM"
    " (SELECT format('%s(%s, %s) %s', p.amprocnum, format_type(p.amproclefttype, NULL),"
    " format_type(p.amprocrighttype, NULL), p.amproc::regprocedure) AS m FROM pg_amproc p"
    " WHERE p.amprocfamily = f.oid) procs) || ')', '')"
)
_OPERATORS = _lines(
    "SELECT format('operator %I.%s(%s, %s) returns %s function %s commutator %s negator %s'"
    " || ' restrict %s join %s%s%s', n.nspname, o.oprname, format_type(o.oprleft, NULL),"
    " format_type(o.oprright, NULL), format_type(o.oprresult, NULL), o.oprcode,"
    " o.oprcom::regoperator, o.oprnegate::regoperator, o.oprrest, o.oprjoin,"
    " CASE WHEN o.oprcanmerge THEN ' merges' ELSE '' END,"
    " CASE WHEN o.oprcanhash THEN ' hashes' ELSE '' END)" + _COMMENTED + " AS line"
    " FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace"
    + _comment("pg_operator", "o.oid")
    + f" WHERE {_managed('pg_operator', 'o.oid')}"
    " UNION ALL "
    "SELECT format('operator class %I.%I using %I for %s family %I.%I%s%s', n.nspname,"
    " oc.opcname, am.amname, format_type(oc.opcintype, NULL), fn.nspname, f.opfname,"
    " CASE WHEN oc.opcdefault THEN ' default' ELSE '' END, CASE WHEN oc.opckeytype <> 0"
    " THEN ' storage ' || format_type(oc.opckeytype, NULL) ELSE '' END)" + _COMMENTED + ""
    " FROM pg_opclass oc JOIN pg_namespace n ON n.oid = oc.opcnamespace"
    " JOIN pg_am am ON am.oid = oc.opcmethod"
    " JOIN pg_opfamily f ON f.oid = oc.opcfamily"
    " JOIN pg_namespace fn ON fn.oid = f.opfnamespace"
    + _comment("pg_opclass", "oc.oid")
    + f" WHERE {_managed('pg_opclass', 'oc.oid')}"
    " UNION ALL "
    "SELECT format('operator family %I.%I using %I', n.nspname, f.opfname, am.amname)"
    + _FAMILY_MEMBERS
    + _COMMENTED
    + " FROM pg_opfamily f JOIN pg_namespace n ON n.oid = f.opfnamespace"
    " JOIN pg_am am ON am.oid = f.opfmethod"
    + _comment("pg_opfamily", "f.oid")
    + f" WHERE {_managed('pg_opfamily', 'f.oid')}"
)

# Text search configurations (with their token mappings), dictionaries, parsers, templates.
_TEXT_SEARCH = _lines(
    "SELECT format('configuration %I.%I parser %I.%I', n.nspname, cfg.cfgname, pn.nspname,"
    " prs.prsname) || coalesce(' mappings (' || (SELECT string_agg(m.maptokentype || ' '"
    " || m.mapdict::regdictionary::text, ', ' ORDER BY m.maptokentype, m.mapseqno)"
    " FROM pg_ts_config_map m WHERE m.mapcfg = cfg.oid) || ')', '')" + _COMMENTED + " AS line"
    " FROM pg_ts_config cfg JOIN pg_namespace n ON n.oid = cfg.cfgnamespace"
    " JOIN pg_ts_parser prs ON prs.oid = cfg.cfgparser"
    " JOIN pg_namespace pn ON pn.oid = prs.prsnamespace"
    + _comment("pg_ts_config", "cfg.oid")
    + f" WHERE {_managed('pg_ts_config', 'cfg.oid')}"
    " UNION ALL "
    "SELECT format('dictionary %I.%I template %I.%I options %s', n.nspname, dict.dictname,"
    " tn.nspname, tmpl.tmplname, dict.dictinitoption)" + _COMMENTED + ""
    " FROM pg_ts_dict dict JOIN pg_namespace n ON n.oid = dict.dictnamespace"
    " JOIN pg_ts_template tmpl ON tmpl.oid = dict.dicttemplate"
    " JOIN pg_namespace tn ON tn.oid = tmpl.tmplnamespace"
    + _comment("pg_ts_dict", "dict.oid")
    + f" WHERE {_managed('pg_ts_dict', 'dict.oid')}"
    " UNION ALL "
    "SELECT format('parser %I.%I start %s token %s end %s headline %s lextypes %s', n.nspname,"
    " prs.prsname, prs.prsstart, prs.prstoken, prs.prsend, prs.prsheadline, prs.prslextype)"
    + _COMMENTED
    + " FROM pg_ts_parser prs JOIN pg_namespace n ON n.oid = prs.prsnamespace"
    + _comment("pg_ts_parser", "prs.oid")
    + f" WHERE {_managed('pg_ts_parser', 'prs.oid')}"
    " UNION ALL "
    "SELECT format('template %I.%I init %s lexize %s', n.nspname, tmpl.tmplname, tmpl.tmplinit,"
    " tmpl.tmpllexize)" + _COMMENTED + ""
    " FROM pg_ts_template tmpl JOIN pg_namespace n ON n.oid = tmpl.tmplnamespace"
    + _comment("pg_ts_template", "tmpl.oid")
    + f" WHERE {_managed('pg_ts_template', 'tmpl.oid')}"
)

# Foreign-data wrappers, servers and user mappings (foreign tables are relations). A user
# mapping's options hold passwords and only privileged roles may read them: the mapping is
# described by its user and server alone, so every role reads the same fingerprint.
_FOREIGN_DATA = _lines(
    "SELECT format('wrapper %I handler %s validator %s', w.fdwname, w.fdwhandler,"
    " w.fdwvalidator)" + _options("w.fdwoptions", "options") + _COMMENTED + " AS line"
    " FROM pg_foreign_data_wrapper w"
    + _comment("pg_foreign_data_wrapper", "w.oid")
    + f" WHERE {_user_made('pg_foreign_data_wrapper', 'w.oid')}"
    " UNION ALL "
    "SELECT format('server %I wrapper %I type %s version %s', s.srvname, w.fdwname, s.srvtype,"
    " s.srvversion)" + _options("s.srvoptions", "options") + _COMMENTED + ""
    " FROM pg_foreign_server s JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw"
    + _comment("pg_foreign_server", "s.oid")
    + f" WHERE {_user_made('pg_foreign_server', 's.oid')}"
    " UNION ALL "
    "SELECT format('user mapping for %I server %I', um.usename, um.srvname)"
    " FROM pg_user_mappings um"
    f" WHERE {_user_made('pg_foreign_server', 'um.srvid')}"
)


def _publications(major: int) -> str:
    """Row filters, column lists and TABLES IN SCHEMA are new in 15."""
    table = "pr.prrelid::regclass::text"
    schemas = ""
    if major >= 15:
        table += (
            " || coalesce(' (' || (SELECT string_agg(quote_ident(a.attname), ', '"
            ' ORDER BY a.attname COLLATE "C") FROM pg_attribute a WHERE a.attrelid = pr.prrelid'
            " AND a.attnum = ANY (pr.prattrs)) || ')', '')"
            " || coalesce(' where ' || pg_get_expr(pr.prqual, pr.prrelid), '')"
        )
        schemas = (
            " || coalesce(' schemas (' || (SELECT string_agg(pn.pnnspid::regnamespace::text, ', '"
            ' ORDER BY pn.pnnspid::regnamespace::text COLLATE "C")'
            " FROM pg_publication_namespace pn WHERE pn.pnpubid = p.oid) || ')', '')"
        )
    return _lines(
        "SELECT format('%I all tables %s insert %s update %s delete %s truncate %s via root %s',"
        " p.pubname, p.puballtables, p.pubinsert, p.pubupdate, p.pubdelete, p.pubtruncate,"
        " p.pubviaroot)"
        " || coalesce(' tables (' || (SELECT string_agg(m, ', ' ORDER BY m COLLATE \"C\") FROM"
        f" (SELECT {table} AS m FROM pg_publication_rel pr WHERE pr.prpubid = p.oid) rels)"
        " || ')', '')" + schemas + _COMMENTED + " AS line"
        " FROM pg_publication p"
        + _comment("pg_publication", "p.oid")
        + f" WHERE {_user_made('pg_publication', 'p.oid')}"
    )


def _subscriptions(major: int) -> str:
    """Subscriptions of this database: only columns every role may read, never the connection
    string (it may hold a password), nor the enabled state (a restore always disables them).
    Up to 13 a subscription's oid is readable by superusers only, so its comment (found by
    oid) is left out there: every role must read the same fingerprint."""
    commented = major >= 14
    return _lines(
        "SELECT format('%I publications (%s) slot %s', s.subname, (SELECT string_agg("
        "quote_ident(x), ', ' ORDER BY x COLLATE \"C\") FROM unnest(s.subpublications) x),"
        " coalesce(quote_ident(s.subslotname), 'none'))"
        + (_COMMENTED if commented else "")
        + " AS line FROM pg_subscription s"
        + (_comment("pg_subscription", "s.oid") if commented else "")
        + " WHERE s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )


# Extended statistics (CREATE STATISTICS) and their targets (-1 up to 16, NULL from 17: default).
_STATISTICS = _lines(
    "SELECT "
    + _one_line("pg_get_statisticsobjdef(s.oid)")
    + " || CASE WHEN s.stxstattarget >= 0 THEN ' statistics ' || s.stxstattarget ELSE '' END"
    + _COMMENTED
    + " AS line FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace"
    + _comment("pg_statistic_ext", "s.oid")
    + f" WHERE {_managed('pg_statistic_ext', 's.oid')}"
)

# Objects outside schemas: access methods, procedural languages and transforms.
_ACCESS_METHODS = _lines(
    "SELECT format('%I type %s handler %s', a.amname, a.amtype, a.amhandler)"
    + _COMMENTED
    + " AS line FROM pg_am a"
    + _comment("pg_am", "a.oid")
    + f" WHERE {_user_made('pg_am', 'a.oid')}"
)
_LANGUAGES = _lines(
    "SELECT format('%I%s handler %s inline %s validator %s', l.lanname,"
    " CASE WHEN l.lanpltrusted THEN ' trusted' ELSE '' END, l.lanplcallfoid::regprocedure,"
    " l.laninline::regprocedure, l.lanvalidator::regprocedure)" + _COMMENTED + " AS line"
    " FROM pg_language l"
    + _comment("pg_language", "l.oid")
    + f" WHERE {_user_made('pg_language', 'l.oid')}"
)
_TRANSFORMS = _lines(
    "SELECT format('for %s language %I from sql %s to sql %s', format_type(tr.trftype, NULL),"
    " l.lanname, tr.trffromsql::regprocedure, tr.trftosql::regprocedure)" + _COMMENTED + ""
    " AS line FROM pg_transform tr JOIN pg_language l ON l.oid = tr.trflang"
    + _comment("pg_transform", "tr.oid")
    + f" WHERE {_user_made('pg_transform', 'tr.oid')}"
)


@cache
def sections(major: int) -> dict[str, str]:
    """Each section's query for a server of this major version, `{application}` still open."""
    return {
        "schemas": _SCHEMAS,
        "extensions": _EXTENSIONS,
        "relations": _RELATIONS,
        "columns": _columns(major),
        "constraints": _CONSTRAINTS,
        "indexes": _indexes(major),
        "views": _VIEWS,
        "functions": _FUNCTIONS,
        "triggers": _TRIGGERS,
        "rules": _RULES,
        "event_triggers": _EVENT_TRIGGERS,
        "policies": _POLICIES,
        "sequences": _SEQUENCES,
        "types": _types(major),
        "collations": _collations(major),
        "conversions": _CONVERSIONS,
        "casts": _CASTS,
        "operators": _OPERATORS,
        "text_search": _TEXT_SEARCH,
        "foreign_data": _FOREIGN_DATA,
        "publications": _publications(major),
        "subscriptions": _subscriptions(major),
        "statistics": _STATISTICS,
        "access_methods": _ACCESS_METHODS,
        "languages": _LANGUAGES,
        "transforms": _TRANSFORMS,
    }


@dataclass(frozen=True)
class Fingerprint:
    hash: str
    sections: dict[str, list[str]] = field(repr=False)
    major: int = 0  # the server's major version

    def as_dict(self) -> dict[str, object]:
        """The `fingerprint` command's JSON: the hash, the major and every object line."""
        return {"fingerprint": self.hash, "server_major": self.major, "objects": self.sections}


def _document(major: int, *, lines: bool) -> str:
    """Every section in one statement (one snapshot, one round trip), and the sha256 the
    server computes over them: `[name]\\n`, the section's text and `\\n` for each section in
    name order, as UTF-8. Rows of (section name, text) when `lines`, then the hash in a row
    whose name is NULL; without `lines`, only that row: the texts never cross the wire."""
    queries = sections(major)
    values = ", ".join(f"('{name}', ({queries[name]}))" for name in sorted(queries))
    digest = (
        "SELECT NULL, encode(sha256(convert_to(string_agg(format(E'[%s]\\n%s\\n', name, text),"
        " '' ORDER BY name COLLATE \"C\"), 'UTF8')), 'hex') FROM s"
    )
    texts = "SELECT name, text FROM s UNION ALL " if lines else ""
    # MATERIALIZED: each section is computed once, whether the texts are read or not.
    return f"WITH s(name, text) AS MATERIALIZED (VALUES {values}) {texts}{digest}"


def _read(
    conn: psycopg.Connection[Any], ledger_schema: str, *, lines: bool
) -> tuple[int, str, dict[str, str]]:
    """The server's major, the fingerprint and, when `lines`, each section's text."""
    major = conn.info.server_version // 10000
    query = sql.SQL(_document(major, lines=lines)).format(
        application=application_schema(ledger=ledger_schema)
    )
    with conn.transaction():
        conn.execute(
            "SET LOCAL search_path = '';"  # fully qualified names in every definition
            # Large catalogs sort tens of thousands of lines: in memory, without parallel
            # workers whose start-up costs more than they save on catalog-sized inputs.
            " SET LOCAL work_mem = '64MB'; SET LOCAL max_parallel_workers_per_gather = 0;"
            # Row estimates of catalog joins are rough; a high one must not buy a JIT
            # compilation that takes longer than the query.
            " SET LOCAL jit = off"
        )
        # No parameters: the ledger schema is a literal, so `%` in the SQL stays itself.
        rows = conn.execute(query).fetchall()
    found = {str(name): str(text) for name, text in rows if name is not None}
    texts = {name: found[name] for name in sections(major) if name in found}  # in their order
    (digest,) = [str(text) for name, text in rows if name is None]
    # The major in two decimal digits, then the first 62 hex digits of the sha256: 64 hex
    # digits like a plain sha256 (what the CRD and the ledger take), readable as `17…`.
    return major, f"{major:02d}{digest[:62]}", texts


_WITH_MAJOR = re.compile(r"[1-9][0-9][0-9a-f]{62}")


def major_of(value: str) -> int | None:
    """The PostgreSQL major a fingerprint was computed on; None for a value that names none
    (a hand-written or older 64-digit value)."""
    return int(value[:2]) if _WITH_MAJOR.fullmatch(value) else None


def other_major(current: str, other: str) -> int | None:
    """The major `other` was computed on, when it is not `current`'s: the two fingerprints
    describe the schema as two different majors print it, and cannot be compared."""
    mine, theirs = major_of(current), major_of(other)
    return theirs if mine is not None and theirs is not None and mine != theirs else None


def fingerprint(conn: psycopg.Connection[Any], ledger_schema: str) -> Fingerprint:
    """Read the schema of the connected database (excluding the ledger schema), with every
    object's line: for the JSON output and for a diff."""
    major, digest, texts = _read(conn, ledger_schema, lines=True)
    parts = {name: text.split("\n") if text else [] for name, text in texts.items()}
    return Fingerprint(digest, parts, major)


def schema_hash(conn: psycopg.Connection[Any], ledger_schema: str) -> str:
    """`fingerprint(conn, ledger_schema).hash` without the lines: for a caller that only
    compares or records the hash (the 3 MB of lines of a 10,000-table catalog stay in the
    server)."""
    return _read(conn, ledger_schema, lines=False)[1]


# --- differences ------------------------------------------------------------------------------


class ColumnOrder(TypedDict):
    """A table whose columns are the same on both sides, in a different order."""

    table: str
    first: list[str]
    second: list[str]


@dataclass(frozen=True)
class SectionDiff:
    section: str
    only_in_first: list[str]
    only_in_second: list[str]
    reordered: list[ColumnOrder] = field(default_factory=list)


def diff(first: Fingerprint, second: Fingerprint) -> list[SectionDiff]:
    """What differs, section by section: lines present on one side only; a table whose
    columns differ only in their order is named in `reordered` instead of by its lines."""
    differences: list[SectionDiff] = []
    for name in sorted(first.sections.keys() | second.sections.keys()):
        lines_a, lines_b = first.sections.get(name, []), second.sections.get(name, [])
        a, b = set(lines_a), set(lines_b)
        if a == b:
            continue
        only_a, only_b = sorted(a - b), sorted(b - a)
        reordered: list[ColumnOrder] = []
        if name == "columns":
            reordered = _reordered_tables(lines_a, lines_b, only_a + only_b)
            moved = {order["table"] for order in reordered}
            only_a = [line for line in only_a if _table_of(line) not in moved]
            only_b = [line for line in only_b if _table_of(line) not in moved]
        differences.append(SectionDiff(name, only_a, only_b, reordered))
    return differences


# A `columns` line: schema.table, position, column name, then the column's definition.
_IDENTIFIER = r'(?:"(?:[^"]|"")*"|[^\s".]+)'
_COLUMN_LINE = re.compile(rf"^({_IDENTIFIER}\.{_IDENTIFIER}) (\d+) ({_IDENTIFIER}) (.*)$")


def _table_of(line: str) -> str:
    match = _COLUMN_LINE.match(line)
    return match.group(1) if match else line


def _columns_by_table(lines: list[str], tables: set[str]) -> dict[str, list[tuple[str, str]]]:
    """(column name, definition) of each of `tables`, in column order."""
    found: dict[str, list[tuple[int, str, str]]] = {}
    for line in lines:
        match = _COLUMN_LINE.match(line)
        if match and match.group(1) in tables:
            table, position, name, definition = match.groups()
            found.setdefault(table, []).append((int(position), name, definition))
    return {table: [(n, d) for _p, n, d in sorted(cols)] for table, cols in found.items()}


def _reordered_tables(first: list[str], second: list[str], changed: list[str]) -> list[ColumnOrder]:
    """Tables among the changed lines with the same columns on both sides in another order."""
    tables = {_table_of(line) for line in changed}
    a, b = _columns_by_table(first, tables), _columns_by_table(second, tables)
    return [
        ColumnOrder(
            table=table, first=[name for name, _ in a[table]], second=[name for name, _ in b[table]]
        )
        for table in sorted(tables & a.keys() & b.keys())
        if sorted(a[table]) == sorted(b[table]) and a[table] != b[table]
    ]


def describe_diff(differences: list[SectionDiff], first: str, second: str) -> str:
    lines: list[str] = []
    for difference in differences:
        lines.append(f"[{difference.section}]")
        lines += [
            f"  column order differs in table {order['table']}: {first} "
            f"({', '.join(order['first'])}), {second} ({', '.join(order['second'])})"
            for order in difference.reordered
        ]
        lines += [f"  - {line}   (only in {first})" for line in difference.only_in_first]
        lines += [f"  + {line}   (only in {second})" for line in difference.only_in_second]
    return "\n".join(lines)
