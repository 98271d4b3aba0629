"""A benign small site (clinic, office) as seen from a mirror port on its switch.

* IP cameras (3–5): the recorder opens RTSP (TCP 554: DESCRIBE, SETUP, PLAY, a GET_PARAMETER
  keep-alive every 30 s) and each camera streams H.264 over RTP/UDP to it at 0.3–0.8 Mbit/s
  (sub-stream);
* a network video recorder: an HTTPS heartbeat to its vendor cloud every 20–60 s, a modest
  upload (a snapshot or event clip, 10–60 kB) every 5–10 minutes, DNS for the cloud name, NTP;
* one or two printers receiving print jobs (TCP 9100) from the PCs;
* PCs (2–5) and phones (1–3) browsing: DNS queries to the router, TLS sessions to public sites
  (a request up, a page of 20–400 kB down);
* the router: the only MAC that carries internet traffic, DNS resolver, DHCP server; ARP for the
  gateway from every host every 1–2 minutes; a DHCP exchange when a phone joins.

Every number above is drawn from the seed. Nothing here uploads much: the recorder's baseline
is a few kB per minute, which is what makes a compromised recorder's surge stand out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP
from scapy.layers.inet import UDP as ScapyUDP
from scapy.layers.l2 import Ether

from .labels import Label
from .sessions import Host, TcpSession, bulk, resolve, stream_region, tls_record, udp
from .wire import UDP, Frames, ip, mac_text

ROUTER_OUIS = (0x50C7BF, 0xF4F26D, 0x001E58)  # TP-Link, TP-Link, D-Link
CAMERA_OUIS = (0x2857BE, 0xC056E3, 0x3CEF8C, 0x4CBD8F)  # Hikvision, Hikvision, Dahua, Hikvision
NVR_OUIS = (0x4419B6, 0x2857BE)  # Hikvision
PC_OUIS = (0xB8CA3A, 0xA48CDB, 0xF48E38, 0x5065F3)  # Dell, Lenovo, Dell, HP
PRINTER_OUIS = (0x3CD92B, 0x001B78)  # HP
PHONE_OUIS = (0xF0DBE2, 0x64BC0C, 0x8866A5)  # Apple, LG, Apple

# Public services (illustrative addresses; only the router's MAC ever carries them)
WEB = ("142.250.185.100", "52.97.146.162", "52.113.194.132", "20.190.160.20", "185.15.59.224",
       "140.82.121.4", "151.101.0.81", "13.107.42.14", "151.101.128.223", "104.16.132.229")
WEB_NAMES = ("www.google.com", "outlook.office365.com", "teams.microsoft.com", "login.microsoftonline.com",
             "www.wikipedia.org", "github.com", "www.bbc.co.uk", "www.linkedin.com", "docs.python.org",
             "www.cloudflare.com")
CLOUDS = (("dev.hik-connect.com", "47.91.74.125"), ("p2p.easy4ip.com", "52.58.14.205"),
          ("cloud.nvr-link.net", "18.184.97.32"))
NTP_POOL = "162.159.200.123"


def _mac(rng: np.random.Generator, ouis: tuple[int, ...]) -> int:
    return (int(rng.choice(ouis)) << 24) | int(rng.integers(0, 1 << 24))


@dataclass(frozen=True, slots=True)
class Site:
    """The devices of one site, drawn from a seed."""

    net: int  # the /24, as an integer with a zero last byte
    router: Host
    recorder: Host
    cameras: tuple[Host, ...]
    printers: tuple[Host, ...]
    pcs: tuple[Host, ...]
    phones: tuple[Host, ...]
    cloud: Host
    cloud_name: str
    ntp: Host

    @property
    def lan(self) -> tuple[Host, ...]:
        return (self.recorder, *self.cameras, *self.printers, *self.pcs, *self.phones)

    def remote(self, name: str, addr: int, rng: np.random.Generator) -> Host:
        """An internet host: the router's MAC, a TTL after some hops, tens of ms away."""
        return Host(name, self.router.mac, addr, "unknown", int(rng.choice((46, 50, 52, 54, 57, 113, 116))),
                    float(rng.uniform(0.012, 0.09)))


