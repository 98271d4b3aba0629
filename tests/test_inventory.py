"""Device inventory: rare-packet parsers, OUI lookup, traffic profile, rules, type model."""

from __future__ import annotations

import random
import re
import struct

import numpy as np
import pyarrow as pa
import pytest
from conftest import SHARED_PCAPS, needs_shared
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRRSRV
from scapy.layers.inet import IP, TCP, UDP

from iotwatch.errors import ModelError
from iotwatch.inventory import (
    DeviceTraffic,
    Fingerprints,
    Identity,
    TypeModel,
    identify,
    lookup,
    signals,
    traffic_from_flows,
)
from iotwatch.inventory.classify import FEATURE_NAMES, FEATURES, decide, features, hints
from iotwatch.records import FLOW_SCHEMA, DeviceRecord
from iotwatch.sidecar import RareFrame

CAM = "c0:56:e3:11:22:33"  # Hikvision OUI
PC = "3c:97:0e:00:00:01"  # a laptop


def frame(pkt: bytes | object, src: str | None = CAM, dst: str | None = None, kind: str = "first_payload") -> RareFrame:
    data = pkt if isinstance(pkt, bytes) else bytes(pkt)  # type: ignore[call-overload]
    return RareFrame(ts=1.0, file_index=0, frame=1, l3=4, data=data, src=src, dst=dst, kind=kind)


def sig(fr: RareFrame) -> set[tuple[str, str, str]]:
    return {(s.who, s.kind, s.value) for s in signals(fr)}


# --------------------------------------------------------------------------- parsers

def test_dhcp_hostname_vendor_class_and_parameter_list() -> None:
    pkt = (IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67)
           / BOOTP(chaddr=bytes.fromhex("c056e3112233")) / DHCP(options=[
               ("message-type", "discover"), ("hostname", b"DS-2CD2032-I"), ("vendor_class_id", b"udhcp 1.19.4"),
               ("param_req_list", [1, 3, 6, 12, 15, 28, 42]), "end"]))
    got = sig(frame(pkt, kind="dhcp"))
    assert ("src", "dhcp_hostname", "DS-2CD2032-I") in got
    assert ("src", "dhcp_vendor", "udhcp 1.19.4") in got
    assert ("src", "dhcp_prl", "1,3,6,12,15,28,42") in got


def test_dhcp_offer_marks_a_server() -> None:
    pkt = IP(src="192.168.1.1", dst="192.168.1.50") / UDP(sport=67, dport=68) / BOOTP(op=2) / DHCP(
        options=[("message-type", "offer"), "end"])
    assert ("src", "dhcp_server", "") in sig(frame(pkt, src="00:11:22:33:44:55", kind="dhcp"))


def test_ssdp_notify_server_and_type() -> None:
    notify = (b"NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nCACHE-CONTROL: max-age=1800\r\n"
              b"LOCATION: http://192.168.1.64:49152/rootDesc.xml\r\nNT: urn:schemas-upnp-org:device:Basic:1\r\n"
              b"NTS: ssdp:alive\r\nSERVER: Linux/3.0.8, UPnP/1.0, Hikvision IPCamera/1.0\r\n\r\n")
    pkt = IP(src="192.168.1.64", dst="239.255.255.250") / UDP(sport=1900, dport=1900) / notify
    got = sig(frame(pkt, kind="ssdp"))
    assert ("src", "ssdp_server", "Linux/3.0.8, UPnP/1.0, Hikvision IPCamera/1.0") in got
    assert ("src", "ssdp_type", "urn:schemas-upnp-org:device:Basic:1") in got


def test_ssdp_search_is_a_client() -> None:
    msearch = (b'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: 1\r\n'
               b"ST: urn:dial-multiscreen-org:service:dial:1\r\nUSER-AGENT: Google Chrome/99.0 Mac OS X\r\n\r\n")
    pkt = IP(src="192.168.1.9", dst="239.255.255.250") / UDP(sport=50000, dport=1900) / msearch
    got = sig(frame(pkt, src=PC, kind="ssdp"))
    assert ("src", "ssdp_search", "urn:dial-multiscreen-org:service:dial:1") in got
    assert ("src", "ssdp_ua", "Google Chrome/99.0 Mac OS X") in got


def test_mdns_answers_give_service_name_and_model() -> None:
    ans = [DNSRR(rrname="_ipp._tcp.local", type="PTR", rdata="Canon MF643C._ipp._tcp.local"),
           DNSRRSRV(rrname="Canon MF643C._ipp._tcp.local", target="canon-mf643c.local", port=631),
           DNSRR(rrname="Canon MF643C._ipp._tcp.local", type="TXT", rdata=[b"txtvers=1", b"ty=Canon MF643C"])]
    pkt = IP(src="192.168.1.30", dst="224.0.0.251") / UDP(sport=5353, dport=5353) / DNS(qr=1, aa=1, an=ans)
    got = sig(frame(pkt, src="00:1e:8f:00:00:01", kind="mdns"))
    assert ("src", "mdns_service", "_ipp._tcp") in got
    assert ("src", "mdns_name", "canon mf643c") in got
    assert ("src", "mdns_name", "canon-mf643c") in got
    assert ("src", "mdns_txt", "ty=Canon MF643C") in got
    fp = Fingerprints()
    fp.add(frame(pkt, src="00:1e:8f:00:00:01", kind="mdns"))
    ident = decide("00:1e:8f:00:00:01", None, fp.get("00:1e:8f:00:00:01"), None)
    assert ident.device_type == "printer" and ident.vendor == "Canon"


def test_dns_query_names() -> None:
    pkt = IP(src="192.168.1.64", dst="8.8.8.8") / UDP(sport=40000, dport=53) / DNS(rd=1, qd=DNSQR(qname="dev.hik-connect.com"))
    assert sig(frame(pkt, kind="dns")) == {("src", "dns_query", "dev.hik-connect.com")}


def test_http_server_and_user_agent() -> None:
    resp = b'HTTP/1.1 401 Unauthorized\r\nServer: App-webs/\r\nWWW-Authenticate: Digest realm="IP Camera(C1234)"\r\n\r\n'
    pkt = IP(src="192.168.1.64", dst="192.168.1.9") / TCP(sport=80, dport=50000, flags="PA") / resp
    got = sig(frame(pkt))
    assert ("src", "http_server", "App-webs/") in got
    assert ("src", "http_realm", "IP Camera(C1234)") in got
    req = b"GET /ISAPI/System/deviceInfo HTTP/1.1\r\nHost: 192.168.1.64\r\nUser-Agent: curl/8.0\r\n\r\n"
    pkt = IP(src="192.168.1.9", dst="192.168.1.64") / TCP(sport=50000, dport=80, flags="PA") / req
    got = sig(frame(pkt, src=PC, dst=CAM))
    assert ("src", "http_ua", "curl/8.0") in got
    assert ("dst", "http_path", "/ISAPI") in got


