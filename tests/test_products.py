"""Product catalogue: per-frame features, sequence distance, matching, the file format, the type
following the product, and one end-to-end run on IoT Sentinel captures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SHARED_PCAPS, needs_shared
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, TCP, UDP, IPOption_Router_Alert
from scapy.layers.l2 import ARP

from iotwatch.errors import ModelError
from iotwatch.inventory import products as P
from iotwatch.inventory.classify import decide
from iotwatch.inventory.fingerprints import DeviceSignals
from iotwatch.learn import products as LP


class _Frame:
    def __init__(self, pkt: object, src: str = "aa:bb:cc:00:00:01", l3: int = 4) -> None:
        self.l3, self.data, self.src, self.dst = l3, bytes(pkt), src, None  # type: ignore[arg-type]


def _dhcp() -> bytes:
    return bytes(IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67)
                 / BOOTP(chaddr=b"\xaa\xbb\xcc\x00\x00\x01") / DHCP(options=[("message-type", "discover"), "end"]))


def test_frame_features_dhcp_arp_https():
    flags, size, dst, sp, dp = P.frame_features(4, _dhcp())
    want = P._F_IP | P._F_UDP | P._F_BOOTP | P._F_DHCP | P._F_RAW
    assert flags == want and size == len(_dhcp()) and dst == "255.255.255.255" and (sp, dp) == (68, 67)
    flags, _, dst, sp, dp = P.frame_features(1, bytes(ARP(op=1, pdst="192.168.1.1")))
    assert flags == P._F_ARP and dst == "192.168.1.1" and (sp, dp) == (-1, -1)
    tls = bytes(IP(dst="52.1.2.3") / TCP(sport=50000, dport=443, flags="PA") / (b"\x16\x03\x01" + b"x" * 40))
    flags, _, _, sp, dp = P.frame_features(4, tls)
    assert flags & P._F_HTTPS and flags & P._F_TCP and flags & P._F_RAW and not flags & P._F_UDP
    assert P._port_class(sp) == 3 and P._port_class(dp) == 1
    ra = bytes(IP(dst="224.0.0.22", proto=2, options=[IPOption_Router_Alert()]) / (b"\x22" * 8))
    assert P.frame_features(4, ra)[0] & P._F_RA


def test_sequences_keep_first_frames_with_destination_counter():
    s = P.Sequences()
    for i in range(P.SEQ_LEN + 5):
        s.add(_Frame(IP(dst=f"10.0.0.{i % 3 + 1}") / UDP(sport=1234, dport=53) / b"q"))
    seq = s.get("aa:bb:cc:00:00:01")
    assert len(seq) == P.SEQ_LEN
    assert [(x >> 29) & 15 for x in seq[:4]] == [1, 2, 3, 1]  # distinct destinations counted in order
    s.add(_Frame(b"", src=None))  # type: ignore[arg-type]
    assert list(s.symbols) == ["aa:bb:cc:00:00:01"]


def test_sequence_distance():
    syms = [1, 2, 3, 4]
    flat = P.np.array([*syms, 1, 3, 2, 4, 9, 9], P.np.int64)
    offsets = P.np.array([0, 4, 8, 10, 10], P.np.int64)
    d = P.seq_distances(syms, flat, offsets)
    assert d[0] == 0.0
    assert d[1] == pytest.approx(0.25)  # one transposition
    assert d[2] == 1.0  # nothing alike
    assert d[3] == 1.0  # empty
    assert P.seq_distances([], flat, offsets)[3] == 0.0


def _samples() -> list[P.ProductSample]:
    a = ["dhcp_hostname:hs#", "dhcp_vendor:udhcp #", "dns_query:devs.tplinkcloud.com", "oui:tp-link"]
    b = ["dhcp_hostname:smartbox", "mdns_service:_acme._tcp.local", "dns_query:api.acme-home.example", "oui:philips"]
    c = ["dhcp_hostname:cubecam", "dns_query:cloud.cube.example", "dns_query:ntp.cube.example"]
    out = []
    for i in range(3):
        out.append(P.ProductSample("Plug", "plug", f"p{i}", f"p{i}.pcap", [*a, f"x{i}"], [1, 2, 3, 4 + i]))
        out.append(P.ProductSample("Hue", "hub", f"h{i}", f"h{i}.pcap", b, [7, 7, 8, 9]))
        out.append(P.ProductSample("Cam", "camera", f"c{i}", f"c{i}.pcap", c, [5, 6, 5, 6]))
    return out


def test_match_nearest_product_and_unknown():
    cat = P.build_catalogue(_samples())
    assert set(cat.products) == {"Plug", "Hue", "Cam"} and cat.products["Cam"]["device_type"] == "camera"
    m = cat.match(["dhcp_hostname:hs#", "dhcp_vendor:udhcp #", "dns_query:devs.tplinkcloud.com", "oui:tp-link"],
                  [1, 2, 3, 4])
    assert m.product == "Plug" and m.device_type == "plug" and m.confident
    assert m.distance < 0.1 and m.runner_up in ("Hue", "Cam") and m.runner_up_distance > 0.4
    assert "dns_query:devs.tplinkcloud.com" in m.shared
    far = cat.match(["dns_query:example.org"], [42, 43])
    assert far.product is None and far.confidence == 0.0 and "no product" in far.evidence(cat.name)
    assert cat.match([], []).product is None


def test_catalogue_roundtrip_and_tamper(tmp_path: Path):
    cat = P.build_catalogue(_samples())
    folder = cat.save(tmp_path / "cat", training={"set": "unit test"})
    back = P.Catalogue.load(folder)
    q = (["dhcp_hostname:smartbox", "oui:philips"], [7, 7, 8])
    assert back.match(*q) == cat.match(*q)
    assert back.manifest["training"] == {"set": "unit test"} and back.manifest["exemplars"] == len(cat.exemplars)
    body = (folder / P.CATALOGUE_FILE).read_text()
    (folder / P.CATALOGUE_FILE).write_text(body.replace('"Cam"', '"Cum"', 1))
    with pytest.raises(ModelError, match="sha256"):
        P.Catalogue.load(folder)
    (folder / P.CATALOGUE_FILE).write_text(body)
    m = json.loads((folder / P.MANIFEST_FILE).read_text())
    m["kind"] = "device_type"
    (folder / P.MANIFEST_FILE).write_text(json.dumps(m))
    with pytest.raises(ModelError, match="not a product catalogue"):
        P.Catalogue.load(folder)
    with pytest.raises(ModelError):
        P.Catalogue.load(tmp_path / "absent")


def test_malformed_catalogue_with_matching_hash_is_refused(tmp_path: Path):
    cat = P.build_catalogue(_samples())
    folder = cat.save(tmp_path / "cat")
    d = json.loads((folder / P.CATALOGUE_FILE).read_text())
    d["exemplars"][0]["seq"] = ["__import__('os')"]
    body = json.dumps(d).encode()
    (folder / P.CATALOGUE_FILE).write_bytes(body)
    m = json.loads((folder / P.MANIFEST_FILE).read_text())
    m["sha256"] = P.hashlib.sha256(body).hexdigest()
    (folder / P.MANIFEST_FILE).write_text(json.dumps(m))
    with pytest.raises(ModelError, match="malformed"):
        P.Catalogue.load(folder)


def _sig(**kinds: list[str]) -> DeviceSignals:
    s = DeviceSignals()
    for k, vs in kinds.items():
        for v in vs:
            s.add(k, v)
    return s


def test_type_follows_a_confident_product_but_camera_needs_a_camera_hint():
    cat = P.build_catalogue(_samples())
    sig = _sig(dhcp_hostname=["smartbox"], mdns_service=["_acme._tcp.local"], dns_query=["api.acme-home.example"])
    # a locally administered MAC: no OUI facts, no rule: only the catalogue and the signals
    assert decide("02:00:00:00:00:01", None, sig, None, None).device_type == "unknown"
    ident = decide("02:00:00:00:00:01", None, sig, None, None, catalogue=cat, sequence=[7, 7, 8, 9])
    assert ident.match is not None and ident.match.product == "Hue" and ident.match.confident
    assert ident.device_type == "hub" and ident.classified_by == cat.name and ident.model == "Hue"
    assert ident.evidence[0].startswith(f"catalogue {cat.name}: product Hue")
    # a camera product: a very close match types camera; a looser one, without any camera hint, does not
    sig = _sig(dhcp_hostname=["cubecam"], dns_query=["cloud.cube.example", "ntp.cube.example"])
    close = decide("02:00:00:00:00:02", None, sig, None, None, catalogue=cat, sequence=[5, 6, 5, 6])
    assert close.match is not None and close.match.product == "Cam" and close.match.confidence >= 0.8
    assert close.device_type == "camera"
    sig = _sig(dhcp_hostname=["cubecam"], dns_query=["cloud.cube.example", "ntp.cube.example", "time.example"])
    loose = decide("02:00:00:00:00:02", None, sig, None, None, catalogue=cat, sequence=[5, 6, 5, 9])
    assert loose.match is not None and loose.match.product == "Cam" and P.CONFIDENT <= loose.match.confidence < 0.8
    assert loose.device_type != "camera"


@needs_shared
def test_end_to_end_held_out_setup_is_recognised(tmp_path: Path):
    """A catalogue built from the Setup-C captures of four products recognises their Setup-A
    captures through the whole pipeline (iotwatch.analyze's Inventory)."""
    from iotwatch.inventory.analyser import Inventory
    from iotwatch.pipeline import run
    from iotwatch.settings import Settings

    items = [x for x in LP.iot_sentinel(SHARED_PCAPS)
             if x.product in ("TP-LinkPlugHS110", "HueBridge", "D-LinkCam", "iKettle2")]
    train = [x for x in items if "/C" in x.group][:40]
    samples = [s for x in train if (s := LP.sample_of(x, LP.profile_capture(x.path, cache=False))) is not None]
    cat = P.Catalogue.load(P.build_catalogue(samples).save(tmp_path / "cat"))
    tests = {}
    for x in items:
        if "/A" in x.group and x.product not in tests:
            tests[x.product] = x
    assert len(tests) == 4
    right = 0
    for x in tests.values():
        inv = Inventory(catalogue=cat)
        pipe, _ = run([x.path], Settings(detect=False, identify=False), analysers=[inv])
        devices, _ = pipe.finish()
        m = inv.identities[x.mac].match
        assert m is not None
        right += m.product == x.product
        if m.product == x.product and m.confident:
            # the product: a name the device gave (D-Link's camera says DCS-935L), else the catalogue's
            assert devices[x.mac].model is not None
            assert any(e.startswith(f"catalogue {cat.name}: product {x.product}") for e in devices[x.mac].evidence)
            assert devices[x.mac].device_type == x.device_type
    assert right >= 3


def test_duration_is_time_seen_when_captures_are_far_apart():
    """A unit seen in captures years apart: duration and rate from its active windows, not the
    calendar between captures; a single capture keeps its first-to-last span."""
    import math

    import pyarrow as pa

    from iotwatch.inventory.analyser import Inventory
    from iotwatch.inventory.classify import FEATURE_NAMES, features
    from iotwatch.inventory.oui import lookup
    from iotwatch.records import DeviceRecord

    inv = Inventory(window_s=60.0)
    inv.on_windows(pa.table({"device": ["aa:bb:cc:00:00:01", "aa:bb:cc:00:00:01", None, "x"]}))
    inv.on_windows(pa.table({"device": ["aa:bb:cc:00:00:01"]}))
    assert inv.windows["aa:bb:cc:00:00:01"] == 3 and inv.windows["x"] == 1
    i = FEATURE_NAMES.index("log_duration")
    far = DeviceRecord(mac="aa:bb:cc:00:00:01", ips=[], packets_out=100, first_seen=0.0, last_seen=3 * 86400.0)
    v = lookup(far.key)
    x = features(far, DeviceSignals(), None, v, [], seen_s=180.0)
    assert x[i] == pytest.approx(math.log1p(180.0))
    assert x[FEATURE_NAMES.index("log_rate_out")] == pytest.approx(math.log1p(100 / 180.0))
    near = DeviceRecord(mac="aa:bb:cc:00:00:01", ips=[], packets_out=100, first_seen=0.0, last_seen=7200.0)
    assert features(near, DeviceSignals(), None, v, [], seen_s=180.0)[i] == pytest.approx(math.log1p(7200.0))


@needs_shared
def test_mac_seen_in_captures_years_apart_keeps_a_computer_duration():
    """The Apple Mac of four nDPI captures 1,082 days apart (docs/inventory.md): one run over
    them measures the minutes it was seen."""
    from iotwatch.inventory.analyser import Inventory
    from iotwatch.inventory.classify import FEATURE_NAMES, features, hints
    from iotwatch.inventory.oui import lookup
    from iotwatch.pipeline import run
    from iotwatch.settings import Settings

    files = ["tcp_scan.pcapng", "443-curl.pcap", "443-firefox.pcap", "smb_deletefile.pcap"]
    inv = Inventory()
    pipe, _ = run([SHARED_PCAPS / "ndpi_protocols" / f for f in files], Settings(detect=False, identify=False),
                  analysers=[inv])
    devices, _ = pipe.finish()
    k = "28:37:37:00:6d:c8"
    rec = devices[k]
    assert rec.last_seen - rec.first_seen > 1000 * 86400
    seen = inv.windows[k] * inv.window_s
    assert 0 < seen < 3600
    sig, tr, v = inv.fp.get(k), inv.traffic.get(k), lookup(k)
    x = features(rec, sig, tr, v, hints(v, sig, tr), seen_s=seen)
    assert x[FEATURE_NAMES.index("log_duration")] < 9  # minutes, within what single captures train on


def test_cloud_camera_by_sustained_upload_and_its_cloud_not_a_bursty_phone():
    from iotwatch.inventory.classify import hints
    from iotwatch.inventory.oui import lookup
    from iotwatch.inventory.traffic import DeviceTraffic

    def up(total: int) -> DeviceTraffic:
        return DeviceTraffic(stream_flows=4, bytes_up=total, bytes_up_external=total, bytes_down=total // 50,
                             max_upload_bps=120_000.0, flows_client=20)

    key = "00:11:22:33:44:55"
    cloud = _sig(dns_query=["api.hik-connect.com"])
    # 40 MB over the hour seen: 89 kbit/s on average, all the time
    cam = decide(key, None, cloud, up(40_000_000), None, seen_s=3600.0)
    assert cam.device_type == "camera" and any("sustained" in e for e in cam.evidence)
    assert cam.type_confidence == pytest.approx(1 - 0.4 * 0.4)  # the cloud 0.6 and the sustained upload 0.6
    # the same bytes over ten hours seen (bursts): only the weak stream hint (0.5)
    hs = hints(lookup(key), cloud, up(40_000_000), seen_s=36000.0)
    assert not any("sustained" in h.evidence for h in hs)
    assert max(h.confidence for h in hs if h.evidence.startswith("steady upstream")) == 0.5
    # a phone's name: never the sustained camera hint
    phone = _sig(dns_query=["api.hik-connect.com"], dhcp_hostname=["android-1b2c3d4e5f6a7b8c"])
    assert not any("sustained" in h.evidence for h in hints(lookup(key), phone, up(40_000_000), seen_s=3600.0))
    # the shape alone (no camera cloud) is a hint below the rules' 0.8 (the classifier weighs it)
    hs = hints(lookup(key), _sig(dns_query=["example.org"]), up(40_000_000), seen_s=3600.0)
    assert [h.confidence for h in hs if h.device_type == "camera"] == [0.6]


@needs_shared
def test_cli_devices_catalogue_and_events_carry_the_product(tmp_path: Path):
    """`iotwatch devices --catalogue` prints the match; `analyze` writes the product in the
    device event's `model` with the match in its evidence (checked against the public interface)."""
    import os
    import subprocess
    import sys

    from conftest import CHECK_EVENTS

    cap = SHARED_PCAPS / "iot_sentinel" / "TP-LinkPlugHS110" / "Setup-A-1-STA.pcap"
    env = {k: v for k, v in os.environ.items() if k != "IOTWATCH_DEBUG"}

    def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "iotwatch", *map(str, args)], capture_output=True, text=True,
                              env={**env, "COLUMNS": "200"}, check=False, timeout=300)

    r = cli("devices", "--catalogue", cap)
    assert r.returncode == 0, r.stderr
    assert "Product catalogue matches" in r.stdout
    line = next(ln for ln in r.stdout.splitlines() if "50:c7:bf:00:c7:03" in ln and "TP-LinkPlugHS110" in ln)
    assert "plug" in line and "TP-LinkPlugHS100" in line  # the next product, farther
    out = tmp_path / "out"
    r = cli("analyze", cap, "--out", out)
    assert r.returncode == 0, r.stderr
    dev = next(e for e in map(json.loads, (out / "events.jsonl").read_text().splitlines())
               if e["event_type"] == "device" and e["mac"] == "50:c7:bf:00:c7:03")
    assert "HS110" in dev["model"] and dev["device_type"] == "plug"  # its DHCP name, HS110(EU), comes first
    assert dev["classified_by"] == "products-v1"
    assert any(e.startswith("catalogue products-v1: product TP-LinkPlugHS110") for e in dev["evidence"])
    if CHECK_EVENTS.exists():
        c = subprocess.run([sys.executable, str(CHECK_EVENTS), str(out)], capture_output=True, text=True, check=False)
        assert c.returncode == 0, c.stdout


