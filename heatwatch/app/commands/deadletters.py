"""``heatwatch deadletters list|replay``: what the collector rejected, and a second chance after a fix.

``replay`` sends pending dead letters through the codec again, with the registry and limits as they are now (a home
added to the registry late: ``unknown_home``). Readings that now pass are stored and the letter is marked replayed;
what still fails for the same reason stays pending, untouched; what now fails for another reason becomes a new
pending letter (collector_id ``replay``) and the old one is marked replayed with a note saying so.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson

from collector.codec import Codec, Reject
from collector.deadletter import StoredLetter, deadletter_point, stored_letters
from heatwatch.app.context import App
from heatwatch.core import schema
from heatwatch.core.config import Config
from heatwatch.core.model import Point
from heatwatch.core.registry import Registry
from heatwatch.core.timeutil import Clock, from_ns, parse_cli_time, rfc3339, to_ns, utc_now
from heatwatch.infra.storage import Store, StoreError, StoreUnavailable

CLOCK: Clock = utc_now  # tests replace it to move time
REPLAY_COLLECTOR = "replay"  # collector_id of the letters a replay writes
WRITE_CHUNK = 2_000  # letters handled per store write


@dataclass
class ReplayResult:
    replayed: int = 0  # letters whose readings are now stored (marked replayed)
    readings: int = 0  # readings stored
    unchanged: int = 0  # still failing for the same reason: left pending
    requeued: Counter[str] = field(default_factory=Counter)  # new letters, by their new reason
    skipped: Counter[str] = field(default_factory=Counter)  # letters that cannot be replayed, by why
    refused: int = 0  # letters whose readings the store refused: left pending

    def lines(self, dry_run: bool) -> list[str]:
        would = "would be " if dry_run else ""
        out = [f"{self.replayed} dead letters {would}replayed: {self.readings} readings {would}stored",
               f"{self.unchanged} still fail for the same reason (left pending)"]
        if self.requeued:
            out.append(f"{sum(self.requeued.values())} new dead letters {'would be ' if dry_run else ''}written for other reasons: "
                       + ", ".join(f"{r} {n}" for r, n in sorted(self.requeued.items())))
        if self.skipped:
            out.append("not replayable: " + ", ".join(f"{r} {n}" for r, n in sorted(self.skipped.items())))
        if self.refused:
            out.append(f"{self.refused} dead letters left pending: the store refused their readings")
        return out


def pending_letters(store: Store, since: datetime, until: datetime, reason: str | None, include_replayed: bool = False
                    ) -> list[StoredLetter]:
    where = {"reason": reason} if reason else None
    letters = stored_letters(store.query(schema.DEADLETTER, since, until, where=where))
    return sorted((x for x in letters if include_replayed or x.pending), key=lambda x: x.ts_ns)


def _store_rejected_point(letter: StoredLetter) -> Point | None:
    """The point a ``store_rejected`` letter carries (the store refused it, so it never was a message)."""
    try:
        d = orjson.loads(letter.raw)
        return Point(str(d["measurement"]), dict(d["tags"]), dict(d["fields"]), int(d["ts_ns"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What replaying one letter writes: its readings, then the letters (new ones, and itself marked replayed)."""

    points: list[Point]
    letters: list[Point]
    requeued: list[str]  # reasons of the new letters


def _decide(letter: StoredLetter, codec: Codec, now_ns: int, next_ts: list[int], max_bytes: int,
            result: ReplayResult) -> _Outcome | None:
    """The outcome of replaying one letter; None when it stays as it is (counted in ``result``)."""
    if letter.truncated:
        result.skipped["payload truncated in the store"] += 1
        return None
    if letter.reason == "store_rejected":
        point = _store_rejected_point(letter)
        if point is None:
            result.skipped["store_rejected without a point"] += 1
            return None
        return _Outcome([point], [letter.point(status=schema.DEADLETTER_REPLAYED, note=f"replayed {rfc3339(CLOCK())}")], [])
    if letter.index is not None and letter.topic.endswith("/forecast"):
        result.skipped["forecast point without its forecast"] += 1
        return None
    raw = letter.raw
    decoded = codec.decode(letter.topic, raw, now_ns)
    if not decoded.points and len(decoded.rejects) == 1 and decoded.rejects[0].code == letter.reason:
        result.unchanged += 1
        return None
    letters = []
    for rej in decoded.rejects:
        element = rej
        if letter.index is not None and rej.index is None:  # an array element re-sent alone keeps its place in the array
            element = Reject(rej.code, rej.detail, letter.index, orjson.loads(raw))
        next_ts[0] = max(now_ns, next_ts[0] + 1)
        letters.append(deadletter_point(letter.topic, raw, element, _received_ns(letter), next_ts[0], REPLAY_COLLECTOR,
                                        max_bytes))
    note = f"replayed {rfc3339(CLOCK())}: {len(decoded.points)} readings stored"
    if decoded.rejects:
        note += "; now " + ", ".join(sorted({r.code for r in decoded.rejects})) + f" (new dead letters, collector_id {REPLAY_COLLECTOR})"
    letters.append(letter.point(status=schema.DEADLETTER_REPLAYED, note=note))
    return _Outcome(decoded.points, letters, [r.code for r in decoded.rejects])