def test_rtsp_request_and_response() -> None:
    req = b"DESCRIBE rtsp://192.168.1.64:554/Streaming/Channels/101 RTSP/1.0\r\nCSeq: 2\r\nUser-Agent: LibVLC/3.0\r\n\r\n"
    pkt = IP(src="192.168.1.9", dst="192.168.1.64") / TCP(sport=50001, dport=554, flags="PA") / req
    got = sig(frame(pkt, src=PC, dst=CAM))
    assert ("dst", "rtsp_request", "/Streaming/Channels/101") in got
    assert ("src", "rtsp_client", "LibVLC/3.0") in got
    resp = b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nServer: Rtsp Server/3.0\r\n\r\n"
    pkt = IP(src="192.168.1.64", dst="192.168.1.9") / TCP(sport=554, dport=50001, flags="PA") / resp
    assert ("src", "rtsp_server", "Rtsp Server/3.0") in sig(frame(pkt))


def client_hello(sni: bytes) -> bytes:
    name = struct.pack("!BH", 0, len(sni)) + sni
    ext = struct.pack("!HH", 0, len(name) + 2) + struct.pack("!H", len(name)) + name
    body = b"\x03\x03" + bytes(32) + b"\x00" + struct.pack("!H", 2) + b"\x13\x01" + b"\x01\x00"
    body += struct.pack("!H", len(ext)) + ext
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def test_tls_client_hello_sni() -> None:
    pkt = IP(src="192.168.1.64", dst="52.1.2.3") / TCP(sport=40000, dport=443, flags="PA") / client_hello(b"api.ezvizlife.com")
    assert sig(frame(pkt)) == {("src", "tls_sni", "api.ezvizlife.com")}


def test_ws_discovery_probe_match() -> None:
    xml = (b'<?xml version="1.0"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
           b'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
           b'xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery" xmlns:dn="http://www.onvif.org/ver10/network/wsdl">'
           b"<s:Header><a:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</a:Action></s:Header>"
           b"<s:Body><d:ProbeMatches><d:ProbeMatch><d:Types>dn:NetworkVideoTransmitter tds:Device</d:Types>"
           b"<d:Scopes>onvif://www.onvif.org/type/video_encoder onvif://www.onvif.org/hardware/DS-2CD2032-I "
           b"onvif://www.onvif.org/name/HIKVISION</d:Scopes></d:ProbeMatch></d:ProbeMatches></s:Body></s:Envelope>")
    pkt = IP(src="192.168.1.64", dst="192.168.1.9") / UDP(sport=3702, dport=50002) / xml
    got = sig(frame(pkt, kind="wsd"))
    assert ("src", "wsd_type", "dn:NetworkVideoTransmitter") in got
    assert ("src", "wsd_scope", "hardware/DS-2CD2032-I") in got
    assert ("src", "wsd_scope", "type/video_encoder") in got


def test_netbios_browser_announcement_name() -> None:
    def nb(name: str) -> bytes:
        raw = name.ljust(15).encode() + b"\x00"
        return b"\x20" + bytes(x for c in raw for x in (65 + (c >> 4), 65 + (c & 15))) + b"\x00"

    browse = b"\\MAILSLOT\\BROWSE\x00" + b"\x01" + b"\x00" + struct.pack("<I", 720000) + b"NVR9".ljust(16, b"\x00")
    payload = b"\x11\x02" + b"\x00\x01" + bytes([10, 0, 5, 9]) + struct.pack("!HHH", 138, 0, 0) + nb("NVR9") + nb("WORKGROUP")
    payload += b"\xffSMB" + bytes(28) + browse
    pkt = IP(src="10.0.5.9", dst="10.0.5.255") / UDP(sport=138, dport=138) / payload
    assert ("src", "netbios_name", "NVR9") in sig(frame(pkt, src="00:30:48:b0:b1:94"))


def test_malformed_frames_never_raise() -> None:
    rng = random.Random(4)
    good = [bytes(IP(src="192.168.1.64", dst="192.168.1.9") / UDP(sport=p, dport=p) / (b"x" * 40))
            for p in (53, 67, 1900, 3702, 5353, 37020, 37810, 34569, 10001, 138, 137, 123)]
    good.append(bytes(IP(src="192.168.1.64", dst="52.1.2.3") / TCP(sport=4000, dport=443) / client_hello(b"a.b")))
    fp = Fingerprints()
    for base in good:
        for _ in range(60):
            data = bytearray(base)
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            for cut in (len(data), rng.randrange(len(data) + 1)):
                for l3 in (4, 6, 1):
                    fr = RareFrame(1.0, 0, 1, l3, bytes(data[:cut]), CAM, None, "first_payload")
                    signals(fr)
                    fp.add(fr)
    assert fp.frames > 0


# --------------------------------------------------------------------------- OUI

def test_oui_vendor_and_local_admin() -> None:
    v = lookup("c0:56:e3:00:00:01")
    assert v.short == "Hikvision" and v.organisation and "Hikvision" in v.organisation
    assert lookup("00:17:88:24:76:ff").short == "Philips Lighting"
    r = lookup("6a:0f:da:86:9b:90")
    assert r.local_admin and r.organisation is None
    assert lookup("192.168.1.5").organisation is None


# --------------------------------------------------------------------------- traffic

def flows_table(rows: list[dict[str, object]]) -> pa.Table:
    full = []
    for r in rows:
        d = {f.name: 0 for f in FLOW_SCHEMA}
        d.update(community_id="", ip_version=4, state="none", reason="end", start=0.0, end=1.0,
                 src_mac=None, dest_mac=None, history="", conn_state="OTH")
        d.update(r)
        full.append(d)
    return pa.Table.from_pylist(full, schema=FLOW_SCHEMA)


