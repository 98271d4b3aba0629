"""Device inventory: rare-packet parsers, OUI lookup, traffic profile, rules, type model."""

from __future__ import annotations

import random
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
from iotwatch.inventory.classify import FEATURES, decide
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
                 src_mac=None, dest_mac=None)
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
    assert ident.device_type == "camera" and ident.type_confidence >= 0.9 and ident.model is None
    assert ident.vendor == "Hikvision" and ident.product == "DS-2CD2032-I"
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
    assert ident.device_type == "plug" and ident.model == "type-test"


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


# --------------------------------------------------------------------------- shared captures

def _identify_capture(rel: str) -> dict[str, Identity]:
    from iotwatch.inventory.train import profile_capture

    prof = profile_capture(SHARED_PCAPS / rel, cache=False)
    return identify(prof.devices, prof.fingerprints, prof.traffic)


@needs_shared
def test_shared_dlink_camera_typed_camera_by_rule() -> None:
    ids = _identify_capture("iot_sentinel/D-LinkCam/Setup-A-1-STA.pcap")
    cam = ids["b0:c5:54:25:5b:0e"]
    assert cam.device_type == "camera" and cam.model is None and cam.product == "DCS-935L"
    assert cam.vendor == "D-Link"


@needs_shared
def test_shared_yi_camera_streaming_is_a_camera_and_nothing_else_is() -> None:
    ids = _identify_capture("monitr_yi_camera/yi_camera_sample.pcap")
    assert ids["b0:d5:9d:b9:f0:b4"].device_type == "camera"
    assert any(e.startswith("steady upstream stream") for e in ids["b0:d5:9d:b9:f0:b4"].evidence)
    others = [k for k, i in ids.items() if k != "b0:d5:9d:b9:f0:b4" and i.device_type in ("camera", "recorder")]
    assert others == []


@needs_shared
def test_shared_recorder_and_printer() -> None:
    assert _identify_capture("ndpi_protocols/netbios.pcap")["00:30:48:b0:b1:94"].device_type == "recorder"
    assert _identify_capture("sanders_packets/inconsistent_printer.pcapng")["00:23:7d:77:bd:ba"].device_type == "printer"
