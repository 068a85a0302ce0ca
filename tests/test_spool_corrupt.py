"""A corrupt spool entry is set aside with a reason, never a wall in front of every later batch.

The entries are corrupted on disk, in the SQLite file itself, as a bad sector or a torn write would."""

from __future__ import annotations

import sqlite3
import time
from datetime import timedelta
from pathlib import Path

import pytest

from collector.service import Collector
from collector.spool import Spool
from heatwatch.core import schema
from heatwatch.core.model import Point
from heatwatch.core.timeutil import to_ns, utc_now
from heatwatch.infra.storage.sqlite import SqliteStore
from tests.helpers import config, registry_for

T0 = to_ns(utc_now() - timedelta(hours=1))


def batch(k: int, n: int = 5) -> list[Point]:
    """Batch k: its readings carry the marker temperature 1k.5 so its bytes can be found in the file."""
    tags = {"home_id": f"H{k:06d}", "community": "幸福小区", "building": "1号楼", "source": "sensor"}
    return [Point(schema.INDOOR, tags, {"temp_c": 10 + k + 0.5}, T0 + k * 1_000_000_000 + i) for i in range(n)]


def corrupt_on_disk(path: Path, needle: bytes, replacement: bytes) -> None:
    """Overwrite the first occurrence of ``needle`` in the closed SQLite file, same length."""
    assert len(needle) == len(replacement)
    raw = path.read_bytes()
    at = raw.find(needle)
    assert at >= 0, f"{needle!r} not in {path}"
    with path.open("r+b") as f:
        f.seek(at)
        f.write(replacement)


def spool_with_three(directory: Path) -> Path:
    spool = Spool(directory, 10 * 1024 * 1024)
    for k in (1, 2, 3):
        spool.append(batch(k))
    path = spool.path
    spool.close()  # the last connection checkpoints the WAL: the entries are in the main file now
    assert not Path(str(path) + "-wal").exists() or Path(str(path) + "-wal").stat().st_size == 0
    return path


@pytest.mark.parametrize(
    ("needle", "replacement", "why"),
    [
        (b'"H000002"', b'"H\xff\xfe\x00002"', "checksum"),  # not UTF-8, not JSON any more
        (b'{"temp_c":12.5}', b'{"temp_c":92.5}', "checksum"),  # still valid JSON: only the checksum can tell
        (b'{"temp_c":12.5},', b'[],' + b' ' * 13, "checksum"),  # valid JSON, wrong shape (a list for the fields)
    ],
    ids=["garbage", "flipped-digit", "wrong-shape"],
)
def test_corrupt_entry_is_set_aside_and_the_rest_replays(tmp_path: Path, needle: bytes, replacement: bytes, why: str) -> None:
    path = spool_with_three(tmp_path / "spool")
    corrupt_on_disk(path, needle, replacement)
    spool = Spool(tmp_path / "spool", 10 * 1024 * 1024)  # the restart
    assert spool.batches == 3 and spool.points == 15
    seen = []
    while (head := spool.oldest()) is not None:
        seq, pts = head
        seen.append({p.fields["temp_c"] for p in pts})
        spool.remove(seq)
    assert seen == [{11.5}, {13.5}]  # batch 2 skipped, batch 3 after it
    assert spool.batches == 0 and spool.points == 0 and spool.bytes == 0
    assert spool.quarantined == 1
    (entry,) = spool.set_aside()
    assert entry.seq == 2 and entry.n == 5 and why in entry.reason and len(entry.data) > 0
    spool.close()
    # set aside for good: a later restart neither replays it nor loses the record of it
    again = Spool(tmp_path / "spool", 10 * 1024 * 1024)
    assert again.batches == 0 and again.oldest() is None and len(again.set_aside()) == 1
    again.close()