def test_traffic_from_flows_roles_gateway_and_merge() -> None:
    gw, nvr = "00:11:22:33:44:55", "24:28:fd:00:00:01"
    rows = [
        # the recorder pulls RTSP from two cameras
        dict(proto=6, src_ip="192.168.1.10", src_port=40000, dest_ip="192.168.1.64", dest_port=554, src_mac=nvr,
             dest_mac=CAM, state="established", pkts_toserver=10, pkts_toclient=500, bytes_toserver=1000,
             bytes_toclient=2_000_000, start=0.0, end=60.0),
        dict(proto=6, src_ip="192.168.1.10", src_port=40001, dest_ip="192.168.1.65", dest_port=554, src_mac=nvr,
             dest_mac="c0:56:e3:11:22:34", state="established", pkts_toserver=10, pkts_toclient=500),
        # the camera calls its cloud through the gateway
        dict(proto=6, src_ip="192.168.1.64", src_port=40002, dest_ip="52.1.2.3", dest_port=443, src_mac=CAM,
             dest_mac=gw, state="closed", pkts_toserver=5, pkts_toclient=5, bytes_toserver=700, bytes_toclient=900),
        # an SSDP multicast is nobody's service
        dict(proto=17, src_ip="192.168.1.64", src_port=1900, dest_ip="239.255.255.250", dest_port=1900, src_mac=CAM,
             dest_mac="01:00:5e:7f:ff:fa", pkts_toserver=3),
    ]
    t = traffic_from_flows(flows_table(rows))
    assert t[CAM].serves(554) and t[CAM].uses(443) and t[CAM].max_upload_bps > 30_000
    assert t[nvr].rtsp_servers == {"192.168.1.64", "192.168.1.65"}
    assert t[gw].forwarded == {"52.1.2.3"} and not t[gw].served
    assert "01:00:5e:7f:ff:fa" not in t
    both = t[CAM].merge(t[CAM])
    assert both.served[(6, 554)] == 2 and both.bytes_up == 2 * t[CAM].bytes_up


# --------------------------------------------------------------------------- rules

def test_rule_camera_from_model_name_and_rtsp() -> None:
    fp = Fingerprints()
    pkt = (IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67) / BOOTP()
           / DHCP(options=[("message-type", "discover"), ("hostname", b"DS-2CD2032-I"), "end"]))
    fp.add(frame(pkt, kind="dhcp"))
    tr = DeviceTraffic()
    tr.served[(6, 554)] = 3
    ids = identify({CAM: DeviceRecord(mac=CAM, ips=["192.168.1.64"])}, fp, {CAM: tr})
    ident = ids[CAM]
    assert isinstance(ident, Identity)
    assert ident.device_type == "camera" and ident.type_confidence >= 0.9 and ident.classified_by is None
    assert ident.vendor == "Hikvision" and ident.model == ident.product == "DS-2CD2032-I"
    # one meaning per name: Identity.model is the product model, as DeviceRecord.model
    assert ident.to_dict()["model"] == "DS-2CD2032-I" and ident.to_dict()["classified_by"] is None
    assert ident.evidence[0].startswith("OUI: Hangzhou Hikvision")
    assert "serves RTSP on 554 (3 sessions)" in ident.evidence


def test_rule_recorder_pulls_rtsp_from_cameras() -> None:
    nvr = "c0:56:e3:99:99:99"
    tr = DeviceTraffic(rtsp_servers={"192.168.1.64", "192.168.1.65", "192.168.1.66"})
    ident = decide(nvr, None, Fingerprints().get(nvr), tr)
    assert ident.device_type == "recorder" and "pulls RTSP from 3 local cameras" in ident.evidence


def test_rule_printer_router_and_unknown() -> None:
    tr = DeviceTraffic()
    tr.served[(6, 9100)] = 2
    assert decide("00:23:7d:77:bd:ba", None, Fingerprints().get("x"), tr).device_type == "printer"
    gw = DeviceTraffic(forwarded={f"52.0.0.{i}" for i in range(20)})
    assert decide("00:11:88:31:4a:f0", None, Fingerprints().get("x"), gw).device_type == "router"
    nothing = decide("02:00:00:00:00:01", None, Fingerprints().get("x"), None)
    assert nothing.device_type == "unknown" and nothing.type_confidence == 0.0
    assert "locally administered MAC (randomised?)" in nothing.evidence


def test_classifier_never_guesses_camera_without_camera_evidence() -> None:
    class AlwaysCamera:
        classes_ = np.array(["camera", "plug"])

        def predict_proba(self, x: np.ndarray) -> np.ndarray:
            return np.array([[0.9, 0.1]] * len(x))

    ident = decide(PC, None, Fingerprints().get(PC), DeviceTraffic(), TypeModel(AlwaysCamera(), "type-test"))
    assert ident.device_type == "plug" and ident.classified_by == "type-test"


def test_type_model_bundle_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sklearn.ensemble import RandomForestClassifier

    from iotwatch.bundle import save_bundle

    rng = np.random.default_rng(0)
    x = rng.random((40, len(FEATURES)))
    y = np.array(["camera", "plug"] * 20)
    est = RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y)
    out = save_bundle(tmp_path / "type-v1", est, kind="device_type", features=FEATURES, classes=["camera", "plug"],
                      training=["synthetic"], metrics={}, thresholds={}, extra={"model_name": "type-v1"})
    m = TypeModel.load(out)
    assert m.name == "type-v1" and m.classes == ["camera", "plug"]
    assert m.proba(x[0]).shape == (1, 2)
    with pytest.raises(ModelError):
        save_bundle(tmp_path / "other", est, kind="behaviour", features=FEATURES, classes=["camera", "plug"],
                    training=[], metrics={}, thresholds={})
        TypeModel.load(tmp_path / "other")


def test_tftp_request_file_name() -> None:
    rrq = IP(src="10.0.0.5", dst="192.168.1.13") / UDP(sport=40000, dport=69) / (b"\x00\x01/update.sh\x00octet\x00")
    assert ("src", "tftp_request", "/update.sh") in sig(frame(rrq))
    data = IP(src="10.0.0.5", dst="192.168.1.13") / UDP(sport=40000, dport=69) / (b"\x00\x03\x00\x01abc")
    assert sig(frame(data)) == set()


