from __future__ import annotations

import urllib.request

from tools.servers import Influxd, Mosquitto


def test_mosquitto_and_influxd_start(mosquitto: Mosquitto, influxd: Influxd) -> None:
    assert mosquitto.proc is not None and mosquitto.proc.poll() is None
    with urllib.request.urlopen(influxd.url + "/ping") as r:
        assert r.status == 204