def test_a_spool_written_before_checksums_still_replays(tmp_path: Path) -> None:
    """Entries of an older spool (no checksum column) are read as before; the column is added on open. Without a
    checksum, an entry of the wrong shape is still caught when it is read."""
    d = tmp_path / "spool"
    d.mkdir()
    db = sqlite3.connect(d / "spool.sqlite")
    db.execute("CREATE TABLE batches (seq INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL, data BLOB NOT NULL)")
    for blob in (b'[["indoor",{"home_id":"H1"},[],1]]', b'[["indoor",{"home_id":"H1"},{"temp_c":20.5},1]]'):
        db.execute("INSERT INTO batches (n, data) VALUES (1, ?)", (blob,))
    db.commit()
    db.close()
    spool = Spool(d, 1024 * 1024)
    head = spool.oldest()
    assert head is not None and head[0] == 2 and head[1][0].fields == {"temp_c": 20.5}
    assert [e.seq for e in spool.set_aside()] == [1] and "cannot be read" in spool.set_aside()[0].reason
    spool.remove(2)
    spool.append(batch(1))
    head = spool.oldest()
    assert head is not None and len(head[1]) == 5
    spool.close()


def test_collector_replays_past_a_corrupt_entry(tmp_path: Path) -> None:
    """The restart of a collector whose spool holds a corrupt entry: later batches reach the store, new ones too."""
    cfg = config(tmp_path, 1883)
    path = spool_with_three(cfg.spool_dir)
    corrupt_on_disk(path, b'"H000002"', b'"H\xff\xfe\x00002"')
    store = SqliteStore(tmp_path / "s.sqlite")
    col = Collector(cfg, registry_for(5), store)
    # the writer alone, as the collector runs it (no broker needed: nothing is received)
    col._writer.start()
    window = (utc_now() - timedelta(hours=2), utc_now())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and col.snapshot()["replayed"] < 10:  # counted after the spool entry is removed
        time.sleep(0.05)
    assert store.count(schema.INDOOR, *window) == 10
    assert sorted(set(store.query(schema.INDOOR, *window)["temp_c"])) == [11.5, 13.5]
    assert col.spool.batches == 0 and col.snapshot()["spool_set_aside"] == 1
    col._stop.set()
    col._decoded.put(None)
    col._writer.join(10)
    col.spool.close()
    store.close()


def test_a_damaged_spool_file_is_moved_aside_and_what_is_readable_replays(tmp_path: Path) -> None:
    """SQLite itself reports the file as malformed (a b-tree page overwritten): the readable entries go on to a
    fresh spool, the file is kept in corrupt/ with the reason, and replay is not blocked."""
    d = tmp_path / "spool"
    spool = Spool(d, 100 * 1024 * 1024)
    for k in range(1, 201):
        spool.append(batch(k, n=10))
    spool.close()
    path = d / "spool.sqlite"
    raw = path.read_bytes()
    page = int.from_bytes(raw[16:18], "big")
    victim = raw.find(b'"H000100"') // page * page  # the table leaf page holding batch 100
    with path.open("r+b") as f:
        f.seek(victim)
        f.write(b"\x00" * 8)  # its page header: no longer a b-tree page
    spool = Spool(d, 100 * 1024 * 1024)
    replayed = []
    while (head := spool.oldest()) is not None:
        replayed.append(head[1][0].tags["home_id"])
        spool.remove(head[0])
    assert spool.files_set_aside == 1
    lost = {f"H{k:06d}" for k in range(1, 201)} - set(replayed)
    assert "H000100" in lost and 0 < len(lost) < 40, len(lost)  # only the entries on the damaged page
    assert replayed == sorted(replayed)  # still oldest first
    (kept,) = (d / "corrupt").glob("spool-*.sqlite")
    reason = Path(str(kept) + ".reason.txt").read_text(encoding="utf-8")
    assert "malformed" in reason and f"{len(lost)} could not be read" in reason
    spool.append(batch(500))  # the fresh spool takes new batches
    assert spool.batches == 1
    spool.close()
