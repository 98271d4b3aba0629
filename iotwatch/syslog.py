"""Alerts to a SIEM: CEF lines in RFC 5424 syslog messages over UDP or TCP.

``--syslog udp://HOST:PORT`` sends one datagram per alert; ``--syslog tcp://HOST:PORT`` one
connection for the run, messages framed by octet counting (RFC 6587 section 3.4.1: the
message's length in bytes, a space, the message). IPv6 hosts are written in brackets
(``udp://[::1]:514``). Nothing is sent unless the option is given (offline by default).

A message: ``<PRI>1 TIMESTAMP HOSTNAME iotwatch PROCID alert - CEF:0|...`` with facility 4
(security/authorization) and syslog severity 2 (critical), 3 (error) or 4 (warning) for alert
severities 1, 2, 3; the timestamp is the alert's time (when its evidence crossed the threshold)
in RFC 3339 UTC with microseconds.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .cef import alert_cef
from .errors import OutputError
from .sinks import Sink

if TYPE_CHECKING:
    from .detect import Alert

FACILITY = 4  # security/authorization messages
SYSLOG_SEVERITY = {1: 2, 2: 3, 3: 4}


def parse_target(url: str) -> tuple[str, str, int]:
    """``udp://host:port`` or ``tcp://host:port`` → (transport, host, port); ValueError otherwise."""
    u = urlsplit(url)
    if u.scheme not in ("udp", "tcp"):
        raise ValueError(f"{url!r}: give udp://HOST:PORT or tcp://HOST:PORT")
    try:
        port = u.port
    except ValueError:
        port = None
    if not u.hostname or port is None or not 0 < port < 65536 or u.path not in ("", "/"):
        raise ValueError(f"{url!r}: give udp://HOST:PORT or tcp://HOST:PORT")
    return u.scheme, u.hostname, port


def _header_token(s: str, limit: int) -> str:
    """A syslog header field: printable US-ASCII without spaces, at most ``limit`` characters, '-' if empty."""
    s = "".join(c for c in s if 33 <= ord(c) <= 126)[:limit]
    return s or "-"


def syslog_message(alert: Alert, hostname: str | None = None, procid: int | None = None) -> bytes:
    """One RFC 5424 message (without transport framing) carrying the alert as CEF."""
    pri = FACILITY * 8 + SYSLOG_SEVERITY.get(alert.severity, 4)
    ts = datetime.fromtimestamp(alert.timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    host = _header_token(hostname if hostname is not None else socket.gethostname(), 255)
    proc = _header_token(str(procid if procid is not None else os.getpid()), 128)
    return f"<{pri}>1 {ts} {host} iotwatch {proc} alert - {alert_cef(alert)}".encode()


def frame(message: bytes) -> bytes:
    """RFC 6587 octet counting: the length, a space, the message."""
    return str(len(message)).encode() + b" " + message


class SyslogSink(Sink):
    """Sends each alert to a syslog collector as it is concluded (the pipeline's ``on_alerts``)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.transport, host, port = parse_target(url)
        self.sent = 0
        self.problem: OutputError | None = None
        try:
            info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM if self.transport == "udp" else socket.SOCK_STREAM)
            family, kind, proto, _canon, self.addr = info[0]
            self._sock = socket.socket(family, kind, proto)
            self._sock.settimeout(timeout)
            if self.transport == "tcp":
                self._sock.connect(self.addr)
        except OSError as e:
            raise OutputError(f"{url}: cannot reach the syslog collector: {e.strerror or e}") from None

    def on_alerts(self, alerts: list[Alert]) -> None:
        """Send the alerts; a failure is kept in ``problem`` (the other outputs are still written)."""
        try:
            for a in alerts:
                msg = syslog_message(a)
                if self.transport == "udp":
                    self._sock.sendto(msg, self.addr)
                else:
                    self._sock.sendall(frame(msg))
                self.sent += 1
        except OSError as e:
            self.problem = OutputError(f"{self.url}: cannot send alerts: {e.strerror or e} "
                                       f"({self.sent} of {len(alerts)} sent)")

    def close(self) -> None:
        self._sock.close()
