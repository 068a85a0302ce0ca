"""Which broker settings keep a collector's persistent session (and its queued readings) across a broker restart.

For each broker that runs here: a persistent QoS 1 subscriber connects and subscribes, goes away, 20 readings
are published while it is away, the broker restarts (graceful SIGTERM), the subscriber comes back. Reported:
"session present" in the CONNACK and how many of the 20 queued readings arrive. Run:

    .venv/bin/python -m bench.broker_sessions [--json out.json]

Mosquitto 2.0.20 (the compose image) needs Docker, which does not run on these machines: not measured here.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench._common import Mosquitto

N = 20


class Sub:
    def __init__(self, port: int, protocol: int, expiry_s: int = 3600) -> None:
        self.got: list[bytes] = []
        self.present: bool | None = None
        self.ready = threading.Event()
        self.c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="session-probe", protocol=protocol,
                             clean_session=False if protocol == mqtt.MQTTv311 else None)
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = lambda *a: self.ready.set()
        self.c.on_message = lambda c, u, m: self.got.append(bytes(m.payload))
        kw: dict[str, Any] = {}
        if protocol == mqtt.MQTTv5:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = expiry_s
            kw = {"clean_start": False, "properties": props}
        self.c.connect("127.0.0.1", port, keepalive=10, **kw)
        self.c.loop_start()

    def _on_connect(self, c: mqtt.Client, u: Any, flags: Any, rc: Any, p: Any) -> None:
        self.present = bool(flags.session_present)
        c.subscribe("sess/#", qos=1)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def publish(port: int) -> None:
    p = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="session-pub")
    p.connect("127.0.0.1", port)
    p.loop_start()
    infos = [p.publish(f"sess/{i}", str(i).encode(), qos=1) for i in range(N)]
    for info in infos:
        info.wait_for_publish(10)
    p.disconnect()
    p.loop_stop()


def run_one(start: Any, restart: Any, port: int, protocol: int, expiry_s: int = 3600) -> dict[str, Any]:
    s = Sub(port, protocol, expiry_s)
    assert s.ready.wait(10), "no SUBACK"
    s.close()
    publish(port)
    restart()
    s2 = Sub(port, protocol, expiry_s)
    deadline = time.monotonic() + 10
    while len(s2.got) < N and time.monotonic() < deadline:
        time.sleep(0.05)
    s2.close()
    return {"session_present": s2.present, "queued_delivered": len(s2.got), "queued": N}


def mosquitto_case(extra: str, protocol: int, expiry_s: int = 3600) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        m = Mosquitto(Path(d))
        if "persistence false" in extra:
            m.conf.write_text(m.conf.read_text().replace("persistence true", "persistence false"))
        m.start()
        try:
            return run_one(m.start, m.restart, m.port, protocol, expiry_s)
        finally:
            m.stop()


def amqtt_case() -> dict[str, Any]:
    from heatwatch.infra.embedded_broker import EmbeddedBroker

    b = EmbeddedBroker().start()
    holder = {"b": b}

    def restart() -> None:
        holder["b"].stop()
        holder["b"] = EmbeddedBroker(port=b.port).start()

    try:
        return run_one(None, restart, b.port, mqtt.MQTTv311)
    finally:
        holder["b"].stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import subprocess

    version = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout.splitlines()[0:1]
    rows = []
    for name, fn in [
        ("mosquitto persistence true (MQTT 5, expiry 1 h)", lambda: mosquitto_case("", mqtt.MQTTv5)),
        ("mosquitto persistence true (MQTT 5, expiry 7 d)", lambda: mosquitto_case("", mqtt.MQTTv5, 7 * 86_400)),
        ("mosquitto persistence true (MQTT 3.1.1)", lambda: mosquitto_case("", mqtt.MQTTv311)),
        ("mosquitto persistence false (MQTT 5)", lambda: mosquitto_case("persistence false", mqtt.MQTTv5)),
        ("amqtt embedded (MQTT 3.1.1)", amqtt_case),
    ]:
        r = fn()
        rows.append({"broker": name, **r})
        print(f"{name:<50} session present: {r['session_present']!s:<5}  queued readings delivered: "
              f"{r['queued_delivered']}/{r['queued']}")
    print(f"({version[0] if version else 'mosquitto'})")
    if args.json:
        args.json.write_text(json.dumps({"mosquitto": version, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
