"""CEF over syslog: the CEF escaping rules (header: backslash and pipe; extension: backslash,
equals sign, line breaks), RFC 5424 messages, and a syslog listener on loopback (UDP, and TCP
with RFC 6587 octet counting) that receives and parses the alerts of a generated incident."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iotwatch.cef import alert_cef, cef_line, escape_extension, escape_header
from iotwatch.detect.alerts import Alert
from iotwatch.syslog import frame, parse_target, syslog_message


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """A strict CEF reader, written from the specification: the header is split on unescaped
    pipes; the extension on the spaces before ``key=``, values unescaped."""
    assert line.startswith("CEF:")
    head: list[str] = []
    cur, k = "", 4
    while len(head) < 7:
        c = line[k]
        if c == "\\":
            nxt = line[k + 1]
            assert nxt in "\\|", f"bad header escape \\{nxt}"
            cur += nxt
            k += 2
            continue
        if c == "|":
            head.append(cur)
            cur = ""
        else:
            assert c not in "\r\n"
            cur += c
        k += 1
    ext_text = line[k:]
    ext: dict[str, str] = {}
    for m in re.finditer(r"(?:^| )([A-Za-z0-9_]+)=((?:\\.|[^\\= ]| (?![A-Za-z0-9_]+=))*)", ext_text):
        raw = m.group(2)
        out, j = "", 0
        while j < len(raw):
            if raw[j] == "\\":
                nxt = raw[j + 1]
                assert nxt in "\\=nr", f"bad extension escape \\{nxt}"
                out += {"n": "\n", "r": "\r"}.get(nxt, nxt)
                j += 2
            else:
                assert raw[j] not in "\r\n="
                out += raw[j]
                j += 1
        ext[m.group(1)] = out
    return head, ext


def test_escaping_rules() -> None:
    assert escape_header("a|b\\c") == "a\\|b\\\\c"
    assert escape_header("two\nlines\r\nhere") == "two lines here"
    assert escape_extension("a=b\\c|d") == "a\\=b\\\\c|d"  # pipes are not escaped in the extension
    assert escape_extension("x\ny\rz") == "x\\ny\\rz"
    line = cef_line("v|x", "p", "1\\0", "scan", "name = with | pipe", 10, [("msg", "k=v | \\ \n end"), ("cs1", None)])
    assert line == "CEF:0|v\\|x|p|1\\\\0|scan|name = with \\| pipe|10|msg=k\\=v | \\\\ \\n end"


TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@given(name=TEXT, msg=TEXT, peer=TEXT)
def test_cef_round_trips_any_text(name: str, msg: str, peer: str) -> None:
    line = cef_line("iotwatch", "iotwatch", "0.1", "scan", name, 10, [("msg", msg), ("cs2", peer), ("cat", "scan")])
    head, ext = parse_cef(line)
    assert "\n" not in line and "\r" not in line
    assert head == ["0", "iotwatch", "iotwatch", "0.1", "scan",
                    name.replace("\r\n", " ").replace("\n", " ").replace("\r", " "), "10"]
    assert ext.get("msg", "") == msg and ext.get("cs2", "") == peer and ext["cat"] == "scan"


def _alert(**kw: object) -> Alert:
    base = dict(device="aa:bb:cc:dd:ee:ff", src_mac="aa:bb:cc:dd:ee:ff", src_ip="192.168.1.9", category="exfil",
                signature="upload surge: 3.8 Mbit/s to 52.58.14.205, 5,012× its baseline", severity=1, score=0.99,
                timestamp=1754279761.21, first_ts=1754279749.1, last_ts=1754279819.9,
                evidence={"flows": 3, "peers": ["52.58.14.205"], "first_packet": {"file": "h.pcap", "packet": 7}},
                sources=["rule:upload_surge", "model"])
    base.update(kw)
    return Alert(**base)  # type: ignore[arg-type]


def test_alert_as_cef_and_syslog() -> None:
    head, ext = parse_cef(alert_cef(_alert()))
    assert head[1:7] == ["iotwatch", "iotwatch", head[3], "exfil", _alert().signature, "10"]
    assert ext["src"] == "192.168.1.9" and ext["smac"] == "aa:bb:cc:dd:ee:ff" and ext["cat"] == "exfil"
    assert ext["rt"] == "1754279761210" and ext["start"] == "1754279749100" and ext["cnt"] == "3"
    assert ext["cs1"] == "rule:upload_surge,model" and ext["cs2"] == "52.58.14.205" and ext["cs3"] == "h.pcap packet 7"
    _h, ext6 = parse_cef(alert_cef(_alert(src_ip="fd00::9", src_mac=None, severity=3)))
    assert ext6["c6a2"] == "fd00::9" and "src" not in ext6 and "smac" not in ext6
    msg = syslog_message(_alert(severity=2), hostname="sensor one", procid=42).decode()
    assert msg.startswith("<35>1 2025-08-04T03:56:01.210000Z sensorone iotwatch 42 alert - CEF:0|")
    assert frame(b"abc") == b"3 abc"


def test_syslog_targets() -> None:
    assert parse_target("udp://127.0.0.1:5514") == ("udp", "127.0.0.1", 5514)
    assert parse_target("tcp://[::1]:601") == ("tcp", "::1", 601)
    for bad in ("127.0.0.1:514", "http://x:1", "udp://host", "tcp://h:0", "udp://h:99999"):
        with pytest.raises(ValueError):
            parse_target(bad)


SYSLOG_RE = re.compile(r"^<(\d+)>1 (\S+) (\S+) iotwatch (\S+) alert - (CEF:.*)$", re.S)


class Listener:
    """A syslog collector on loopback: UDP datagrams, or TCP with octet counting. Stops by itself."""

    def __init__(self, transport: str) -> None:
        self.transport = transport
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        if transport == "tcp":
            self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.messages: list[bytes] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for _ in range(1200):  # at most 10 minutes
            if self.stop.is_set():
                break
            try:
                if self.transport == "udp":
                    self.messages.append(self.sock.recv(65535))
                    continue
                conn, _addr = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(60)
                buf = b""
                while chunk := conn.recv(65536):
                    buf += chunk
            while buf:  # octet counting: LEN SP MSG
                size, _, rest = buf.partition(b" ")
                n = int(size)
                self.messages.append(rest[:n])
                buf = rest[n:]

    def close(self) -> list[bytes]:
        self.stop.set()
        self.thread.join(timeout=10)
        self.sock.close()
        return self.messages


def iotwatch(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "iotwatch", *map(str, args)], capture_output=True, text=True,
                          timeout=600, check=False)


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cap = tmp_path_factory.mktemp("siem") / "hospital.pcap"
    r = iotwatch("synth", "hospital", "--duration", "120", "--quiet", "40", "--seed", "5", "--uplink-mbps", "2",
                 "--out", cap)
    assert r.returncode == 0, r.stderr
    return cap


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_listener_receives_the_alerts(incident: Path, tmp_path: Path, transport: str) -> None:
    listener = Listener(transport)
    try:
        r = iotwatch("analyze", incident, "--out", tmp_path, "--uplink-mbps", "2", "--quiet",
                     "--syslog", f"{transport}://127.0.0.1:{listener.port}")
    finally:
        if transport == "udp":
            import time

            time.sleep(0.5)  # the last datagrams on their way through loopback
        got = listener.close()
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "events.jsonl") as f:
        alerts = [e for e in map(json.loads, f) if e["event_type"] == "alert"]
    assert len(alerts) >= 3 and len(got) == len(alerts)
    for raw, ev in zip(got, alerts, strict=True):
        m = SYSLOG_RE.match(raw.decode())
        assert m, raw[:200]
        pri = int(m.group(1))
        assert pri // 8 == 4 and pri % 8 == {1: 2, 2: 3, 3: 4}[ev["alert"]["severity"]]
        assert m.group(2) == ev["timestamp"].replace("+0000", "Z")
        head, ext = parse_cef(m.group(5))
        assert head[4] == ev["alert"]["category"] and head[5] == ev["alert"]["signature"]
        assert ext["src"] == ev["src_ip"] and ext["smac"] == ev["src_mac"] and ext["msg"] == ev["alert"]["signature"]
        assert ext["cs1"] == ",".join(ev["evidence"]["detected_by"])


def test_unreachable_collector_is_one_line(tmp_path: Path) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    demo = Path(__file__).resolve().parents[1] / "pcaps" / "demo-office.pcap"
    r = iotwatch("analyze", demo, "--out", tmp_path, "--syslog", f"tcp://127.0.0.1:{port}")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "syslog" in r.stderr
    r = iotwatch("analyze", demo, "--out", tmp_path, "--syslog", "127.0.0.1:514")
    assert r.returncode == 2 and "--syslog" in r.stderr
