"""``heatwatch run`` with the desk's doors open: orders over HTTP and MQTT reach one desk; figures reach the store."""

from __future__ import annotations

import http.client
import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from heatwatch.app.service import Service
from heatwatch.core import schema
from heatwatch.core.config import load_config
from heatwatch.core.registry import Registry
from heatwatch.core.timeutil import utc_now
from heatwatch.infra.mqtt.client import AckedPublisher, Endpoint
from heatwatch.infra.mqtt.topics import orders_accepted_topic, orders_new_topic
from heatwatch.infra.storage.sqlite import SqliteStore
from tools.servers import Mosquitto, free_port

ORDER = {"reporter": "周强", "phone": "13600000000", "address": "东风小区 7号楼 101", "home_id": "H-7101", "community": "东风小区",
         "category": "not_warm", "content": "客厅16度", "handling_unit": "东风站班组"}


@pytest.mark.mosquitto
def test_run_takes_orders_over_http_and_mqtt_and_writes_the_figures(tmp_path: Path, mosquitto: Mosquitto) -> None:
    prefix, http_port = f"r{uuid.uuid4().hex[:8]}", free_port()
    conf = tmp_path / "hw.toml"
    conf.write_text(f"""
[general]
data_dir = "{tmp_path / 'data'}"
[mqtt]
port = {mosquitto.port}
topic_prefix = "{prefix}"
client_id = "run-{prefix}"
[analytics]
interval_min = 600
[run]
parts = ["analytics"]
[desk]
http_port = {http_port}
mqtt_intake = true
escalate_mqtt = false
tick_interval_s = 3600
[desk.operators."lina"]
token = "tok-lina-5c1d"
""", encoding="utf-8")
    cfg = load_config(conf, environ={})
    store = SqliteStore(tmp_path / "data" / "hw.sqlite")
    listener = AckedPublisher(Endpoint(port=mosquitto.port), f"l-{prefix}", subscribe=[orders_accepted_topic(prefix)]).connect()
    svc = Service(cfg, Registry({}, {}), store).start()
    try:
        assert svc.desk_doors is not None and svc.desk_doors.mqtt.subscribed.wait(10)
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
        conn.request("POST", "/orders", json.dumps(ORDER, ensure_ascii=False).encode(),
                     {"Authorization": "Bearer tok-lina-5c1d", "Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 201, resp.read()
        by_http = json.loads(resp.read())["order_id"]
        conn.close()
        listener.publish(orders_new_topic(prefix), json.dumps({**ORDER, "ref": "wx-9"}, ensure_ascii=False).encode())
        _, answer = listener.inbox.get(timeout=10)
        by_mqtt = json.loads(answer)["order_id"]
        desk = svc.desk.desk  # the desk job's desk: the same file
        assert [e["by"] for e in desk.history(by_http)] == ["lina"] and desk.get(by_mqtt).source == "mqtt"
        assert svc.snapshot()["desk_intake"]["mqtt"]["accepted"] == 1

        svc.scheduler.get_job("desk_figures").func()  # the job as the scheduler runs it
        now = utc_now()
        got = store.query(schema.DESK_FIGURES, now - timedelta(days=70), now + timedelta(days=1))
        total = got[got["handling_unit"] == "ALL"]
        assert total["received"].max() == 2
        overdue = store.query(schema.DESK_OVERDUE, now - timedelta(hours=1), now + timedelta(hours=1))
        assert list(overdue[overdue["handling_unit"] == "ALL"]["count"]) == [0]
    finally:
        svc.stop()
        listener.close()
        store.close()
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
    with pytest.raises(ConnectionRefusedError):
        conn.request("GET", "/orders")
