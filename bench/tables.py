"""BENCHMARKS.md's tables, rendered from `bench/results/*.json`: a number in the doc is always
the number a command produced.

A table lives between two markers in the markdown,

    <!-- table:kd_throughput -->
    (everything here is replaced)
    <!-- /table:kd_throughput -->

and `bench/table_renderers.py` says, per table name, which result files it reads, the command
that writes them and how they become markdown. A table whose result file does not exist yet
renders as a visible "pending: run `<command>`" line, never as an old number. Text outside the
markers (prose, sections another script owns) is left exactly as it is.

    python bench/tables.py            # rewrite BENCHMARKS.md's tables from bench/results/
    python bench/tables.py --check    # exit 1 if BENCHMARKS.md differs from what the JSON says
    python bench/tables.py --list     # every table: its result files, command, state

Exit codes: 0 ok, 1 stale (`--check`), 2 a marker or result file is wrong (the message names it).
Standard library only, so `make bench-tables` and the tests need no torch.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # `python bench/tables.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import results_io  # noqa: E402
from bench.table_renderers import TABLES, Table, TableDataError  # noqa: E402

DOC = results_io.REPO / "BENCHMARKS.md"
MARKER = re.compile(r"<!--\s*(/?)\s*table:([^\s>]*)\s*-->")


class MarkerError(ValueError):
    """A table marker that cannot be honoured: unknown name, unclosed, crossed, repeated."""


@dataclass
class Block:
    name: str
    start: int  # index just after the opening marker
    end: int  # index of the closing marker
    line: int


def find_blocks(text: str, doc: str = "BENCHMARKS.md") -> list[Block]:
    """Every `<!-- table:NAME -->` ... `<!-- /table:NAME -->` pair, in order; no nesting."""
    blocks: list[Block] = []
    open_: tuple[str, int, int] | None = None
    seen: set[str] = set()
    for match in MARKER.finditer(text):
        closing, name = bool(match.group(1)), match.group(2)
        line = text.count("\n", 0, match.start()) + 1
        where = f"{doc}:{line}: {match.group(0)}"
        if not name:
            raise MarkerError(f"{where}: marker without a table name")
        if not closing:
            if open_ is not None:
                raise MarkerError(f"{where}: opens inside <!-- table:{open_[0]} --> (line "
                                  f"{open_[2]}), which is not closed yet")
            if name not in TABLES:
                raise MarkerError(f"{where}: unknown table {name!r}; known: {', '.join(sorted(TABLES))}")
            if name in seen:
                raise MarkerError(f"{where}: table {name!r} appears twice")
            seen.add(name)
            open_ = (name, match.end(), line)
        else:
            if open_ is None:
                raise MarkerError(f"{where}: closes table {name!r}, which was never opened")
            if name != open_[0]:
                raise MarkerError(f"{where}: closes {name!r} but <!-- table:{open_[0]} --> (line "
                                  f"{open_[2]}) is the one open")
            blocks.append(Block(open_[0], open_[1], match.start(), open_[2]))
            open_ = None
    if open_ is not None:
        raise MarkerError(f"{doc}:{open_[2]}: <!-- table:{open_[0]} --> is never closed "
                          f"(add <!-- /table:{open_[0]} -->)")
    return blocks


def pending_line(table: Table, missing: list[str]) -> str:
    files = ", ".join(f"bench/results/{name}.json" for name in missing)
    return f"**pending: run `{table.command}`** (no {files} yet)"


def provenance(docs: list[dict]) -> str:
    """One line under a table: the command, date, duration and machine behind its numbers."""
    parts = []
    for doc in docs:
        m = doc.get("machine") or {}
        load = ""
        if m.get("loadavg_start") or m.get("loadavg_end"):
            load = f", load average {_load(m.get('loadavg_start'))} -> {_load(m.get('loadavg_end'))}"
        took = f", {doc['seconds']:.0f} s" if isinstance(doc.get("seconds"), (int, float)) else ""
        threads = f", {m['torch_threads']} torch thread(s)" if m.get("torch_threads") else ""
        parts.append(f"`{doc['command']}` ({doc['date'][:16].replace('T', ' ')}{took}; "
                     f"{m.get('cpu_cores', '?')} cores{threads}{load}; torch {m.get('torch', '?')})")
    notes = sorted({doc["note"] for doc in docs if doc.get("note")})
    line = "Source: " + "; ".join(parts) + "."
    if notes:
        line += " " + " ".join(n[0].upper() + n[1:] + "." for n in notes)
    return f"<sub>{line}</sub>"


def _load(values) -> str:
    return "?" if not values else "/".join(f"{v:g}" for v in values)


def render_table(table: Table, results: Path | None = None) -> str:
    docs, missing = [], []
    for name in table.results:
        try:
            doc = results_io.read(name, results)
        except ValueError as exc:
            raise TableDataError(str(exc)) from None
        (missing.append(name) if doc is None else docs.append(doc))
    if missing:
        return pending_line(table, missing)
    path = Path(results or results_io.RESULTS)
    try:
        body = table.render(*(doc["results"] for doc in docs))
    except (KeyError, IndexError, TypeError) as exc:
        files = ", ".join(str(path / f"{n}.json") for n in table.results)
        raise TableDataError(f"{files}: cannot render table {table.name!r}: missing or malformed "
                             f"{exc!r} (rerun `{table.command}`)") from None
    return f"{body.rstrip()}\n\n{provenance(docs)}"


def render_record(table: str | Callable[..., str], doc: dict | None) -> str:
    """One table from one record already in hand (the bench scripts print their table with it):
    `table` is a table name or a renderer from `bench/table_renderers.py`."""
    if doc is None:
        if not isinstance(table, str):
            raise ValueError("no record to render")
        return pending_line(TABLES[table], list(TABLES[table].results))
    render = TABLES[table].render if isinstance(table, str) else table
    return f"{render(doc['results']).rstrip()}\n\n{provenance([doc])}"


def render_doc(text: str, results: Path | None = None, doc: str = "BENCHMARKS.md") -> str:
    out, pos = [], 0
    for block in find_blocks(text, doc):
        out.append(text[pos:block.start])
        out.append("\n" + render_table(TABLES[block.name], results) + "\n")
        pos = block.end
    out.append(text[pos:])
    return "".join(out)


def stale_tables(text: str, rendered: str, doc: str = "BENCHMARKS.md") -> list[str]:
    old = {b.name: text[b.start:b.end] for b in find_blocks(text, doc)}
    new = {b.name: rendered[b.start:b.end] for b in find_blocks(rendered, doc)}
    return [name for name in old if old[name] != new.get(name)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--doc", type=Path, default=DOC, help="markdown file (default BENCHMARKS.md)")
    parser.add_argument("--results", type=Path, default=results_io.RESULTS,
                        help="directory of the result JSON files (default bench/results)")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a table differs from its JSON")
    parser.add_argument("--list", action="store_true", help="list the tables and their sources")
    args = parser.parse_args(argv)
    if args.list:
        for table in TABLES.values():
            state = ", ".join(f"{n}.json " + ("present" if (args.results / f"{n}.json").exists()
                                               else "MISSING") for n in table.results)
            print(f"{table.name}: {state}\n    {table.command}")
        return 0
    try:
        text = args.doc.read_text()
        rendered = render_doc(text, args.results, args.doc.name)
    except FileNotFoundError as exc:
        print(f"error: {exc.filename}: not found", file=sys.stderr)
        return 2
    except (MarkerError, TableDataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    blocks = find_blocks(rendered, args.doc.name)
    pending = [b.name for b in blocks if "**pending: run `" in rendered[b.start:b.end]]
    if args.check:
        stale = stale_tables(text, rendered, args.doc.name)
        if stale:
            print(f"{args.doc}: stale table(s): {', '.join(stale)}; run `python bench/tables.py`",
                  file=sys.stderr)
            return 1
        print(f"{args.doc}: {len(blocks)} table(s) up to date"
              + (f" ({len(pending)} pending: {', '.join(pending)})" if pending else ""))
        return 0
    if rendered != text:
        args.doc.write_text(rendered)
    print(f"{args.doc}: rendered {len(blocks)} table(s)"
          + (f"; pending (no result file yet): {', '.join(pending)}" if pending else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