def test_phone_maker_registration_and_android_private_dns() -> None:
    from iotwatch.inventory.catalog import org_hint

    assert org_hint("LG Electronics (Mobile Communications)")[0] == "phone"  # type: ignore[index]
    assert org_hint("LG Electronics") is None and org_hint(None) is None
    fp = Fingerprints()
    fp.add(frame(IP(src="10.0.0.9", dst="8.8.8.8") / TCP(sport=40000, dport=853) / client_hello(b"dns.google"),
                 src="6a:0f:da:86:9b:90"))
    tr = DeviceTraffic()
    tr.used[(6, 853)] = 3
    ident = decide("6a:0f:da:86:9b:90", None, fp.get("6a:0f:da:86:9b:90"), tr)
    assert ident.device_type == "phone"
    assert any("Android Private DNS" in e for e in ident.evidence)


class ComputerModel:
    """A type model that always says computer (what the classifier said for both phones)."""

    classes_ = np.array(["computer", "phone", "plug"])

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.array([[0.6, 0.3, 0.1]] * len(x))


def _private_dns(mac: str, *more: bytes) -> tuple[Fingerprints, DeviceTraffic]:
    """A device resolving over TLS (TCP 853) at dns.google, plus ``more`` payloads it sent."""
    fp = Fingerprints()
    fp.add(frame(IP(src="10.0.0.9", dst="8.8.8.8") / TCP(sport=40000, dport=853) / client_hello(b"dns.google"),
                 src=mac))
    for payload in more:
        fp.add(frame(IP(src="10.0.0.9", dst="93.184.216.34") / TCP(sport=40001, dport=80) / payload, src=mac))
    tr = DeviceTraffic()
    tr.used[(6, 853)] = 3
    return fp, tr


def test_mobile_division_registration_decides_phone_by_rule() -> None:
    from iotwatch.inventory.catalog import org_hint

    model = TypeModel(ComputerModel(), "type-test")
    lg_mobile = "64:bc:0c:6a:81:f3"  # LG Electronics (Mobile Communications)
    ident = decide(lg_mobile, None, Fingerprints().get(lg_mobile), DeviceTraffic(), model)
    assert ident.device_type == "phone" and ident.classified_by is None and ident.type_confidence >= 0.8
    assert any("mobile communications division" in e for e in ident.evidence)
    for org in ("GUANGDONG OPPO MOBILE TELECOMMUNICATIONS CORP.,LTD", "vivo Mobile Communication Co., Ltd.",
                "Lenovo Mobile Communication Technology Ltd."):
        assert org_hint(org) == ("phone", 0.85, "a mobile communications division's registration: handsets")
    # phone makers registered under the company's name also make headsets and TVs: the classifier decides
    htc = "00:09:2d:00:00:01"
    assert lookup(htc).organisation == "HTC Corporation"
    assert decide(htc, None, Fingerprints().get(htc), DeviceTraffic(), model).device_type == "computer"
    lg_tv = "00:e0:91:00:00:01"  # LG Electronics (not its mobile division)
    assert decide(lg_tv, None, Fingerprints().get(lg_tv), DeviceTraffic(), model).device_type == "computer"


def test_randomised_mac_with_private_dns_is_an_android_handset() -> None:
    model = TypeModel(ComputerModel(), "type-test")
    rand = "6a:0f:da:86:9b:90"  # locally administered, randomised
    fp, tr = _private_dns(rand)
    ident = decide(rand, None, fp.get(rand), tr, model)
    assert ident.device_type == "phone" and ident.classified_by is None and ident.type_confidence >= 0.8
    assert "Android Private DNS from a randomised MAC: DNS over TLS to dns.google" in ident.evidence
    # DoT alone (a registered laptop MAC), or from a virtual machine's fixed prefix: not decided by rule
    for mac in (PC, "52:54:00:12:34:56"):
        fp, tr = _private_dns(mac)
        ident = decide(mac, None, fp.get(mac), tr, model)
        assert ident.device_type == "computer" and ident.classified_by == "type-test", mac
    assert lookup("52:54:00:12:34:56").virtual == "QEMU/KVM"
    assert "locally administered MAC (QEMU/KVM default prefix)" in ident.evidence
    # a randomised MAC with DoT on a machine that says it is a PC stays a PC
    ua = b"GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64)\r\n\r\n"
    fp, tr = _private_dns(rand, ua)
    ident = decide(rand, None, fp.get(rand), tr, model)
    assert ident.device_type == "computer" and ident.classified_by is None


def test_busybox_dhcp_client_is_never_typed_computer_or_phone() -> None:
    class AlwaysComputer:
        classes_ = np.array(["computer", "phone", "plug"])

        def predict_proba(self, x: np.ndarray) -> np.ndarray:
            return np.array([[0.6, 0.3, 0.1]] * len(x))

    dev = "3c:49:37:03:17:db"
    fp = Fingerprints()
    fp.add(frame(IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67)
                 / BOOTP(chaddr=bytes.fromhex("3c49370317db")) / DHCP(options=[
                     ("message-type", "request"), ("vendor_class_id", b"udhcp 1.12.1"), "end"]), src=dev, kind="dhcp"))
    fp.add(frame(IP(src="10.0.0.5", dst="192.168.1.13") / UDP(sport=40000, dport=69)
                 / b"\x00\x01/update.sh\x00octet\x00", src=dev))
    ident = decide(dev, None, fp.get(dev), DeviceTraffic(), TypeModel(AlwaysComputer(), "type-test"))
    assert ident.device_type == "plug"
    assert "embedded Linux DHCP client (BusyBox udhcp 1.12.1)" in ident.evidence
    assert "fetches /update.sh over TFTP" in ident.evidence
    # without the BusyBox client the classifier's answer stands
    assert decide(PC, None, Fingerprints().get(PC), DeviceTraffic(),
                  TypeModel(AlwaysComputer(), "type-test")).device_type == "computer"


def test_virtual_nic_default_prefix_is_a_computer() -> None:
    """Docker's 02:42 prefix (then the container's IPv4 address) and QEMU's 52:54:00 are guests or
    containers: a computer fact (0.6, one source: the classifier weighs it), and no randomised
    phone MAC."""
    for mac, software in (("02:42:ac:12:00:03", "Docker"), ("52:54:00:12:34:56", "QEMU/KVM")):
        ident = decide(mac, None, Fingerprints().get(mac), DeviceTraffic())
        assert (ident.device_type, ident.type_confidence) == ("computer", 0.6), (mac, ident)
        assert any(e.startswith(f"virtual NIC: {software} default prefix") for e in ident.evidence)
        x = features(None, Fingerprints().get(mac), DeviceTraffic(), lookup(mac), hints(
            lookup(mac), Fingerprints().get(mac), DeviceTraffic()))
        assert x[FEATURE_NAMES.index("hint_computer")] == pytest.approx(0.6)
    # a randomised (not virtual) locally administered MAC gets no such fact
    rand = "6a:0f:da:86:9b:90"
    ident = decide(rand, None, Fingerprints().get(rand), DeviceTraffic())
    assert ident.device_type != "computer" and not any("virtual NIC" in e for e in ident.evidence)


