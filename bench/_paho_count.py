"""The ceiling for a Python consumer: a paho-mqtt subscriber that only counts (and PUBACKs) messages.

    python -m bench._paho_count PORT CLIENT_ID TOPIC QOS N [--session-only] [--v5] [--fast]
Prints {"n", "seconds", "per_s"} measured from the first to the N-th message. ``--v5`` speaks MQTT 5
(as the collector does; default 3.1.1), ``--fast`` uses the collector's FastClient receive path.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from heatwatch.infra.mqtt.fastsock import FastClient


def main() -> int:
    port, cid, topic, qos, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    session_only = "--session-only" in sys.argv
    v5 = "--v5" in sys.argv
    cls = FastClient if "--fast" in sys.argv else mqtt.Client
    if v5:
        c = cls(callback_api_version=CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    else:
        c = cls(callback_api_version=CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv311, clean_session=False)
    count = [0]
    t = [0.0, 0.0]
    done = threading.Event()
    subscribed = threading.Event()

    def on_connect(client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        client.subscribe(topic, qos=qos)

    def on_subscribe(client: Any, userdata: Any, mid: Any, rcs: Any, props: Any) -> None:
        subscribed.set()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        count[0] += 1
        if count[0] == 1:
            t[0] = time.perf_counter()
        if count[0] >= n:
            t[1] = time.perf_counter()
            done.set()

    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    if v5:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        c.connect("127.0.0.1", port, keepalive=60, clean_start=False, properties=props)
    else:
        c.connect("127.0.0.1", port, keepalive=60)
    c.loop_start()
    if session_only:
        subscribed.wait(10)
        time.sleep(0.3)
        c.disconnect()
        c.loop_stop()
        return 0
    ok = done.wait(900)
    c.disconnect()
    c.loop_stop()
    secs = t[1] - t[0]
    print(json.dumps({"n": count[0], "seconds": round(secs, 3), "per_s": round((count[0] - 1) / secs) if ok and secs > 0 else 0}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