def test_inventory_matches_local_devices_only():
    """Without Ethernet every address is a device: external (spoofed) sources are not matched."""
    from iotwatch.inventory.analyser import Inventory
    from iotwatch.records import DeviceRecord
    from iotwatch.sidecar import RareFrame

    cat = P.build_catalogue(_samples())
    inv = Inventory(catalogue=cat)
    frames = []
    for i, src in enumerate(("192.168.1.20", "203.0.113.9", "aa:bb:cc:00:00:09")):
        data = bytes(IP(src="192.168.1.20", dst="8.8.8.8") / UDP(sport=40000 + i, dport=53) / b"\x00\x01\x01\x00")
        frames.append(RareFrame(ts=1000.0 + i, file_index=0, frame=i + 1, l3=4, data=data, src=src, dst=None, kind="dns"))
    inv.on_rare(frames)
    assert set(inv.sequences.symbols) == {"192.168.1.20", "203.0.113.9", "aa:bb:cc:00:00:09"}
    devices = {k: DeviceRecord(mac=k if ":" in k else None, ips=[] if ":" in k else [k])
               for k in inv.sequences.symbols}
    inv.conclude(devices)
    assert inv.identities["203.0.113.9"].match is None
    assert inv.identities["192.168.1.20"].match is not None and inv.identities["aa:bb:cc:00:00:09"].match is not None