class UnsurePhone:
    """A type model that leans to phone without conviction (0.34)."""

    classes_ = np.array(["computer", "phone", "sensor"])

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.array([[0.33, 0.34, 0.33]] * len(x))


class SurePhone(UnsurePhone):
    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.array([[0.1, 0.8, 0.1]] * len(x))


def test_facts_from_two_sources_outweigh_an_unsure_classifier_only() -> None:
    """The Nest case: the maker (Nest makes mostly sensors, 0.5) and its cloud (nest.com, 0.5)
    combine to 0.75; a classifier below an even chance for a type no fact supports yields to them,
    a sure one does not, and one source alone never overrules it."""
    nest = "18:b4:30:26:34:40"
    fp = Fingerprints()
    fp.add(frame(IP(src="192.168.1.15", dst="192.168.1.1") / UDP(sport=40000, dport=53)
                 / DNS(rd=1, qd=DNSQR(qname="weave-logsink.nest.com")), src=nest, kind="dns"))
    ident = decide(nest, None, fp.get(nest), DeviceTraffic(), TypeModel(UnsurePhone(), "type-test"))
    assert ident.device_type == "sensor" and ident.classified_by is None
    assert ident.type_confidence == pytest.approx(0.75)
    sure = decide(nest, None, fp.get(nest), DeviceTraffic(), TypeModel(SurePhone(), "type-test"))
    assert sure.device_type == "phone" and sure.classified_by == "type-test"
    # the maker alone (no cloud name): one source, the unsure classifier stands
    alone = decide(nest, None, Fingerprints().get(nest), DeviceTraffic(), TypeModel(UnsurePhone(), "type-test"))
    assert alone.device_type == "phone"


# --------------------------------------------------------------------------- shared captures

def _identify_capture(rel: str) -> dict[str, Identity]:
    from iotwatch.learn.observe import observe

    obs = observe(SHARED_PCAPS / rel)
    return identify(obs.devices, obs.fingerprints, obs.traffic)


@needs_shared
def test_shared_dlink_camera_typed_camera_by_rule() -> None:
    ids = _identify_capture("iot_sentinel/D-LinkCam/Setup-A-1-STA.pcap")
    cam = ids["b0:c5:54:25:5b:0e"]
    assert cam.device_type == "camera" and cam.classified_by is None and cam.model == cam.product == "DCS-935L"
    assert cam.vendor == "D-Link"


@needs_shared
def test_shared_yi_camera_streaming_is_a_camera_and_nothing_else_is() -> None:
    ids = _identify_capture("monitr_yi_camera/yi_camera_sample.pcap")
    assert ids["b0:d5:9d:b9:f0:b4"].device_type == "camera"
    assert any(e.startswith("steady upstream stream") for e in ids["b0:d5:9d:b9:f0:b4"].evidence)
    others = [k for k, i in ids.items() if k != "b0:d5:9d:b9:f0:b4" and i.device_type in ("camera", "recorder")]
    assert others == []


@needs_shared
def test_shared_phones_typed_phone_by_rule() -> None:
    """The LG phone (mobile-division OUI, nothing else) and the Android 10 phone (randomised MAC,
    Private DNS only), which the classifier types computer: the rules decide both."""
    from iotwatch.learn.observe import observe

    model = TypeModel(ComputerModel(), "type-test")
    for rel, mac in (("monitr_yi_camera/yi_camera_sample.pcap", "64:bc:0c:6a:81:f3"),
                     ("ndpi_protocols/googledns_android10.pcap", "6a:0f:da:86:9b:90")):
        obs = observe(SHARED_PCAPS / rel)
        ids = identify(obs.devices, obs.fingerprints, obs.traffic, model)
        assert ids[mac].device_type == "phone" and ids[mac].classified_by is None, (rel, ids[mac].evidence)
        # nothing else in these captures is typed phone by rule
        assert [k for k, i in ids.items() if k != mac and i.device_type == "phone" and i.classified_by is None] == []


@needs_shared
def test_shared_recorder_and_printer() -> None:
    assert _identify_capture("ndpi_protocols/netbios.pcap")["00:30:48:b0:b1:94"].device_type == "recorder"
    assert _identify_capture("sanders_packets/inconsistent_printer.pcapng")["00:23:7d:77:bd:ba"].device_type == "printer"


# --------------------------------------------------------------------------- traffic from raw flow records

from collections import Counter  # noqa: E402
from collections.abc import Callable  # noqa: E402

from iotwatch.addrs import MAPPED, LocalNets  # noqa: E402
from iotwatch.flows import (  # noqa: E402
    FLOW_DTYPE,
    S_EST,
    S_FIN_C,
    S_FIN_S,
    S_REJECTED,
    S_RST,
    S_SYN,
    S_SYNACK,
    FlowTable,
    flows_to_table,
)
from iotwatch.inventory import traffic as tr  # noqa: E402
from iotwatch.inventory.traffic import MAX_PORTS, MAX_SET, traffic_from_records  # noqa: E402

NO_MAC = 1 << 63


