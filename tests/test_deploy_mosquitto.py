"""deploy/mosquitto: the real broker started on the committed mosquitto.conf + acl (ports and paths
rewritten to temp ones), with a password file built by the committed make-passwd.sh.

Checks what the deployment promises: no anonymous access, a sensor publishes only its own topic,
collectors share the load on a shared subscription, and a persistent collector session keeps more
queued messages than Mosquitto's default limit (1000) across a broker restart.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tools.servers import free_port, require_binary, wait_port

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto"
PASSWORDS = {"heatwatch-collector": "c-secret", "heatwatch-service": "s-secret", "heatwatch-simulator": "sim:secret"}
SENSORS = {"XF-1-1-101": "pw-101", "XF-1-1-102": "pw-102", "S01": "pw-station"}

pytestmark = pytest.mark.mosquitto


def make_passwd(tmp: Path) -> Path:
    """Run the committed make-passwd.sh with temp secrets and a sensors file."""
    require_binary("mosquitto_passwd", "mosquitto")
    secrets = tmp / "secrets"
    secrets.mkdir()
    for user, name in (("heatwatch-collector", "mqtt_collector_password"), ("heatwatch-service", "mqtt_service_password"),
                       ("heatwatch-simulator", "mqtt_simulator_password")):
        (secrets / name).write_text(PASSWORDS[user] + "\n", encoding="utf-8")
    sensors = tmp / "sensors.txt"
    sensors.write_text("# devices\n\n" + "".join(f"{u} {p}\n" for u, p in SENSORS.items()), encoding="utf-8")
    out = tmp / "auth" / "passwd"
    env = {**os.environ, "SECRETS_DIR": str(secrets), "SENSORS_FILE": str(sensors), "PASSWD_FILE": str(out)}
    res = subprocess.run(["sh", str(DEPLOY / "make-passwd.sh")], env=env, capture_output=True, text=True, timeout=60,
                         check=False)
    assert res.returncode == 0, res.stderr
    assert "3 sensor(s)" in res.stdout
    return out


class Broker:
    def __init__(self, tmp: Path, passwd: Path) -> None:
        self.binary = require_binary("mosquitto", "mosquitto")
        self.port = free_port()
        self.tmp = tmp
        data = tmp / "data"
        data.mkdir()
        text = (DEPLOY / "mosquitto.conf").read_text(encoding="utf-8")
        rewrites = {
            r"^listener 1883$": f"listener {self.port} 127.0.0.1",
            r"^password_file .*$": f"password_file {passwd}",
            r"^acl_file .*$": f"acl_file {DEPLOY / 'acl'}",
            r"^persistence_location .*$": f"persistence_location {data}/",
        }
        for pattern, repl in rewrites.items():
            text, n = re.subn(pattern, repl, text, flags=re.M)
            assert n == 1, f"deploy/mosquitto/mosquitto.conf: expected one line matching {pattern}"
        if os.geteuid() == 0:  # as root, mosquitto would switch to user "mosquitto" and lose the temp dir
            text += "\nuser root\n"
        self.conf = tmp / "mosquitto.conf"
        self.conf.write_text(text, encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Broker:
        log = (self.tmp / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=log, stderr=log)
        wait_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path, make_passwd(tmp_path)).start()
    yield b
    b.stop()


class Client:
    """A small synchronous wrapper: connect result, subscribe result, publish result, received messages."""

    def __init__(self, port: int, user: str | None, password: str | None, client_id: str | None = None,
                 clean: bool = True, expiry: int = 0, v311: bool = False) -> None:
        cid = client_id or f"t-{uuid.uuid4().hex[:8]}"
        if v311:
            self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv311, clean_session=clean)
        else:
            self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
        if user is not None:
            self.c.username_pw_set(user, password)
        self.connected = threading.Event()
        self.reason: object = None
        self.granted: list[int] = []
        self.subscribed = threading.Event()
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = self._on_message
        self.session_present = False
        if v311:
            self.c.connect("127.0.0.1", port, keepalive=30)
        else:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = expiry
            self.c.connect("127.0.0.1", port, keepalive=30, clean_start=clean, properties=props)
        self.c.loop_start()
        self.connected.wait(10)

    def _on_connect(self, c: mqtt.Client, u: object, flags: object, reason: object, props: object) -> None:
        self.reason = reason
        self.session_present = bool(getattr(flags, "session_present", False))
        self.connected.set()

    def _on_subscribe(self, c: mqtt.Client, u: object, mid: int, reasons: list[ReasonCode], props: Properties) -> None:
        self.granted = [int(r.value) for r in reasons]
        self.subscribed.set()

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    @property
    def ok(self) -> bool:
        return self.connected.is_set() and not getattr(self.reason, "is_failure", True)

    def subscribe(self, topic: str) -> list[int]:
        self.subscribed.clear()
        self.c.subscribe(topic, qos=1)
        assert self.subscribed.wait(10)
        return self.granted

    def publish(self, topic: str, payload: bytes) -> int:
        info = self.c.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        return info.rc

    def wait_for(self, n: int, timeout: float = 10) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= n:
                    break
            time.sleep(0.02)
        with self.lock:
            return list(self.messages)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_make_passwd_hashes_every_password(tmp_path: Path) -> None:
    out = make_passwd(tmp_path)
    lines = out.read_text(encoding="utf-8").splitlines()
    users = {ln.split(":", 1)[0] for ln in lines}
    assert users == set(PASSWORDS) | set(SENSORS)
    text = out.read_text(encoding="utf-8")
    for pw in [*PASSWORDS.values(), *SENSORS.values()]:
        assert pw not in text
    assert all(ln.split(":", 1)[1].startswith("$") for ln in lines)  # mosquitto hash format
    # a malformed sensors line is refused, not half-written
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "mqtt_collector_password").write_text("x")
    (bad / "mqtt_service_password").write_text("y")
    (bad / "sensors.txt").write_text("only-a-user\n")
    res = subprocess.run(["sh", str(DEPLOY / "make-passwd.sh")], capture_output=True, text=True, timeout=60, check=False,
                         env={**os.environ, "SECRETS_DIR": str(bad), "SENSORS_FILE": str(bad / "sensors.txt"),
                              "PASSWD_FILE": str(bad / "passwd")})
    assert res.returncode != 0 and "expected 'username password'" in res.stderr and not (bad / "passwd").exists()


def test_no_anonymous_or_wrong_password(broker: Broker) -> None:
    anon = Client(broker.port, None, None)
    wrong = Client(broker.port, "XF-1-1-101", "nope")
    good = Client(broker.port, "XF-1-1-101", SENSORS["XF-1-1-101"])
    try:
        assert not anon.ok and not wrong.ok and good.ok
    finally:
        for c in (anon, wrong, good):
            c.close()


def pub(broker: Broker, user: str, password: str, topic: str, payload: str) -> str:
    """Publish with the C client at QoS 1 over MQTT 5: it prints 'Not authorized' when the ACL denies it.

    (paho 2.2 drops its connection after a PUBACK with reason 0x87, so denied publishes use mosquitto_pub.)
    """
    binary = require_binary("mosquitto_pub", "mosquitto-clients")
    res = subprocess.run([binary, "-h", "127.0.0.1", "-p", str(broker.port), "-u", user, "-P", password, "-V", "mqttv5",
                          "-q", "1", "-t", topic, "-m", payload], capture_output=True, text=True, timeout=30, check=False)
    assert res.returncode == 0, res.stderr
    return res.stderr


DENIED = "Not authorized"


def barrier(broker: Broker, topic: str, *clients: Client, timeout: float = 10.0) -> None:
    """Publish a marker on ``topic`` (as heatwatch-service, which may write there) and wait until every client has
    it, then drop it from their messages. Mosquitto routes a message to its subscribers when it accepts it, and
    each subscriber gets its queue in order: anything the broker let through before the marker has arrived by now.
    """
    marker = f"barrier-{uuid.uuid4().hex[:8]}".encode()
    assert DENIED not in pub(broker, "heatwatch-service", PASSWORDS["heatwatch-service"], topic, marker.decode())
    deadline = time.monotonic() + timeout
    for c in clients:
        while True:
            with c.lock:
                if any(p == marker for _, p in c.messages):
                    c.messages[:] = [m for m in c.messages if m[1] != marker]
                    break
            assert time.monotonic() < deadline, f"the barrier on {topic} did not reach every client"
            time.sleep(0.02)


def test_sensor_publishes_only_its_own_topic(broker: Broker) -> None:
    group = f"g{uuid.uuid4().hex[:6]}"
    collector = Client(broker.port, "heatwatch-collector", PASSWORDS["heatwatch-collector"])
    sensor = Client(broker.port, "XF-1-1-101", SENSORS["XF-1-1-101"])
    try:
        assert collector.ok and sensor.ok
        assert collector.subscribe(f"$share/{group}/heat/#") == [1]
        pw = SENSORS["XF-1-1-101"]
        assert DENIED in pub(broker, "XF-1-1-101", pw, "heat/indoor/XF-1-1-102", '{"temp_c": 30}')  # another home
        assert DENIED in pub(broker, "XF-1-1-101", pw, "heat/station/S01", '{"supply_c": 99}')  # a station
        assert DENIED in pub(broker, "XF-1-1-101", pw, "heat/control/setpoint/S01", "99")
        assert DENIED not in pub(broker, "XF-1-1-101", pw, "heat/indoor/XF-1-1-101", '{"temp_c": 17.5}')  # its own
        # a sensor cannot read other homes' data (Mosquitto grants the wildcard, then filters each message)
        sensor.subscribe("heat/#")
        assert DENIED not in pub(broker, "XF-1-1-102", SENSORS["XF-1-1-102"], "heat/indoor/XF-1-1-102", '{"temp_c": 19}')
        # the sensor may read only its own setpoint topic: a marker there reaches both, after anything let through
        barrier(broker, "heat/control/setpoint/XF-1-1-101", collector, sensor)
        assert collector.messages == [("heat/indoor/XF-1-1-101", b'{"temp_c": 17.5}'),
                                      ("heat/indoor/XF-1-1-102", b'{"temp_c": 19}')]
        assert sensor.messages == []
    finally:
        collector.close()
        sensor.close()


def test_station_reads_only_its_setpoint_and_services_their_topics(broker: Broker) -> None:
    station = Client(broker.port, "S01", SENSORS["S01"])
    collector = Client(broker.port, "heatwatch-collector", PASSWORDS["heatwatch-collector"])
    service_pw, collector_pw = PASSWORDS["heatwatch-service"], PASSWORDS["heatwatch-collector"]
    try:
        assert station.subscribe("heat/control/setpoint/#") == [1]
        assert collector.subscribe("heat/alerts/#") == [1]
        assert DENIED in pub(broker, "heatwatch-collector", collector_pw, "heat/control/setpoint/S01", "99")
        assert DENIED in pub(broker, "heatwatch-collector", collector_pw, "heat/indoor/XF-1-1-101", "{}")
        assert DENIED not in pub(broker, "heatwatch-collector", collector_pw, "heat/deadletter", "{}")
        assert DENIED not in pub(broker, "heatwatch-service", service_pw, "heat/control/setpoint/S02", "70")
        assert DENIED not in pub(broker, "heatwatch-service", service_pw, "heat/control/setpoint/S01", "61.5")
        assert DENIED not in pub(broker, "heatwatch-service", service_pw, "heat/alerts/community_cold", "幸福小区 室温不达标")
        assert DENIED in pub(broker, "heatwatch-service", service_pw, "heat/indoor/XF-1-1-101", "{}")
        assert DENIED not in pub(broker, "heatwatch-service", service_pw, "heat/orders/refused", '{"error": "缺少电话"}')
        assert DENIED in pub(broker, "heatwatch-service", service_pw, "heat/orders/new", "{}")  # only a front end's user
        assert station.wait_for(1) == [("heat/control/setpoint/S01", b"61.5")]  # not S02's
        assert collector.wait_for(1) == [("heat/alerts/community_cold", "幸福小区 室温不达标".encode())]
        barrier(broker, "heat/control/setpoint/S01", station)
        barrier(broker, "heat/alerts/barrier", collector)
        assert station.messages == [("heat/control/setpoint/S01", b"61.5")]
        assert collector.messages == [("heat/alerts/community_cold", "幸福小区 室温不达标".encode())]
    finally:
        for c in (station, collector):
            c.close()


def test_shared_subscription_splits_between_two_collectors(broker: Broker) -> None:
    group = f"g{uuid.uuid4().hex[:6]}"
    a = Client(broker.port, "heatwatch-collector", PASSWORDS["heatwatch-collector"], client_id="heatwatch-collector-a")
    b = Client(broker.port, "heatwatch-collector", PASSWORDS["heatwatch-collector"], client_id="heatwatch-collector-b")
    sim = Client(broker.port, "heatwatch-simulator", PASSWORDS["heatwatch-simulator"])
    try:
        assert a.subscribe(f"$share/{group}/heat/#") == [1] and b.subscribe(f"$share/{group}/heat/#") == [1]
        n = 200
        for i in range(n):
            sim.publish(f"heat/indoor/XF-1-{i}", str(i).encode())
        deadline = time.monotonic() + 10
        while len(a.messages) + len(b.messages) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        got = sorted(int(p) for _, p in a.messages + b.messages)
        assert got == list(range(n))  # each message to exactly one collector
        assert len(a.messages) > n * 0.2 and len(b.messages) > n * 0.2  # and both did work
    finally:
        for c in (a, b, sim):
            c.close()


def _queue_1500_for_offline_collector(broker: Broker, cid: str, v311: bool) -> int:
    first = Client(broker.port, "heatwatch-collector", PASSWORDS["heatwatch-collector"], client_id=cid,
                   clean=not v311, expiry=3600, v311=v311)
    assert first.subscribe("heat/indoor/#") == [1]
    first.close()
    sim = Client(broker.port, "heatwatch-simulator", PASSWORDS["heatwatch-simulator"])
    n = 1500  # Mosquitto's default max_queued_messages (1000) would drop 500 of them
    infos = [sim.c.publish(f"heat/indoor/H{i % 50}", str(i).encode(), qos=1) for i in range(n)]
    for info in infos:
        info.wait_for_publish(20)
    sim.close()
    return n


def test_offline_mqtt5_session_keeps_more_than_1000_queued_messages(broker: Broker) -> None:
    n = _queue_1500_for_offline_collector(broker, "heatwatch-collector-v5", v311=False)
    again = Client(broker.port, "heatwatch-collector", PASSWORDS["heatwatch-collector"], client_id="heatwatch-collector-v5",
                   clean=False, expiry=3600)
    try:
        assert again.session_present
        assert sorted(int(p) for _, p in again.wait_for(n, timeout=30)) == list(range(n))
    finally:
        again.close()


def test_persistent_session_keeps_queued_messages_across_broker_restart(broker: Broker) -> None:
    """persistence true: the queue of an offline collector survives a broker restart.

    MQTT 3.1.1 here: with Mosquitto 2.0.11 (Debian 12) an MQTT 5 session is not restored after a restart
    (session_present is false and the queue is gone), a 3.1.1 clean_session=false one is; see
    docs/OPERATIONS.md (Troubleshooting).
    """
    n = _queue_1500_for_offline_collector(broker, "heatwatch-collector-311", v311=True)
    broker.stop()  # SIGTERM: sessions and queues are written to mosquitto.db
    broker.start()
    again = Client(broker.port, "heatwatch-collector", PASSWORDS["heatwatch-collector"], client_id="heatwatch-collector-311",
                   clean=False, v311=True)
    try:
        assert again.session_present
        assert sorted(int(p) for _, p in again.wait_for(n, timeout=30)) == list(range(n))
    finally:
        again.close()