def make_site(rng: np.random.Generator, *, cameras: int | None = None) -> Site:
    third = int(rng.choice((1, 0, 10, 20, 50, 100)))
    net = ip(f"192.168.{third}.0")
    router = Host("router", _mac(rng, ROUTER_OUIS), net + 1, "router", 64, 0.0003)
    used: set[int] = {1}

    def addr(lo: int, hi: int) -> int:
        while True:
            a = int(rng.integers(lo, hi))
            if a not in used:
                used.add(a)
                return net + a

    n_cam = cameras if cameras is not None else int(rng.integers(3, 6))
    recorder = Host("nvr", _mac(rng, NVR_OUIS), addr(60, 64), "recorder", 64, 0.0002)
    cams = tuple(Host(f"cam{i + 1}", _mac(rng, CAMERA_OUIS), addr(64, 100), "camera", 64, 0.0004)
                 for i in range(n_cam))
    printers = tuple(Host(f"printer{i + 1}", _mac(rng, PRINTER_OUIS), addr(20, 30), "printer", 64, 0.0005)
                     for i in range(int(rng.integers(1, 3))))
    pcs = tuple(Host(f"pc{i + 1}", _mac(rng, PC_OUIS), addr(100, 140), "computer", 128, 0.0003)
                for i in range(int(rng.integers(2, 6))))
    phones = tuple(Host(f"phone{i + 1}", _mac(rng, PHONE_OUIS), addr(150, 200), "phone", 64, 0.004)
                   for i in range(int(rng.integers(1, 4))))
    cloud_name, cloud_ip = CLOUDS[int(rng.integers(0, len(CLOUDS)))]
    site = Site(net, router, recorder, cams, printers, pcs, phones,
                Host("cloud", router.mac, 0, "unknown"), cloud_name, Host("ntp", router.mac, 0, "unknown"))
    cloud = site.remote(cloud_name, ip(cloud_ip), rng)
    ntp = site.remote("pool.ntp.org", ip(NTP_POOL), rng)
    return Site(net, router, recorder, cams, printers, pcs, phones, cloud, cloud_name, ntp)


def _ntp(fr: Frames, rng: np.random.Generator, t: float, cli: Host, srv: Host) -> None:
    req = b"\x23" + bytes(39) + rng.bytes(8)
    udp(fr, t, cli, srv, 123, 123, req)
    udp(fr, t + srv.rtt, srv, cli, 123, 123, b"\x24\x02\x00\xe7" + rng.bytes(12) + bytes(16) + rng.bytes(16))


def heartbeat(fr: Frames, rng: np.random.Generator, site: Site, t: float) -> None:
    """The recorder's cloud heartbeat: a short TLS exchange on a fresh connection."""
    s = TcpSession(fr, rng, site.recorder, site.cloud, 443, t)
    s.open()
    s.send(0, tls_record(rng, int(rng.integers(180, 420))), 0.001)
    s.send(1, tls_record(rng, int(rng.integers(90, 260))), 0.002)
    s.close(0, 0.01)