def reference_traffic(flows: pa.Table, local: Callable[[str], bool] | None = None) -> dict[str, DeviceTraffic]:
    """The per-flow Python loop traffic_from_flows used to be (commit 0a4b9f5): the oracle both
    vectorised versions must agree with, caps and their order included."""
    is_local = local or tr.default_local
    cols = {c: flows.column(c).to_pylist() for c in ("src_ip", "dest_ip", "src_mac", "dest_mac", "proto", "src_port",
                                                     "dest_port", "pkts_toclient", "bytes_toserver",
                                                     "bytes_toclient", "start", "end")}
    state = flows.column("state").cast(pa.string()).to_pylist()
    out: dict[str, DeviceTraffic] = {}

    def key(mac: str | None, ip: str | None, ip_local: bool) -> str | None:
        if mac is None:
            return ip
        return None if tr._mac_group(mac) or not ip_local else mac

    def add(s: set[str], v: str) -> None:
        if len(s) < MAX_SET:
            s.add(v)

    def shape(d: DeviceTraffic, sent: int, t0: float, t1: float) -> None:
        d.first, d.last = min(d.first, t0), max(d.last, t1)
        if t1 - t0 >= tr.STREAM_MIN_S:
            d.max_upload_bps = max(d.max_upload_bps, sent / (t1 - t0))
            d.stream_flows += sent >= tr.STREAM_MIN_BYTES

    for i in range(flows.num_rows):
        p, st, pk_c = cols["proto"][i], state[i], cols["pkts_toclient"][i]
        c_ip, s_ip, c_mac, s_mac = cols["src_ip"][i], cols["dest_ip"][i], cols["src_mac"][i], cols["dest_mac"][i]
        c_port, s_port = cols["src_port"][i], cols["dest_port"][i]
        up_c, up_s = cols["bytes_toserver"][i], cols["bytes_toclient"][i]
        if p == 6:
            answered = st in ("established", "closed", "reset") or (st == "midstream" and pk_c > 0)
            svc_c = c_port in tr._SERVICE or c_port < 1024
            svc_s = s_port in tr._SERVICE or s_port < 1024
            if st == "midstream" and svc_c and not svc_s:
                c_ip, s_ip, c_mac, s_mac, c_port, s_port = s_ip, c_ip, s_mac, c_mac, s_port, c_port
                up_c, up_s = up_s, up_c
        else:
            answered = pk_c > 0
        c_loc, s_loc = bool(is_local(c_ip)), bool(is_local(s_ip))
        multicast = tr._multicast_ip(s_ip) or (s_mac is not None and tr._mac_group(s_mac))
        c_key = key(c_mac, c_ip, c_loc)
        s_key = None if multicast else key(s_mac, s_ip, s_loc)
        t0, t1 = cols["start"][i], cols["end"][i]
        if c_key is not None:
            d = out.setdefault(c_key, DeviceTraffic())
            d.flows_client += 1
            d.bytes_up += up_c
            d.bytes_down += up_s
            if p in (6, 17):
                d.used[(p, s_port)] += 1
                if p == 6 and s_port in (554, 8554) and answered and s_loc:
                    add(d.rtsp_servers, s_ip)
                d.flows_unanswered += not answered
            if not multicast:
                add(d.peers_local if s_loc else d.peers_external, s_ip)
                if not s_loc:
                    d.bytes_up_external += up_c
            shape(d, up_c, t0, t1)
        elif c_mac is not None and not c_loc and not tr._mac_group(c_mac):
            add(out.setdefault(c_mac, DeviceTraffic()).forwarded, c_ip)
        if s_key is not None:
            d = out.setdefault(s_key, DeviceTraffic())
            d.bytes_up += up_s
            d.bytes_down += up_c
            if answered:
                d.flows_server += 1
                if p in (6, 17):
                    d.served[(p, s_port)] += 1
                add(d.served_clients, c_ip)
            add(d.peers_local if c_loc else d.peers_external, c_ip)
            if not c_loc:
                d.bytes_up_external += up_s
            shape(d, up_s, t0, t1)
        elif s_mac is not None and not s_loc and not multicast:
            add(out.setdefault(s_mac, DeviceTraffic()).forwarded, s_ip)
    for d in out.values():
        d.served, d.used = tr._cap_counter(d.served), tr._cap_counter(d.used)
    return out


def nets_local(nets: LocalNets) -> Callable[[str], bool]:
    """An ip → bool callable with the records version's idea of local (addr_class == 1)."""
    def local(ip: str) -> bool:
        _, hi, lo = tr._words(ip)
        return bool(tr._local_classes(np.array([hi], np.uint64), np.array([lo], np.uint64), nets)[0])
    return local


def flow_records(path: object, max_flows: int = 1 << 17) -> list[np.ndarray]:
    """Raw finished-flow batches of a capture, as the pipeline gets them from its flow table."""
    from iotwatch.capture import CaptureSet
    from iotwatch.decode import Packets, decode
    from iotwatch.flows import FlowSettings

    ft, pk, out = FlowTable(FlowSettings(max_flows=max_flows)), Packets.allocate(1 << 15), []
    for b in CaptureSet([path]).batches():  # type: ignore[list-item]
        if len(b) > len(pk):
            pk = Packets.allocate(len(b))
        p = decode(b, pk)
        out += [r.copy() for r in ft.update(p, b.ts_ns, b.wirelen, (b.file_index << 40) | b.frame0)]
    return out + [r.copy() for r in ft.flush()]


def assert_same_three_ways(rows: np.ndarray, nets: LocalNets) -> dict[str, DeviceTraffic]:
    table = flows_to_table(rows)
    got = traffic_from_records(rows, nets)
    assert got == traffic_from_flows(table, nets)
    assert got == reference_traffic(table, nets_local(nets))
    assert traffic_from_flows(table) == reference_traffic(table)  # the default idea of local
    return got


def test_default_local_is_the_pipelines_rule() -> None:
    """traffic_from_flows' and Fingerprints' default idea of local is LocalNets.is_local (addrs.py):
    documentation and benchmark ranges are external, as the pipeline counts them."""
    nets = LocalNets()
    for ip, local in (("192.168.1.5", True), ("10.1.2.3", True), ("172.31.0.1", True), ("169.254.9.9", True),
                      ("fe80::1", True), ("fd00::5", True), ("192.0.2.7", False), ("198.18.0.1", False),
                      ("198.51.100.3", False), ("203.0.113.9", False), ("100.64.0.1", False), ("2001:db8::1", False),
                      ("224.0.0.251", False), ("255.255.255.255", False), ("0.0.0.0", False), ("8.8.8.8", False),
                      ("not an address", False)):
        assert tr.default_local(ip) is local and nets.is_local(ip) is local, ip
    # a camera at a TEST-NET address talking to a local one: an external peer either way
    rows = [dict(proto=6, src_ip="192.168.1.64", src_port=40002, dest_ip="203.0.113.9", dest_port=443, src_mac=CAM,
                 dest_mac="00:11:22:33:44:55", state="closed", pkts_toserver=5, pkts_toclient=5, bytes_toserver=700,
                 bytes_toclient=900)]
    table = flows_table(rows)
    t = traffic_from_flows(table)
    assert t == traffic_from_flows(table, nets)
    assert t[CAM].peers_external == {"203.0.113.9"} and not t[CAM].peers_local
    assert t["00:11:22:33:44:55"].forwarded == {"203.0.113.9"}


