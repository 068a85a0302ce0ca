"""Health of a running ``heatwatch run``: a snapshot file, an optional HTTP endpoint, and probes.

The service rewrites ``<data_dir>/status.json`` (atomically) every ``[run] status_interval_s`` and,
when ``[run] http_port`` is set, serves ``/healthz`` (200 healthy / 503 not) and ``/status`` (the
snapshot). ``heatwatch status`` reads either, says when the snapshot is stale, and probes the broker
and the store itself, so it also answers when no service is running.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from heatwatch.core.config import Config, ConfigError

log = logging.getLogger("heatwatch.app.status")
Snapshot = dict[str, Any]
STALE_AFTER_INTERVALS = 3


def status_path(cfg: Config) -> Path:
    return cfg.general.data_dir / "status.json"


def healthy(snap: Snapshot) -> bool:
    """Broker connected and progress being made (when collecting), store reachable: what a supervisor needs.

    "Connected" alone is not health: a collector holding unacknowledged readings with no progress is
    unhealthy whatever the socket says (collector.service.Collector.live).
    """
    collecting = "collector" in snap.get("parts", [])
    broker_ok = snap.get("broker", {}).get("connected", True) if collecting else True
    live = snap.get("ingest", {}).get("live", True) if collecting else True
    return bool(broker_ok and live and snap.get("store", {}).get("reachable", False))


def ready(snap: Snapshot) -> bool:
    """Subscribed (when collecting): readings published from now on reach the collector."""
    if "collector" not in snap.get("parts", []):
        return snap.get("state") == "running"
    return snap.get("state") == "running" and bool(snap.get("broker", {}).get("subscribed", False))


def metrics_text(snap: Snapshot) -> bytes:
    """``/metrics``: the collector's counters in Prometheus text format (empty when not collecting)."""
    c = snap.get("collector")
    if not c:
        return b""
    from collector.metrics import render

    return render(c, {"collector_id": str(snap.get("collector_id") or "")})


def write_snapshot(path: Path, snap: Snapshot) -> None:
    """Atomic replace, so a reader never sees half a file."""
    write_bytes_atomic(path, json.dumps(snap, ensure_ascii=False, indent=2).encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def is_stale(snap: Snapshot, now: datetime, interval_s: float) -> bool:
    try:
        updated = datetime.fromisoformat(snap["updated_at"])
    except (KeyError, TypeError, ValueError):
        return True
    return (now - updated).total_seconds() > STALE_AFTER_INTERVALS * interval_s


def read_snapshot(cfg: Config, timeout: float = 3.0) -> tuple[Snapshot | None, str]:
    """The running service's snapshot and where it came from ("http://…" or the file path)."""
    r = cfg.run
    if r.http_port:
        url = f"http://{r.http_host}:{r.http_port}/status"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return json.loads(resp.read().decode("utf-8")), url
        except (urllib.error.URLError, OSError, ValueError):
            pass  # not serving: fall back to the file
    path = status_path(cfg)
    try:
        return json.loads(path.read_text(encoding="utf-8")), str(path)
    except FileNotFoundError:
        return None, str(path)
    except (OSError, ValueError) as exc:
        return None, f"{path} (unreadable: {exc})"


def probe_broker(cfg: Config, timeout: float = 5.0) -> tuple[bool, str]:
    """Connect and disconnect with a throwaway clean session (never the collector's own client id)."""
    from heatwatch.infra.mqtt.client import make_client

    done = threading.Event()
    result: dict[str, str] = {}

    def on_connect(client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        result["rc"] = str(reason_code)
        result["ok"] = "" if reason_code.is_failure else "1"
        done.set()

    try:
        client = make_client(cfg, f"heatwatch-status-{os.getpid()}", persistent=False)
    except Exception as exc:  # bad TLS files and the like: report, do not crash the status command
        return False, f"cannot set up the MQTT client: {exc}"
    client.on_connect = on_connect
    where = f"{cfg.mqtt.host}:{cfg.mqtt.port}"
    try:
        client.connect(cfg.mqtt.host, cfg.mqtt.port, keepalive=10)
        client.loop_start()
        if not done.wait(timeout):
            return False, f"{where}: no CONNACK within {timeout:g} s"
        return (True, f"{where}: connected") if result.get("ok") else (False, f"{where}: refused ({result.get('rc')})")
    except OSError as exc:
        return False, f"{where}: {exc.strerror or exc}"
    finally:
        try:
            client.disconnect()
            client.loop_stop()
        except Exception:  # best effort on the way out
            log.debug("probe disconnect failed", exc_info=True)


def probe_store(cfg: Config) -> tuple[bool, str]:
    from heatwatch.infra.storage import open_store
    from heatwatch.infra.storage.base import StoreError, StoreUnavailable

    try:
        store = open_store(cfg)
    except (StoreUnavailable, StoreError, OSError) as exc:
        return False, f"{cfg.storage.backend}: {exc}"
    try:
        store.ping()
        return True, f"{cfg.storage.backend}: {store.name} reachable"
    except (StoreUnavailable, StoreError, OSError) as exc:
        return False, f"{cfg.storage.backend}: {exc}"
    finally:
        store.close()


class HttpPortUnavailable(ConfigError):
    """``[run] http_port`` cannot be bound: one line for the operator, exit 2; a restart would not help."""

    def __init__(self, host: str, port: int, exc: OSError) -> None:
        if exc.errno == errno.EADDRINUSE:
            why = ("is already in use (another heatwatch process sharing this config, or another server); give each "
                   "process its own port, or 0 to turn HTTP off (status stays in <data_dir>/status.json)")
        else:
            why = f"cannot be bound: {exc.strerror or exc}; check [run] http_host and the port"
        super().__init__(f"[run] http_port {port} (HEATWATCH_RUN_HTTP_PORT) on {host} {why}")
        self.port = port


class StatusServer:
    """``/healthz`` and ``/status`` over HTTP, from the latest snapshot (no work on request).

    Port 0 binds an ephemeral port (``self.port``); the service never passes 0, which is "HTTP off" there.
    """

    def __init__(self, host: str, port: int, latest: Callable[[], Snapshot]) -> None:
        latest_fn = latest

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                snap = latest_fn()
                if self.path.rstrip("/") == "/healthz":
                    ok = healthy(snap)
                    self._send(200 if ok else 503, {"healthy": ok})
                elif self.path.rstrip("/") == "/readyz":
                    ok = ready(snap)
                    self._send(200 if ok else 503, {"ready": ok})
                elif self.path.rstrip("/") == "/metrics":
                    data = metrics_text(snap)
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                elif self.path.rstrip("/") in ("/status", ""):
                    self._send(200, snap)
                else:
                    self._send(404, {"error": f"no such path {self.path}; try /healthz, /readyz, /metrics or /status"})

            def _send(self, code: int, body: Snapshot) -> None:
                data = json.dumps(body, ensure_ascii=False).encode("utf-8")
                self.send_response(code)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("http %s", format % args)

        try:  # bind here, so a taken port stops the service before it starts anything
            self.httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise HttpPortUnavailable(host, port, exc) from None
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="heatwatch-status-http", daemon=True)

    def start(self) -> StatusServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