def _received_ns(letter: StoredLetter) -> int:
    try:
        return to_ns(datetime.fromisoformat(letter.received_at))
    except ValueError:
        return letter.ts_ns


def replay(cfg: Config, registry: Registry, store: Store, letters: Sequence[StoredLetter], dry_run: bool = False) -> ReplayResult:
    """Re-submit ``letters`` through the codec (see the module docstring); readings first, then the letters' new state,
    chunk by chunk, so a replay cut short is simply run again (writes are idempotent)."""
    codec = Codec(cfg, registry)
    result = ReplayResult()
    next_ts = [0]
    for i in range(0, len(letters), WRITE_CHUNK):
        now_ns = to_ns(CLOCK())
        chunk = [o for x in letters[i : i + WRITE_CHUNK]
                 if (o := _decide(x, codec, now_ns, next_ts, cfg.collector.max_payload_bytes, result)) is not None]
        done = chunk if dry_run else _write(store, chunk)
        result.refused += len(chunk) - len(done)
        for o in done:
            result.replayed += 1
            result.readings += len(o.points)
            result.requeued.update(o.requeued)
    return result


def _write(store: Store, outcomes: list[_Outcome]) -> list[_Outcome]:
    """Write the readings, then the letters of the outcomes whose readings the store took; returns those."""
    try:
        store.write([p for o in outcomes for p in o.points])
        done = outcomes
    except StoreError:  # one refused reading must not hold back the rest: one letter at a time
        done = []
        for o in outcomes:
            try:
                store.write(o.points)
                done.append(o)
            except StoreError as exc:
                print(f"heatwatch: the store refused a replayed reading ({exc}); its dead letter stays pending", file=sys.stderr)
    store.write([p for o in done for p in o.letters])
    return done


# --- output -------------------------------------------------------------------------------------------
def _width(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def _cut(s: str, n: int) -> str:
    s = s.replace("\n", "⏎")
    out, w = "", 0
    for c in s:
        w += _width(c)
        if w > n:
            return out + "…"
        out += c
    return out


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """Columns that line up with Chinese names (wide characters count twice)."""
    cells = [list(header), *[list(r) for r in rows]]
    widths = [max(_width(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c + " " * (w - _width(c)) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --- commands -----------------------------------------------------------------------------------------
def _window(args: argparse.Namespace, cfg: Config) -> tuple[datetime, datetime]:
    now = CLOCK()
    if args.since:
        since = parse_cli_time(args.since, cfg.general.tz, "--since")
    else:
        since = now - timedelta(days=cfg.collector.deadletter_retention_days or cfg.storage.retention_days)
    return since, now + timedelta(minutes=1)


def _list(args: argparse.Namespace) -> int:
    app = App.from_args(args)
    window = _window(args, app.cfg)
    try:
        with app.open_store() as store:
            letters = pending_letters(store, *window, args.reason, include_replayed=args.all)
    except StoreUnavailable as exc:
        print(f"heatwatch: store unavailable: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([x.as_json() for x in letters], ensure_ascii=False, indent=2))
        return 0
    if not letters:
        print("no dead letters" + ("" if args.all else " pending"))
        return 0
    tz = app.cfg.general.tz
    rows = [(rfc3339(from_ns(x.ts_ns), tz), x.reason, x.status, _cut(x.topic, 48),
             _cut(x.detail, 60), _cut(x.payload if x.payload_encoding == "utf-8" else "base64:" + x.payload, 50)) for x in letters]
    print(table(rows, ("time", "reason", "status", "topic", "detail", "payload")))
    by_reason = Counter(x.reason for x in letters)
    print(f"\n{len(letters)} dead letters: " + ", ".join(f"{r} {n}" for r, n in by_reason.most_common()))
    return 0


def _replay(args: argparse.Namespace) -> int:
    app = App.from_args(args)
    window = _window(args, app.cfg)
    started = time.monotonic()
    try:
        with app.open_store() as store:
            letters = pending_letters(store, *window, args.reason)
            result = replay(app.cfg, app.registry, store, letters, dry_run=args.dry_run)
    except StoreUnavailable as exc:
        print(f"heatwatch: store unavailable ({exc}); nothing is lost: run replay again when the store answers", file=sys.stderr)
        return 1
    print(("dry run: nothing written\n" if args.dry_run else "") + "\n".join(result.lines(args.dry_run)))
    print(f"({len(letters)} pending dead letters looked at in {time.monotonic() - started:.1f} s)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser("deadletters", help="readings the collector rejected, kept in the store: list, replay after a fix")
    cmds = p.add_subparsers(dest="deadletters_command", metavar="ACTION", required=True)
    ls = cmds.add_parser("list", help="pending dead letters (newest last)")
    rp = cmds.add_parser("replay", help="send pending dead letters through the codec again (after a registry or limit fix)")
    for q in (ls, rp):
        q.add_argument("--since", metavar="T", help="from this time (RFC 3339 or local); default: the retention window")
        q.add_argument("--reason", metavar="R", help="only this reason code, e.g. unknown_home")
    ls.add_argument("--json", action="store_true", help="one JSON array (payloads as received; UTF-8 kept readable)")
    ls.add_argument("--all", action="store_true", help="also the letters already replayed")
    rp.add_argument("--dry-run", action="store_true", help="say what would happen, write nothing")
    ls.set_defaults(handler=_list)
    rp.set_defaults(handler=_replay)