SHARED_TRAFFIC = [
    "monitr_yi_camera/yi_camera_sample.pcap",  # a camera streaming upstream
    "unsw_iot_via_networkml/Two-IOT161012-node5.pcap",  # a smart-home LAN, IPv6 included
    "stopddos_floods/pkt.TCP.synflood.spoofed.pcap",  # spoofed SYN flood: the set caps fill
    "stopddos_floods/amp.TCP.reflection.SYNACK.pcap",  # mid-stream SYN-ACKs turned round
    "ndpi_protocols/rtsp.pcap",  # Linux cooked capture, RTSP
    "ndpi_protocols/netbios.pcap",  # broadcasts
    "wireshark_wiki_via_ivre/nb6-hotspot.pcap",  # a home router
    "sanders_packets/tcp_ports.pcapng",
]


@needs_shared
@pytest.mark.parametrize("rel", SHARED_TRAFFIC)
def test_records_and_table_give_the_same_traffic_on_shared_captures(rel: str) -> None:
    nets = LocalNets()
    batches = flow_records(SHARED_PCAPS / rel)
    assert batches
    merged: dict[str, DeviceTraffic] = {}
    for rows in batches:
        merged = tr.merge_traffic(merged, assert_same_three_ways(rows, nets))
    assert merged
    if "spoofed" in rel:  # the order-dependent caps were reached, and agreed on
        assert max(len(t.peers_external) for t in merged.values()) == MAX_SET


def random_records(n: int, seed: int) -> np.ndarray:
    """Flow records drawn to reach every branch: local/external/multicast/broadcast/IPv6
    addresses, frames with and without Ethernet, group MACs, every TCP state, mid-stream flows
    from service ports, and (one busy MAC) more peers and ports than the caps keep."""
    rng = np.random.default_rng(seed)
    local = [(0, 0, MAPPED | 0xC0A80100 | k) for k in range(1, 40)] + [(0, 0, MAPPED | 0xCB007105)]  # + 203.0.113.5
    local += [(1, 0xFE80 << 48, 1), (1, 0xFE80 << 48, 2), (1, 0, MAPPED | 0x0A000001)]  # link-local, mapped v4
    special = [(0, 0, MAPPED | a) for a in (0xC0A801FF, 0xE00000FB, 0xEFFFFFFA, 0xFFFFFFFF, 0, 0xC6336401)]
    special += [(1, 0xFF02 << 48, 0xFB), (1, 0x2001_0DB8 << 32, 7), (1, 0, 0)]
    external = [(0, 0, MAPPED | int(a)) for a in rng.integers(0x01000000, 0xDF000000, 600)]
    external += [(1, 0x2A00_1450 << 32, int(k)) for k in range(20)]
    pools = [local, special, external]

    def draw() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        which = rng.choice(3, n, p=[0.5, 0.15, 0.35])
        picked = [pools[w][rng.integers(0, len(pools[w]))] for w in which]
        return tuple(np.array([p[k] for p in picked], np.uint64) for k in range(3))  # type: ignore[return-value]

    (a_v6, a_hi, a_lo), (b_v6, b_hi, b_lo) = draw(), draw()
    r = np.zeros(n, FLOW_DTYPE)
    same = a_v6 == b_v6  # both endpoints of a flow in one family
    r["v6"] = np.where(same, a_v6, 0)
    r["ahi"], r["alo"] = np.where(same, a_hi, 0), np.where(same, a_lo, MAPPED | 0xC0A80102)
    r["bhi"], r["blo"] = np.where(same, b_hi, 0), np.where(same, b_lo, MAPPED | 0x08080808)
    macs = np.array([0x0011_2233_4400 | k for k in range(12)] + [0x0100_5E00_00FB, 0xFFFF_FFFF_FFFF, 0x3333_0000_0001],
                    np.uint64)
    weights = np.full(len(macs), 0.6 / (len(macs) - 1))
    weights[0] = 0.4  # the busy one
    no_eth = rng.random(n) < 0.15
    r["mac_c"] = np.where(no_eth, np.uint64(NO_MAC), macs[rng.choice(len(macs), n, p=weights)])
    r["mac_s"] = np.where(no_eth, np.uint64(NO_MAC), macs[rng.choice(len(macs), n, p=weights)])
    ports = np.array([22, 23, 53, 80, 123, 443, 554, 1900, 5353, 8554, 9100, 37777,
                      *rng.integers(1024, 65536, 150).tolist()])
    r["aport"], r["bport"] = ports[rng.integers(0, len(ports), n)], ports[rng.integers(0, len(ports), n)]
    r["proto"] = rng.choice([6, 6, 6, 17, 17, 1, 58, 47], n)
    r["icmp_tc"] = rng.integers(0, 1 << 16, n)
    r["client_a"] = rng.integers(0, 2, n)
    bits = [0, S_SYN, S_SYN | S_SYNACK, S_SYN | S_SYNACK | S_EST, S_SYN | S_RST | S_REJECTED,
            S_SYN | S_SYNACK | S_EST | S_RST, S_SYN | S_SYNACK | S_EST | S_FIN_C | S_FIN_S, S_RST, S_FIN_C]
    r["state"] = np.array(bits)[rng.integers(0, len(bits), n)]
    r["pk"][:, 0] = rng.integers(1, 50, n)
    r["pk"][:, 1] = rng.integers(0, 3, n) * rng.integers(0, 50, n)
    r["by"][:, 0] = r["pk"][:, 0] * rng.integers(60, 1500, n)
    r["by"][:, 1] = r["pk"][:, 1] * rng.integers(60, 1500, n)
    r["by"][rng.random(n) < 0.05, 0] = 5_000_000  # some upload streams
    first = 1_754_000_000_000_000_000 + rng.integers(0, 10**12, n)
    r["first"] = first
    r["last"] = first + rng.choice([0, 10**6, 4_999_999_999, 5 * 10**9, 60 * 10**9], n)
    r["flow_id"] = np.arange(1, n + 1)
    return r


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_records_and_table_agree_with_the_former_loop_on_drawn_flows(seed: int) -> None:
    rows = random_records(6000, seed)
    got = assert_same_three_ways(rows, LocalNets(["203.0.113.0/24"]))
    assert any(len(t.used) == MAX_PORTS for t in got.values())  # the port cap was reached
    assert any(len(t.peers_external) == MAX_SET for t in got.values())  # and the set cap
    assert any(t.forwarded for t in got.values()) and any(t.served for t in got.values())
    assert any(k.count(".") == 3 for k in got)  # IP devices (no Ethernet)
    # and a batch cut in two merges like the whole (exact where no cap is reached)
    half = len(rows) // 2
    parts = tr.merge_traffic(traffic_from_records(rows[:half], LocalNets()), traffic_from_records(rows[half:], LocalNets()))
    whole = traffic_from_records(rows, LocalNets())
    assert parts.keys() == whole.keys()
    assert all(parts[k].bytes_up == whole[k].bytes_up and parts[k].flows_client == whole[k].flows_client for k in whole)


