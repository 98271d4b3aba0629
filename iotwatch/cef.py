"""Alerts → ArcSight Common Event Format (CEF) lines, with the format's escaping rules.

``CEF:0|iotwatch|iotwatch|VERSION|CATEGORY|SIGNATURE|SEVERITY|EXTENSION``, per the ArcSight
"Implementing ArcSight CEF" specification (revision 25):

* header fields escape a backslash as ``\\\\`` and a pipe as ``\\|``; a header field cannot span
  lines, so a line break there becomes a space;
* extension values escape a backslash as ``\\\\``, an equals sign as ``\\=`` and line breaks as
  ``\\n`` / ``\\r``; pipes need no escaping there; keys are the spec's dictionary names.

Extension fields written (those the alert has): ``rt`` (the alert's time, ms since the epoch),
``start`` / ``end`` (the behaviour's first and last packet), ``src`` or ``c6a2`` (the device's
IPv4 / IPv6 address), ``smac``, ``cat`` (the category), ``msg`` (the signature), ``cnt`` (flows),
``cfp1`` score, ``cs1`` the rules and model that agree, ``cs2`` the main peers, ``cs3`` the
evidence's first packet (file and packet, or conn.log file and line), each with its ``…Label``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .detect import Alert

#: CEF severity (0-10) of an alert's severity (1 high, 2 medium, 3 low)
CEF_SEVERITY = {1: 10, 2: 7, 3: 4}


def escape_header(value: object) -> str:
    """A CEF header field: backslash and pipe escaped, line breaks made spaces."""
    s = str(value).replace("\\", "\\\\").replace("|", "\\|")
    return s.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def escape_extension(value: object) -> str:
    """A CEF extension value: backslash, equals sign and line breaks escaped."""
    s = str(value).replace("\\", "\\\\").replace("=", "\\=")
    return s.replace("\r", "\\r").replace("\n", "\\n")


def cef_line(vendor: str, product: str, version: str, event_class: str, name: str, severity: int,
             extension: Iterable[tuple[str, object]]) -> str:
    head = "|".join(escape_header(v) for v in (vendor, product, version, event_class, name, severity))
    ext = " ".join(f"{k}={escape_extension(v)}" for k, v in extension if v is not None and v != "")
    return f"CEF:0|{head}|{ext}"


def _ms(ts: float) -> int:
    return round(ts * 1000)


def _where(ref: object) -> str | None:
    if not isinstance(ref, dict):
        return None
    if "line" in ref:
        return f"{ref.get('file')} line {ref['line']}"
    return f"{ref.get('file')} packet {ref.get('packet')}"


def alert_cef(alert: Alert) -> str:
    """One alert as a CEF line."""
    from . import __version__

    ext: list[tuple[str, object]] = [("rt", _ms(alert.timestamp)), ("start", _ms(alert.first_ts)),
                                     ("end", _ms(alert.last_ts))]
    if alert.src_ip:
        try:
            v6 = ipaddress.ip_address(alert.src_ip).version == 6
        except ValueError:
            v6 = False
        ext += [("c6a2", alert.src_ip), ("c6a2Label", "Device IPv6 Address")] if v6 else [("src", alert.src_ip)]
    ev = alert.evidence
    ext += [("smac", alert.src_mac), ("cat", alert.category), ("msg", alert.signature)]
    if isinstance(ev.get("flows"), int):
        ext.append(("cnt", ev["flows"]))
    ext += [("cfp1", round(alert.score, 4)), ("cfp1Label", "score")]
    if alert.sources:
        ext += [("cs1", ",".join(alert.sources)), ("cs1Label", "detectedBy")]
    peers = ev.get("peers")
    if isinstance(peers, list) and peers:
        ext += [("cs2", ",".join(map(str, peers))), ("cs2Label", "peers")]
    first = _where(ev.get("first_packet"))
    if first:
        ext += [("cs3", first), ("cs3Label", "firstPacket")]
    return cef_line("iotwatch", "iotwatch", __version__, alert.category, alert.signature,
                    CEF_SEVERITY.get(alert.severity, 5), ext)
