"""paho's receive loop made cheaper for the collector (its hot path: see docs/PERFORMANCE.md).

Profiling showed paho's network thread, not decoding or storage, holding the GIL most of the time.
Stock paho reads every inbound packet with three or more ``recv`` calls (command byte, remaining
length byte by byte, body), goes back to ``select()`` after each packet, and matches every topic
against its per-topic callback tree even when none is registered. ``FastClient`` changes just that:

* ``BufferedSocket``: one ``recv`` fetches up to 256 KiB, the small reads are served from memory,
  and ``pending()`` — the hook paho already uses for TLS sockets — says more is buffered;
* ``loop_read`` goes on reading while whole packets are buffered, instead of one packet per select;
* ``_handle_publish`` decodes a QoS 0/1 PUBLISH without MQTT 5 properties (every sensor message)
  without building a ``Properties`` object and a ``threading.Condition`` per message; anything
  else (properties present, QoS 2, malformed) takes paho's own path;
* ``_handle_on_message`` calls ``on_message`` directly when no ``message_callback_add`` is in use.

Only plain TCP / Unix sockets are wrapped: TLS sockets buffer on their own, websockets are left alone.

The collector's other uses of paho internals live here too (``ack_qos1``, ``message_topic``), so that
tests/test_paho_internals.py pins one module.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import time
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt

log = logging.getLogger("heatwatch.mqtt")

READ_SIZE = 256 * 1024
MAX_PACKETS_PER_READ = 1000  # then let paho's loop write (PUBACKs), ping and check keepalive


class BufferedSocket:
    """Delegates everything to the real socket except ``recv`` (buffered) and ``pending``."""

    __slots__ = ("_buf", "_pos", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, n: int) -> bytes:
        """``n`` bytes from the buffer; an empty buffer is refilled with one large read."""
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            data = self._sock.recv(max(n, READ_SIZE))  # BlockingIOError propagates: paho expects it
            if len(data) <= n:
                return data
            self._buf, self._pos = data, n
            return data[:n]
        end = pos + n
        self._pos = end
        if end >= len(buf):
            chunk = buf[pos:] if pos else buf
            self._buf, self._pos = b"", 0
            return chunk
        return buf[pos:end]

    def pending(self) -> int:
        """Bytes already read from the kernel and not yet handed to paho."""
        return len(self._buf) - self._pos

    def fileno(self) -> int:
        """The real socket's, for select()."""
        return self._sock.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


_INBOUND_INFO = mqtt.MQTTMessageInfo(0)


class InboundMessage(mqtt.MQTTMessage):
    """An ``MQTTMessage`` without the ``MQTTMessageInfo`` (and its Condition) that only publishing uses."""

    def __init__(self, mid: int, topic: bytes, qos: int, dup: bool, retain: bool, payload: bytes) -> None:
        self.timestamp = time.monotonic()
        self.state = mqtt.mqtt_ms_invalid
        self.dup = dup
        self.mid = mid
        self._topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = None
        self.info = _INBOUND_INFO  # never waited on: inbound messages are not published by us


def plain_publish(header: int, pkt: bytes | bytearray, v5: bool) -> InboundMessage | None:
    """A QoS 0/1 PUBLISH without MQTT 5 properties as a message; None for anything else (paho decodes it)."""
    qos = (header & 0x06) >> 1
    if qos == 2 or len(pkt) < 2:
        return None
    pos = topic_end = 2 + ((pkt[0] << 8) | pkt[1])
    if qos:
        pos += 2
    if v5:
        pos += 1  # the properties length: must be 0 here
    if len(pkt) < pos or (topic_end == 2 and not v5) or (v5 and pkt[pos - 1] != 0):
        return None
    mid = (pkt[topic_end] << 8) | pkt[topic_end + 1] if qos else 0
    return InboundMessage(mid, bytes(pkt[2:topic_end]), qos, bool(header & 0x08), bool(header & 0x01), bytes(pkt[pos:]))


class FastClient(mqtt.Client):
    """paho's ``Client`` with the receive path above; everything else (and the public API) unchanged."""

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        if isinstance(sock, socket.socket) and not isinstance(sock, ssl.SSLSocket):
            return BufferedSocket(sock)
        return sock

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        """paho's read, repeated while whole packets are already buffered (no select() between them)."""
        rc = super().loop_read(max_packets)
        sock = self._sock
        n = 1
        while rc == mqtt.MQTT_ERR_SUCCESS and isinstance(sock, BufferedSocket) and sock.pending() and n < MAX_PACKETS_PER_READ:
            rc = super().loop_read(max_packets)
            if self._sock is not sock:
                break
            n += 1
        return rc

    _filtered = False  # message_callback_add used: paho's own dispatch

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        header: int = self._in_packet["command"]
        msg = plain_publish(header, self._in_packet["packet"], self._protocol == mqtt.MQTTv5)
        if msg is None:
            return super()._handle_publish()
        self._handle_on_message(msg)
        if msg.qos == 1 and not self._manual_ack:
            return self._send_puback(msg.mid)
        return mqtt.MQTT_ERR_SUCCESS

    def message_callback_add(self, sub: str, callback: Any) -> None:
        """paho's own; from then on messages go through paho's dispatch, which honours the filters."""
        self._filtered = True
        super().message_callback_add(sub, callback)

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        on_message = self.on_message
        if on_message is None or self._filtered:
            super()._handle_on_message(message)
            return
        with self._in_callback_mutex:
            try:
                on_message(self, self._userdata, message)
            except Exception:
                log.exception("on_message failed")
                if not self.suppress_exceptions:
                    raise


_PUBACK = struct.Struct("!BBH")
PUBACK = 0x40


def ack_qos1(client: mqtt.Client, mids: Sequence[int]) -> int:
    """Acknowledge QoS 1 messages (manual-ack mode); returns how many PUBACKs were queued for sending.

    paho 2.x takes them as one "packet" holding every PUBACK, written at once; per-message ``client.ack`` wakes
    paho's loop once per message, which the profile showed as a quarter of the collector's worker."""
    queue = getattr(client, "_packet_queue", None)
    if queue is not None:
        blob = b"".join([_PUBACK.pack(PUBACK, 2, mid) for mid in mids])
        return len(mids) if queue(PUBACK, blob, 0, 0) == mqtt.MQTT_ERR_SUCCESS else 0
    return sum(1 for mid in mids if client.ack(mid, 1) == mqtt.MQTT_ERR_SUCCESS)


def message_topic(msg: mqtt.MQTTMessage) -> str:
    """The topic as text, a broken one kept readable (U+FFFD) for its dead letter; MQTT topics are UTF-8 by the spec,
    and paho's own ``msg.topic`` raises on one that is not."""
    return bytes(msg._topic).decode("utf-8", errors="replace")