def test_records_midstream_reversal_multicast_and_no_ethernet() -> None:
    r = np.zeros(4, FLOW_DTYPE)
    cam, nvr, gw = 0xC0A80140, 0xC0A8010A, 0x0011_2233_4455
    # 0: mid-stream RTSP seen from the camera's side first (server port 554 → turned round)
    r[0] = r[0]
    r["alo"][0], r["blo"][0], r["aport"][0], r["bport"][0] = MAPPED | nvr, MAPPED | cam, 40000, 554
    r["client_a"][0] = 0  # the camera (B) sent first
    r["mac_c"][0], r["mac_s"][0] = 0xC056E3112233, 0x2428FD000001
    r["pk"][0] = (100, 3)
    r["by"][0] = (2_000_000, 300)
    # 1: mDNS multicast: nobody's service
    r["alo"][1], r["blo"][1], r["aport"][1], r["bport"][1] = MAPPED | cam, MAPPED | 0xE00000FB, 5353, 5353
    r["client_a"][1], r["proto"][1] = 1, 17
    r["mac_c"][1], r["mac_s"][1] = 0xC056E3112233, 0x01005E0000FB
    # 2: camera → cloud through the gateway
    r["alo"][2], r["blo"][2], r["aport"][2], r["bport"][2] = MAPPED | 0x34010203, MAPPED | cam, 443, 40002
    r["client_a"][2] = 0
    r["mac_c"][2], r["mac_s"][2] = 0xC056E3112233, gw
    r["state"][2] = S_SYN | S_SYNACK | S_EST
    # 3: no Ethernet: the IP addresses are the devices
    r["alo"][3], r["blo"][3], r["aport"][3], r["bport"][3] = MAPPED | 0x0A000001, MAPPED | 0x08080808, 5000, 53
    r["client_a"][3], r["proto"][3], r["mac_c"][3], r["mac_s"][3] = 1, 17, NO_MAC, NO_MAC
    r["pk"][3] = (1, 1)
    r["proto"][[0, 2]] = 6
    r["first"] = 10**18
    r["last"] = 10**18 + 60 * 10**9
    t = assert_same_three_ways(r, LocalNets())
    assert t["c0:56:e3:11:22:33"].served == Counter({(6, 554): 1}) and t["c0:56:e3:11:22:33"].max_upload_bps > 30_000
    assert t["24:28:fd:00:00:01"].rtsp_servers == {"192.168.1.64"}
    assert t["00:11:22:33:44:55"].forwarded == {"52.1.2.3"} and not t["00:11:22:33:44:55"].served
    assert "01:00:5e:00:00:fb" not in t and t["c0:56:e3:11:22:33"].used == Counter({(17, 5353): 1, (6, 443): 1})
    assert t["10.0.0.1"].used == Counter({(17, 53): 1}) and t["8.8.8.8"].served == Counter({(17, 53): 1})
    assert traffic_from_records(r[:0], LocalNets()) == {}


def flood_records(n: int, spoofed: bool, seed: int = 7) -> np.ndarray:
    """SYNs from one MAC: to random internet hosts and ports, or from spoofed random sources
    to one local server."""
    rng = np.random.default_rng(seed)
    r = np.zeros(n, FLOW_DTYPE)
    others = MAPPED | rng.integers(0x0B000000, 0x7E000000, n, dtype=np.uint64)  # 11.0.0.0-125.255.255.255: none local
    fixed = np.full(n, MAPPED | (0xC0A80105 if spoofed else 0xC0A80140), np.uint64)
    c_lo, s_lo = (others, fixed) if spoofed else (fixed, others)
    r["alo"], r["blo"], r["client_a"] = c_lo, s_lo, 1
    r["aport"], r["bport"] = rng.integers(1024, 65536, n), rng.integers(1, 65536, n)
    r["proto"], r["state"] = 6, S_SYN
    r["mac_c"], r["mac_s"] = 0xB0D59DB9F0B4, 0x001122334455
    r["pk"][:, 0], r["by"][:, 0] = 1, 60
    r["first"] = r["last"] = 10**18 + np.arange(n) * 1000
    return r


@pytest.mark.parametrize("spoofed", [False, True])
def test_flood_batch_profile_is_bounded(spoofed: bool) -> None:
    n = 1 << 14
    t = traffic_from_records(flood_records(n, spoofed), LocalNets())
    assert len(t) == 2
    for d in t.values():
        assert len(d.served) <= MAX_PORTS and len(d.used) <= MAX_PORTS
        for s in (d.served_clients, d.rtsp_servers, d.peers_local, d.peers_external, d.forwarded):
            assert len(s) <= MAX_SET
    bot, gw = t["b0:d5:9d:b9:f0:b4"], t["00:11:22:33:44:55"]
    if spoofed:  # the sources are external: seen behind the sender's MAC, aimed at a local server
        assert len(bot.forwarded) == MAX_SET and bot.flows_client == 0
        assert gw.flows_server == 0 and len(gw.peers_external) == MAX_SET and not gw.served
    else:
        assert bot.flows_client == n == bot.flows_unanswered and len(bot.used) == MAX_PORTS
        assert len(bot.peers_external) == MAX_SET and len(gw.forwarded) == MAX_SET


def test_external_ip_devices_off_restricts_to_macs_and_local_addresses() -> None:
    nets = LocalNets(["203.0.113.0/24"])
    for rows in (random_records(3000, 5), flood_records(4000, spoofed=True)):
        if rows["mac_c"][0] != NO_MAC:
            rows = rows.copy()
            rows["mac_c"][::2] = rows["mac_s"][::2] = NO_MAC  # half the frames without Ethernet
        full = traffic_from_records(rows, nets)
        kept = traffic_from_records(rows, nets, external_ip_devices=False)
        local = nets_local(nets)
        assert kept == {k: t for k, t in full.items() if re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", k) or local(k)}
        assert kept == traffic_from_flows(flows_to_table(rows), nets, external_ip_devices=False)
        assert len(kept) < len(full)
