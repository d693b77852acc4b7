"""Import speed: 100,000 subscribers from a CSV export, beside a bare sqlite3 executemany.

The import is the whole path `newsletter subscribers import` takes: decode,
sniff, parse, validate and normalise every address, look up known and
suppressed addresses, then insert the subscribers and their consent records in
one transaction. The ceiling, measured in the same run, is a bare executemany
(batches of 500, one transaction) of the very same subscriber rows, prepared
beforehand, into a new database with the same schema: no parsing, no
validation, no consent records. Each is the best of three runs into new
databases. A re-import of the same file must change nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

from newsletter import subscribers
from newsletter.store import Store, mailbox_key

ROWS = 100_000
RUNS = 3
BATCH = 500
NOW = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC)
FIRST = ["Ann", "Bo", "Cy", "Dee", "Eli", "Fay", "Gus", "Hal", "Ivy", "Jon", "Zoë", "José"]
LAST = ["Lee", "Ma", "Ng", "Okafor", "García", "Lindqvist", "Brennan", "Ashworth"]
TAGS = ["back-pain", "running", "neck-pain", "desk-work", "first-visit", "knee-pain"]
CITIES = ["Springfield", "Eugene", "Portland", "Salem", "Köln"]
DOMAINS = ["example.com", "example.org", "example.net", "mail.example.com"]


def write_export(path: Path, rng: random.Random) -> None:
    """A typical export: address, names, status, tags, a custom field; some unsubscribed."""
    lines = ["email,first_name,last_name,status,tags,city"]
    for i in range(ROWS):
        tags = ",".join(rng.sample(TAGS, rng.randint(0, 2)))
        status = "unsubscribed" if i % 50 == 0 else "subscribed"
        lines.append(
            f"reader.{i}@{DOMAINS[i % len(DOMAINS)]},{rng.choice(FIRST)},{rng.choice(LAST)},"
            f'{status},"{tags}",{rng.choice(CITIES)}'
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def bare_rows(parsed: subscribers.ParsedFile) -> list[tuple]:
    """The subscriber rows exactly as the import writes them, built beforehand."""
    stamp = NOW.isoformat(timespec="seconds")
    return [
        (
            r["email"],
            mailbox_key(r["email"]),
            r["first_name"],
            r["last_name"],
            r["status"],
            json.dumps(r["tags"]),
            json.dumps(r["attributes"], ensure_ascii=False),
            "import:subscribers.csv",
            stamp,
            stamp,
            stamp if r["status"] == "confirmed" else None,
            stamp if r["status"] == "unsubscribed" else None,
        )
        for r in parsed.rows
    ]


def bare_executemany(db: Path, rows: list[tuple]) -> float:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    start = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    for i in range(0, len(rows), BATCH):
        conn.executemany(
            "INSERT INTO subscribers (email, email_key, first_name, last_name, status, tags, "
            "attributes, source, created_at, updated_at, confirmed_at, unsubscribed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows[i : i + BATCH],
        )
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def dump(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def timed_import(db: Path, export: Path) -> tuple[float, subscribers.ImportReport]:
    store = Store(db)
    store.migrate()
    start = time.perf_counter()
    report = subscribers.import_file(store, export, NOW)
    elapsed = time.perf_counter() - start
    store.close()
    return elapsed, report


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-import-"))
    export = work / "subscribers.csv"
    write_export(export, random.Random(7))
    rows = bare_rows(subscribers.parse_csv(export.read_bytes(), str(export), False))

    # Best of a few runs of each, alternating, each into a new database: the
    # machine's other work slows single runs down, never speeds them up.
    imports, bares = [], []
    for run in range(RUNS):
        elapsed, report = timed_import(work / f"import-{run}.db", export)
        assert report.added == ROWS and not report.problems, report.line()
        imports.append(elapsed)
        bare_db = work / f"bare-{run}.db"
        Store(bare_db).migrate()
        bares.append(bare_executemany(bare_db, rows))
    elapsed, ceiling = min(imports), ROWS / min(bares)

    db = work / "import-0.db"
    before = dump(db)
    store = Store(db)
    start = time.perf_counter()
    again = subscribers.import_file(store, export, NOW + dt.timedelta(days=1))
    reimport = time.perf_counter() - start
    store.close()
    unchanged = dump(db) == before

    rate = ROWS / elapsed
    print(f"bare sqlite3 executemany of the same rows (batches of {BATCH}): {ceiling:,.0f} rows/s")
    print(
        f"newsletter import (parse, validate, suppression, consent records): "
        f"{rate:,.0f} rows/s = {rate / ceiling:.2f} x bare; {ROWS:,} rows in {elapsed:.2f} s"
    )
    print(
        f"re-import of the same file: {reimport:.2f} s, {again.existing:,} already present, "
        f"{again.suppressed:,} suppressed, database {'unchanged' if unchanged else 'CHANGED'}"
    )
    shutil.rmtree(work, ignore_errors=True)
    if not unchanged:
        raise SystemExit("re-import changed the database")


if __name__ == "__main__":
    main()