def cameras(fr: Frames, rng: np.random.Generator, site: Site, t0: float, t1: float) -> None:
    """RTSP set-up by the recorder, then each camera's RTP/UDP video to it."""
    for n, cam in enumerate(site.cameras):
        start = t0 + float(rng.uniform(0, 3))
        s = TcpSession(fr, rng, site.recorder, cam, 554, start)
        s.open()
        url = f"rtsp://{cam.ip_text}:554/Streaming/Channels/101"
        cseq = 1
        rport = 8000 + 2 * n + int(rng.integers(0, 100)) * 2
        for method, extra, reply in (
            ("DESCRIBE", "Accept: application/sdp\r\n", "Content-Type: application/sdp\r\nContent-Length: 0\r\n"),
            ("SETUP", f"Transport: RTP/AVP;unicast;client_port={rport}-{rport + 1}\r\n",
             f"Transport: RTP/AVP;unicast;client_port={rport}-{rport + 1};server_port=8200-8201\r\n"
             "Session: 1273;timeout=60\r\n"),
            ("PLAY", "Session: 1273\r\nRange: npt=0.000-\r\n", "Session: 1273\r\n"),
        ):
            s.send(0, f"{method} {url} RTSP/1.0\r\nCSeq: {cseq}\r\n{extra}User-Agent: NVR\r\n\r\n".encode(), 0.002)
            s.send(1, f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n{reply}\r\n".encode(), 0.003)
            cseq += 1
        while s.t + 30 < t1:
            s.send(0, f"GET_PARAMETER {url} RTSP/1.0\r\nCSeq: {cseq}\r\nSession: 1273\r\n\r\n".encode(), 30.0)
            s.send(1, f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n\r\n".encode(), 0.003)
            cseq += 1
        # video: 25 frames/s, each frame a burst of RTP packets; bitrate drawn per camera
        rate = float(rng.uniform(0.3e6, 0.8e6))
        v_start = start + 0.05
        pkt_payload = 1200
        pps = rate / ((pkt_payload + 12 + 8 + 20 + 14) * 8)
        npk = int((t1 - v_start) * pps)
        if npk <= 0:
            continue
        ts = v_start + np.sort(rng.uniform(0, t1 - v_start, npk))
        k = np.arange(npk, dtype=np.int64)
        region = fr.blob.add(rng.bytes(8192), dedupe=False)
        poff = region[0] + 2 * rng.integers(0, (8192 - pkt_payload) // 2, npk)
        fr.add_many(ts, smac=cam.mac, dmac=site.recorder.mac, src=cam.ip, dst=site.recorder.ip, proto=UDP,
                    ttl=64, ipid=(int(rng.integers(0, 65536)) + k) & 0xFFFF, sport=8200, dport=rport,
                    poff=poff, plen=pkt_payload, rtp=1, rtp_seq=(int(rng.integers(0, 65536)) + k) & 0xFFFF,
                    rtp_ts=(int(rng.integers(0, 1 << 31)) + ((ts - v_start) * 90_000).astype(np.int64))
                    & 0xFFFFFFFF, rtp_ssrc=int(rng.integers(0, 1 << 32)), rtp_mark=(k % 6 == 5))


def recorder(fr: Frames, rng: np.random.Generator, site: Site, t0: float, t1: float) -> None:
    """Heartbeats, occasional modest uploads, DNS for the cloud, NTP."""
    t = resolve(fr, rng, t0 + float(rng.uniform(0.5, 4)), site.recorder, site.router, site.cloud_name, site.cloud.ip)
    _ntp(fr, rng, t + 0.2, site.recorder, site.ntp)
    period = float(rng.uniform(20, 60))
    t = t + float(rng.uniform(0.5, period))
    while t < t1:
        heartbeat(fr, rng, site, t)
        t += period + float(rng.normal(0, 0.3))
    t = t0 + float(rng.uniform(30, 180))
    region = stream_region(fr, rng)
    while t < t1 - 5:
        size = int(rng.integers(10_000, 60_000))
        s = TcpSession(fr, rng, site.recorder, site.cloud, 443, t)
        s.open()
        dur = size * 8 / float(rng.uniform(1e6, 3e6))
        _, end = bulk(fr, rng, site.recorder, site.cloud, s.ports[0], 443, s.t + 0.001, s.t + 0.001 + dur,
                      size * 8 / dur, s.nxt[0], s.nxt[1], region)
        s.nxt[0] = (s.nxt[0] + size // 1448 * 1448) & 0xFFFFFFFF  # whole segments were sent
        s.t = end + site.cloud.rtt
        s.close(0, 0.01)
        t += float(rng.uniform(300, 600))


def browsing(fr: Frames, rng: np.random.Generator, site: Site, host: Host, t0: float, t1: float,
             mean_gap: float) -> None:
    """DNS + TLS page loads: a small request up, a page down."""
    region = stream_region(fr, rng, 16_404)
    t = t0 + float(rng.exponential(mean_gap / 2))
    while t < t1 - 2:
        i = int(rng.integers(0, len(WEB)))
        srv = site.remote(WEB_NAMES[i], ip(WEB[i]), rng)
        t = resolve(fr, rng, t, host, site.router, WEB_NAMES[i], srv.ip)
        s = TcpSession(fr, rng, host, srv, 443, t + 0.0005)
        s.open()
        s.send(0, tls_record(rng, int(rng.integers(300, 2500))), 0.001)
        size = int(rng.integers(20_000, 400_000))
        dur = size * 8 / float(rng.uniform(5e6, 40e6))
        _, end = bulk(fr, rng, srv, host, 443, s.ports[0], s.answer(1), s.answer(1) + dur, size * 8 / dur,
                      s.nxt[1], s.nxt[0], region)
        s.nxt[1] = (s.nxt[1] + size // 1448 * 1448) & 0xFFFFFFFF
        s.t = end + host.rtt
        s.close(0, float(rng.uniform(0.05, 2)))
        t = s.t + float(rng.exponential(mean_gap))


def printing(fr: Frames, rng: np.random.Generator, site: Site, t0: float, t1: float) -> None:
    region = stream_region(fr, rng, 16_404)
    for printer in site.printers:
        t = t0 + float(rng.uniform(10, 200))
        while t < t1 - 5:
            pc = site.pcs[int(rng.integers(0, len(site.pcs)))]
            s = TcpSession(fr, rng, pc, printer, 9100, t)
            s.open()
            size = int(rng.integers(30_000, 300_000))
            dur = size * 8 / 20e6
            _, end = bulk(fr, rng, pc, printer, s.ports[0], 9100, s.t + 0.001, s.t + 0.001 + dur, 20e6,
                          s.nxt[0], s.nxt[1], region)
            s.nxt[0] = (s.nxt[0] + size // 1448 * 1448) & 0xFFFFFFFF
            s.t = end + printer.rtt
            s.close(0, 0.05)
            t += float(rng.uniform(120, 600))


def dhcp_join(fr: Frames, rng: np.random.Generator, site: Site, host: Host, t: float) -> None:
    """DISCOVER, OFFER, REQUEST, ACK for ``host`` (crafted once with scapy: four frames)."""
    xid = int(rng.integers(0, 1 << 32))
    chaddr = host.mac.to_bytes(6, "big")
    bcast = "ff:ff:ff:ff:ff:ff"
    opts_c = [("client_id", b"\x01" + chaddr), ("hostname", host.name.encode()), ("param_req_list", [1, 3, 6, 15])]
    server, you = site.router, host.ip_text
    common = [("server_id", server.ip_text), ("lease_time", 86400), ("subnet_mask", "255.255.255.0"),
              ("router", server.ip_text), ("name_server", server.ip_text)]
    frames = [
        Ether(src=mac_text(host.mac), dst=bcast) / IP(src="0.0.0.0", dst="255.255.255.255")
        / ScapyUDP(sport=68, dport=67) / BOOTP(chaddr=chaddr, xid=xid, flags=0)
        / DHCP(options=[("message-type", "discover"), *opts_c, "end"]),
        Ether(src=mac_text(server.mac), dst=mac_text(host.mac)) / IP(src=server.ip_text, dst=you)
        / ScapyUDP(sport=67, dport=68) / BOOTP(op=2, yiaddr=you, siaddr=server.ip_text, chaddr=chaddr, xid=xid)
        / DHCP(options=[("message-type", "offer"), *common, "end"]),
        Ether(src=mac_text(host.mac), dst=bcast) / IP(src="0.0.0.0", dst="255.255.255.255")
        / ScapyUDP(sport=68, dport=67) / BOOTP(chaddr=chaddr, xid=xid)
        / DHCP(options=[("message-type", "request"), ("requested_addr", you), *opts_c, "end"]),
        Ether(src=mac_text(server.mac), dst=mac_text(host.mac)) / IP(src=server.ip_text, dst=you)
        / ScapyUDP(sport=67, dport=68) / BOOTP(op=2, yiaddr=you, siaddr=server.ip_text, chaddr=chaddr, xid=xid)
        / DHCP(options=[("message-type", "ack"), *common, "end"]),
    ]
    for i, f in enumerate(frames):
        fr.add_raw(round((t + 0.004 * i) * 1e6), bytes(f))


def benign(fr: Frames, rng: np.random.Generator, site: Site, t0: float, t1: float) -> list[Label]:
    """All the normal traffic of ``site`` between ``t0`` and ``t1``; one ``normal`` label per device."""
    cameras(fr, rng, site, t0, t1)
    recorder(fr, rng, site, t0, t1)
    for pc in site.pcs:
        browsing(fr, rng, site, pc, t0, t1, float(rng.uniform(8, 30)))
    for phone in site.phones:
        browsing(fr, rng, site, phone, t0, t1, float(rng.uniform(30, 90)))
    printing(fr, rng, site, t0, t1)
    dhcp_join(fr, rng, site, site.phones[0], t0 + float(rng.uniform(5, max(6.0, (t1 - t0) / 2))))
    arp_chatter(fr, rng, site, t0, t1)
    labels = [Label.normal(h, f"benign {h.device_type} traffic of the site scenario") for h in site.lan]
    labels.append(Label.normal(site.router, "the site router: resolver, DHCP server, carries all internet traffic"))
    return labels


def arp_chatter(fr: Frames, rng: np.random.Generator, site: Site, t0: float, t1: float) -> None:
    """Every LAN host and the router resolve each other every one to two minutes."""
    from .sessions import arp_pair

    for host in site.lan:
        t = t0 + float(rng.uniform(0, 60))
        every = float(rng.uniform(60, 120))
        while t < t1:
            arp_pair(fr, t, host, site.router)
            t += every


def check_in(fr: Frames, rng: np.random.Generator, host: Host, cloud: Host, t: float) -> None:
    """A device's check-in with its vendor cloud: a short TLS exchange on a fresh connection."""
    s = TcpSession(fr, rng, host, cloud, 443, t)
    s.open()
    s.send(0, tls_record(rng, int(rng.integers(150, 400))), 0.001)
    s.send(1, tls_record(rng, int(rng.integers(80, 300))), 0.002)
    s.close(0, 0.01)


def night(fr: Frames, rng: np.random.Generator, site: Site, t0: float, t1: float) -> list[Label]:
    """The site overnight, its people gone: the recorder's heartbeats and uploads as by day, the
    cameras recording on motion only (none tonight: no video) and checking in with their cloud
    every 1-5 minutes, NTP every hour, PCs, phones and printers idle (ARP only); one ``normal``
    label per device. Light enough to run for days (tens of thousands of packets a day)."""

    recorder(fr, rng, site, t0, t1)
    for cam in site.cameras:
        t = resolve(fr, rng, t0 + float(rng.uniform(1, 60)), cam, site.router, site.cloud_name, site.cloud.ip)
        every = float(rng.uniform(60, 300))
        ntp_next = t + float(rng.uniform(0, 3600))
        while t < t1 - 1:
            check_in(fr, rng, cam, site.cloud, t)
            if t >= ntp_next:
                _ntp(fr, rng, t + 0.5, cam, site.ntp)
                ntp_next += 3600.0
            t += every * float(rng.uniform(0.7, 1.3))
    arp_chatter(fr, rng, site, t0, t1)
    labels = [Label.normal(h, f"{h.device_type} at night (idle site)") for h in site.lan]
    labels.append(Label.normal(site.router, "the site router: resolver, carries all internet traffic"))
    return labels
