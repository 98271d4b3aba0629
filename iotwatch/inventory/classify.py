"""Per-device evidence → identity: vendor, type, confidence, evidence, deciding model.

Two stages:

1. **Hints** (:func:`hints`): every fact that points at a type, with a confidence and a
   human-readable line — a product name in a DHCP host name or SSDP header, an mDNS printer
   service, RTSP served, RTSP pulled from several cameras, a DHCP server, external addresses
   behind one MAC, a camera maker's OUI, a handset division's OUI, Android Private DNS from a
   randomised MAC, a vendor cloud domain queried.
2. **Decision** (:func:`identify`): a hint of confidence ≥ :data:`RULE_DECIDES` decides by rule,
   and so do weak hints of different sources that agree (their confidences combine by noisy-OR:
   an Amazon OUI, 0.4, and Echo telemetry domains, 0.6 and 0.6, make a speaker at 0.94).
   Otherwise the type model (a scikit-learn classifier over :data:`FEATURES`, which include the
   hints' per-type confidences) decides; without a model the best weak hint does, else
   ``unknown``.

0. **Product** (with a catalogue, :mod:`.products`): when the device's fingerprint matches a
   catalogued product confidently, the type is the product's (unless a rule of 0.9 or more says
   otherwise; camera/recorder only with a camera hint or a match of confidence 0.8 or more).

Camera and recorder are the types an auditor acts on, so they are never guessed: the
classifier may only answer camera or recorder when at least one camera/recorder hint exists
(otherwise its next most likely type is taken).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..records import DeviceRecord
from . import catalog
from .fingerprints import DeviceSignals, Fingerprints
from .oui import Vendor, lookup
from .traffic import DeviceTraffic

if TYPE_CHECKING:
    from .products import Catalogue, Match

TYPES = ("camera", "recorder", "printer", "computer", "phone", "hub", "plug", "sensor", "speaker", "router",
         "appliance", "unknown")
SCORED_TYPES = TYPES[:-1]
CCTV = ("camera", "recorder")
GAP_S = 86400.0  # a first-to-last span this much longer than the time seen spans several captures
#: a cloud camera's upload: at least this average rate over at least this much time seen
SUSTAINED_BPS, SUSTAINED_MIN_S = 64_000, 600.0
RULE_DECIDES = 0.8  # a hint at least this confident decides without the classifier
CLASSIFIER_SURE = 0.5  # below this the classifier's answer yields to facts of FACTS_OVER_UNSURE for another type
FACTS_OVER_UNSURE = 0.6
MODEL_KIND = "device_type"


@dataclass(slots=True)
class Identity:
    vendor: str | None  # short vendor name ("Hikvision"), from the OUI or a product name
    device_type: str  # one of TYPES
    type_confidence: float  # 0..1
    evidence: list[str] = field(default_factory=list)  # strongest first
    model: str | None = None  # product model when a name revealed it ("DCS-935L"), as DeviceRecord.model
    classified_by: str | None = None  # name of the type model when the classifier decided, None for a rule
    vendor_org: str | None = None  # the OUI registration, in full
    match: Match | None = None  # the product catalogue's answer (None without a catalogue)

    @property
    def product(self) -> str | None:
        """The product model: the same as :attr:`model` (the name earlier versions used)."""
        return self.model

    def to_dict(self) -> dict[str, Any]:
        return {"vendor": self.vendor, "device_type": self.device_type,
                "type_confidence": round(self.type_confidence, 3), "evidence": list(self.evidence),
                "model": self.model, "classified_by": self.classified_by, "product": self.model}


@dataclass(frozen=True, slots=True)
class Hint:
    device_type: str
    confidence: float
    evidence: str
    product: str | None = None


# --------------------------------------------------------------------------- hints

_RTSP_CAMERA_PATH = re.compile(r"Streaming/Channels|cam/realmonitor|/h26[45]|/live|/ch0|/onvif|/media|/stream|"
                               r"/videoMain|/av0_|/11$|/12$", re.I)
_PORT_HINTS: tuple[tuple[int, int, str, float, str], ...] = (
    (6, 9100, "printer", 0.9, "serves raw printing (JetDirect) on 9100"),
    (6, 515, "printer", 0.85, "serves LPD printing on 515"),
    (6, 631, "printer", 0.8, "serves IPP printing on 631"),
    (6, 37777, "camera", 0.6, "serves Dahua DVRIP on 37777"),
    (6, 34567, "camera", 0.6, "serves Xiongmai NetSurveillance on 34567"),
    (6, 8000, "camera", 0.3, "serves 8000 (Hikvision SDK port)"),
    (6, 9999, "plug", 0.6, "serves TP-Link smart-home protocol on 9999"),
    (6, 2081, "appliance", 0.6, "serves the Smarter appliance protocol on 2081"),
    (6, 3389, "computer", 0.8, "serves Remote Desktop on 3389"),
    (6, 445, "computer", 0.7, "serves SMB on 445"),
    (6, 139, "computer", 0.6, "serves NetBIOS sessions on 139"),
    (6, 22, "computer", 0.4, "serves SSH on 22"),
    (17, 53, "router", 0.6, "serves DNS on 53"),
    (6, 53, "router", 0.5, "serves DNS on 53/tcp"),
)


def hints(vendor: Vendor, sig: DeviceSignals, traffic: DeviceTraffic | None, *,
          seen_s: float | None = None) -> list[Hint]:
    """Every fact pointing at a type, strongest first (``seen_s``: seconds the device was seen,
    for the sustained-upload test)."""
    out: list[Hint] = []
    # names the device gives itself
    for kind, label in catalog.NAMING_KINDS.items():
        for value in sig.values(kind)[:12]:
            if not value:
                continue
            for p in catalog.PRODUCTS:
                m = p.pattern.search(value)
                if m:
                    out.append(Hint(p.device_type, p.confidence, f"{label}: {value}",
                                    m.group(0).strip() if p.model else None))
                    break
    for st in sig.values("mdns_service"):
        if st in catalog.SERVICES:
            t, c = catalog.SERVICES[st]
            out.append(Hint(t, c, f"mDNS service {st}"))
    for v in sig.values("discovery"):
        proto_name, _, model = v.partition(" ")
        if proto_name == "sadp":
            out.append(Hint("recorder" if re.search(r"DS-[789]|NVR|DVR", model, re.I) else "camera", 0.9,
                            f"Hikvision SADP discovery: {model or '(no model)'}", model or None))
        elif proto_name == "dhip":
            t = "recorder" if re.search(r"NVR|DVR|XVR", model, re.I) else "camera"
            out.append(Hint(t, 0.85, f"Dahua DHIP discovery: {model or '(no type)'}", model or None))
        elif proto_name == "xiongmai":
            out.append(Hint("camera", 0.75, f"Xiongmai discovery answer {model}".strip()))
    if sig.has("wsd_type") and not any(h.evidence.startswith("WS-Discovery") for h in out):
        out.append(Hint("camera", 0.5, f"WS-Discovery device: {', '.join(sig.values('wsd_type')[:3])}"))
    if sig.has("dhcp_server"):
        out.append(Hint("router", 0.85, "DHCP server (answers DHCP clients)"))
    for v in sig.values("dhcp_vendor")[:3]:
        if v.startswith("android-dhcp"):
            out.append(Hint("phone", 0.85, f"DHCP vendor class: {v}"))
    if sig.has("netbios_name") or sig.has("llmnr_query"):
        names = sig.values("netbios_name")[:2] or sig.values("llmnr_query")[:2]
        out.append(Hint("computer", 0.6, f"Windows name services (NetBIOS/LLMNR): {', '.join(names)}"))
    for v in sig.values("ssdp_search")[:4]:
        if "dial-multiscreen" in v or "MediaRenderer" in v or "MediaServer" in v:
            out.append(Hint("phone", 0.3, f"SSDP search for {v}"))
            break
    paths = [p for p in sig.values("rtsp_request") if _RTSP_CAMERA_PATH.search(p)]
    # traffic
    if traffic is not None:
        if traffic.serves(554, 8554):
            n = sum(traffic.served.get((6, p), 0) for p in (554, 8554))
            out.append(Hint("camera", 0.7, f"serves RTSP on 554 ({n} sessions)"))
        elif sig.has("rtsp_server"):
            out.append(Hint("camera", 0.6, f"RTSP Server: {sig.values('rtsp_server')[0] or '(unnamed)'}"))
        if paths:
            out.append(Hint("camera", 0.6, f"RTSP stream requested from it: {paths[0]}"))
        cams = len(traffic.rtsp_servers)
        if cams >= 2:
            out.append(Hint("recorder", 0.9, f"pulls RTSP from {cams} local cameras"))
        elif cams == 1:
            out.append(Hint("recorder", 0.4, "pulls RTSP from a local camera"))
        for proto, port, t, c, text in _PORT_HINTS:
            if traffic.served.get((proto, port), 0) > 0:
                out.append(Hint(t, c, text))
        fw = len(traffic.forwarded)
        if fw >= 8:
            out.append(Hint("router", 0.9, f"forwards traffic: {fw}{'+' if fw >= 256 else ''} external addresses behind this MAC"))
        elif fw >= 2:
            out.append(Hint("router", 0.6, f"forwards traffic: {fw} external addresses behind this MAC"))
        up, down = traffic.bytes_up, traffic.bytes_down
        if traffic.stream_flows and up > 3 * max(down, 1) and traffic.max_upload_bps > 12_000:
            text = f"steady upstream stream ({traffic.max_upload_bps * 8 / 1000:.0f} kbit/s)"
            avg = traffic.bytes_up_external * 8 / seen_s if seen_s else 0.0
            if (seen_s is not None and seen_s >= SUSTAINED_MIN_S and avg >= SUSTAINED_BPS
                    and not any(h.device_type in ("computer", "phone") and h.confidence >= 0.5 for h in out)):
                # a cloud camera uploads all the time it is seen; a phone or a PC in bursts, so its
                # average over the time seen stays low
                out.append(Hint("camera", 0.6, f"{text}, sustained: {avg / 1000:.0f} kbit/s to the internet on "
                                               f"average over {seen_s / 60:.0f} min seen"))
            else:
                out.append(Hint("camera", 0.5, text))
    # the maker
    if vendor.short in catalog.VENDOR_TYPES:
        t, c = catalog.VENDOR_TYPES[vendor.short]
        if t == "camera" and traffic is not None and len(traffic.rtsp_servers) >= 1 and vendor.short in catalog.CCTV_VENDORS:
            t = "recorder"
        out.append(Hint(t, c, f"{vendor.short} makes mostly {t}s"))
    org = catalog.org_hint(vendor.organisation)
    if org:  # same source as the short name's hint ("oui"): the stronger of the two counts
        out.append(Hint(org[0], org[1], f"{vendor.organisation} makes mostly {org[0]}s ({org[2]})"))
    # clouds
    seen: set[str] = set()
    for kind in ("dns_query", "tls_sni", "http_host"):
        for name in sig.values(kind)[:48]:
            h = catalog.domain_hint(name)
            if h and h[2] not in seen:
                seen.add(h[2])
                out.append(Hint(h[0], h[1], f"talks to {h[2]} ({name})"))
    # a randomised MAC and Android Private DNS: each alone is weak (iPhones, some laptops
    # randomise; a configured PC can use DoT), together an Android handset, unless a computer
    # hint says otherwise. A virtual NIC's fixed default prefix is no randomised MAC.
    randomised = vendor.local_admin and vendor.virtual is None
    if vendor.virtual is not None:
        # a hypervisor's or container engine's default prefix: a guest or container, i.e. a computer
        # (Docker's 02:42 prefix is followed by the container's own IPv4 address)
        out.append(Hint("computer", 0.6, f"virtual NIC: {vendor.virtual} default prefix (a virtual machine or container)"))
    dot = None
    if traffic is not None and traffic.used.get((6, 853), 0) > 0:
        dot = next((n for n in sig.values("tls_sni") if n in catalog.DOT_RESOLVERS), None)
    if dot and randomised and not any(h.device_type == "computer" and h.confidence >= 0.5 for h in out):
        out.append(Hint("phone", 0.85, f"Android Private DNS from a randomised MAC: DNS over TLS to {dot}"))
    else:
        if randomised:
            out.append(Hint("phone", 0.4, "locally administered MAC (randomised?)"))
        if dot:
            out.append(Hint("phone", 0.5, f"DNS over TLS to {dot} (Android Private DNS)"))
    out.sort(key=lambda h: -h.confidence)
    return out


def embedded(sig: DeviceSignals) -> str | None:
    """Why the device is an embedded system (not a computer or phone), or None: a BusyBox
    ``udhcp`` DHCP client (PCs and phones use MSFT, dhcpcd, dhclient or Apple's client)."""
    for v in sig.values("dhcp_vendor")[:4]:
        if catalog.EMBEDDED_DHCP.match(v):
            return f"embedded Linux DHCP client (BusyBox {v})"
    return None


def facts(sig: DeviceSignals) -> list[str]:
    """Evidence lines that point at no type on their own."""
    out = []
    e = embedded(sig)
    if e:
        out.append(e)
    for v in sig.values("tftp_request")[:2]:
        out.append(f"fetches {v} over TFTP")
    return out


# --------------------------------------------------------------------------- features

_SERVED = ((6, 21), (6, 22), (6, 23), (6, 53), (6, 80), (6, 81), (6, 139), (6, 443), (6, 445), (6, 515), (6, 554),
           (6, 631), (6, 1883), (6, 2081), (6, 3389), (6, 5000), (6, 8000), (6, 8080), (6, 8443), (6, 8554),
           (6, 9100), (6, 9999), (6, 34567), (6, 37777), (6, 49152), (6, 49153), (6, 49154),
           (17, 53), (17, 67), (17, 123), (17, 161), (17, 1900), (17, 3702), (17, 5353))
_USED = ((6, 22), (6, 23), (6, 80), (6, 443), (6, 554), (6, 853), (6, 1883), (6, 5222), (6, 5223), (6, 8080),
         (6, 8883), (6, 445), (6, 139), (17, 53), (17, 123), (17, 443), (17, 1900), (17, 3478), (17, 5353),
         (17, 137), (17, 138), (17, 5355))
_KINDS = ("dhcp_hostname", "dhcp_vendor", "dhcp_prl", "dhcp_server", "dns_query", "mdns_service", "mdns_name",
          "mdns_browse", "llmnr_query", "netbios_name", "ssdp_server", "ssdp_type", "ssdp_search", "wsd_type",
          "wsd_probe", "discovery", "http_server", "http_ua", "rtsp_server", "rtsp_client", "tls_sni", "ntp_client",
          "ssh_banner", "telnet_banner")
_OUI_GROUPS = ("camera", "router", "computer", "printer", "hub", "sensor", "speaker", "phone")
_IOT_MODULES = ("Espressif", "AzureWave", "Murata", "Realtek", "Tuya")


def _features_names() -> list[str]:
    names = [f"served_{'tcp' if p == 6 else 'udp'}_{port}" for p, port in _SERVED]
    names += [f"used_{'tcp' if p == 6 else 'udp'}_{port}" for p, port in _USED]
    names += ["served_ports", "used_ports", "served_high_tcp", "peers_local", "peers_external", "served_clients",
              "rtsp_servers", "forwarded", "flows_client", "flows_server", "unanswered_share", "log_bytes_up",
              "log_bytes_down", "up_share", "external_up_share", "log_max_upload_bps", "stream_flows",
              "log_packets_out", "log_packets_in", "log_duration", "log_rate_out"]
    names += [f"sig_{k}" for k in _KINDS]
    names += ["dhcp_udhcp", "dhcp_dhcpcd", "dhcp_msft", "dhcp_prl_len", "ua_browser", "ua_mobile", "ua_tool",
              "dns_names", "sni_names", "ssdp_searches", "mdns_services"]
    names += [f"oui_{g}" for g in _OUI_GROUPS] + ["oui_iot_module", "oui_unregistered", "oui_local_admin"]
    names += [f"hint_{t}" for t in SCORED_TYPES]
    return names


FEATURE_NAMES: tuple[str, ...] = tuple(_features_names())
FEATURES: list[tuple[str, str]] = [(n, "float64") for n in FEATURE_NAMES]


def _log(x: float) -> float:
    return math.log1p(max(0.0, float(x)))


def features(record: DeviceRecord | None, sig: DeviceSignals, traffic: DeviceTraffic | None, vendor: Vendor,
             hint_list: list[Hint], *, seen_s: float | None = None) -> np.ndarray:
    """The classifier's input for one device, in :data:`FEATURE_NAMES` order. ``seen_s``: the
    seconds the device was seen (its active windows); used for duration and rate instead of the
    first-to-last span when the span is longer by more than :data:`GAP_S` (captures far apart)."""
    t = traffic or DeviceTraffic()
    v: list[float] = [_log(t.served.get(k, 0)) for k in _SERVED]
    v += [_log(t.used.get(k, 0)) for k in _USED]
    up, down = t.bytes_up, t.bytes_down
    flows_c = t.flows_client
    dur = (record.last_seen - record.first_seen) if record else t.duration
    if seen_s is not None and dur - seen_s > GAP_S:
        # captures far apart in one run: the time the device was seen, not the days between them
        dur = seen_s
    pk_out = record.packets_out if record else 0
    v += [len(t.served), len(t.used), sum(1 for (p, port) in t.served if p == 6 and port >= 1024),
          _log(len(t.peers_local)), _log(len(t.peers_external)), _log(len(t.served_clients)),
          len(t.rtsp_servers), _log(len(t.forwarded)), _log(flows_c), _log(t.flows_server),
          t.flows_unanswered / flows_c if flows_c else 0.0, _log(up), _log(down),
          up / (up + down) if up + down else 0.5, t.bytes_up_external / up if up else 0.0,
          _log(t.max_upload_bps), _log(t.stream_flows),
          _log(pk_out), _log(record.packets_in if record else 0), _log(dur),
          _log(pk_out / dur) if dur > 0 else 0.0]
    v += [_log(sig.count(k)) for k in _KINDS]
    dv = " ".join(sig.values("dhcp_vendor")).lower()
    uas = " ".join(sig.values("http_ua") + sig.values("ssdp_ua")).lower()
    v += [float("udhcp" in dv), float("dhcpcd" in dv), float("msft" in dv),
          float(max((len(p.split(",")) for p in sig.values("dhcp_prl")), default=0)),
          float(any(b in uas for b in ("mozilla", "chrome", "safari", "firefox"))),
          float(any(b in uas for b in ("android", "iphone", "ipad", "dalvik", "mobile"))),
          float(any(b in uas for b in ("wget", "curl", "python", "okhttp", "java"))),
          _log(len(sig.values("dns_query"))), _log(len(sig.values("tls_sni"))),
          _log(len(sig.values("ssdp_search"))), _log(len(sig.values("mdns_service")))]
    group = catalog.VENDOR_TYPES.get(vendor.short or "", (None, 0.0))[0]
    v += [float(group == g) for g in _OUI_GROUPS]
    v += [float(vendor.short in _IOT_MODULES), float(vendor.organisation is None), float(vendor.local_admin)]
    best: dict[str, float] = {}
    for h in hint_list:
        best[h.device_type] = max(best.get(h.device_type, 0.0), h.confidence)
    v += [best.get(ty, 0.0) for ty in SCORED_TYPES]
    return np.asarray(v, dtype=np.float64)


# --------------------------------------------------------------------------- the type model

class TypeModel:
    """A fitted classifier over :data:`FEATURES` and the name it reports (``Identity.classified_by``).

    Built from a bundle, the estimator is opened on first use (scikit-learn weighs ~100 MB of
    memory that a streaming run should not carry before the end)."""

    def __init__(self, estimator: Any = None, name: str = "type-v1", bundle: Any = None) -> None:
        self._estimator = estimator
        self.name = name
        self._bundle = bundle

    @property
    def estimator(self) -> Any:
        if self._estimator is None and self._bundle is not None:
            self._estimator = self._bundle.estimator
        return self._estimator

    @property
    def classes(self) -> list[str]:
        if self._estimator is None and self._bundle is not None:
            return self._bundle.classes  # type: ignore[no-any-return]
        return [str(c) for c in self.estimator.classes_]

    def proba(self, x: np.ndarray) -> np.ndarray:
        x2 = x.reshape(1, -1) if x.ndim == 1 else x
        if self._estimator is None and self._bundle is not None:
            return self._bundle.predict_proba(x2)  # type: ignore[no-any-return]
        return np.asarray(self.estimator.predict_proba(x2))

    @classmethod
    def load(cls, path: str | Path, lazy: bool = True) -> TypeModel:
        """Load a bundle written by :func:`iotwatch.learn.device_type.train_type_model`; raises ``ModelError``."""
        from ..bundle import load_bundle

        b = load_bundle(path, kind=MODEL_KIND, features=FEATURES, lazy=lazy)
        return cls(None, str(b.manifest.get("model_name", b.name)), bundle=b)


# --------------------------------------------------------------------------- decision

def _vendor_line(v: Vendor) -> str | None:
    if v.organisation:
        return f"OUI: {v.organisation}"
    if v.virtual:
        return f"locally administered MAC ({v.virtual} default prefix)"
    if v.local_admin:
        return "locally administered MAC (randomised?)"
    return None


def _source(h: Hint) -> str:
    """Which kind of fact a hint is, so that one fact said twice does not count twice."""
    e = h.evidence
    if e.startswith("talks to"):
        return "cloud:" + e.split(" (", 1)[0]
    if " makes mostly " in e:
        return "oui"
    return e.split(":", 1)[0]


def _sources(hs: list[Hint], device_type: str) -> int:
    """How many independent facts (sources) point at ``device_type``."""
    return len({_source(h) for h in hs if h.device_type == device_type})


def combined(hs: list[Hint]) -> dict[str, float]:
    """Per type: the noisy-OR of its hints, the strongest hint per source only."""
    per: dict[str, dict[str, float]] = {}
    for h in hs:
        d = per.setdefault(h.device_type, {})
        src = _source(h)
        d[src] = max(d.get(src, 0.0), h.confidence)
    out: dict[str, float] = {}
    for t, d in per.items():
        miss = 1.0
        for c in d.values():
            miss *= 1.0 - c
        out[t] = 1.0 - miss
    return out


def _follows_product(match: Match | None, hs: list[Hint]) -> bool:
    """A confident product match decides the type, unless a strong rule (0.9+) says another type,
    and never camera/recorder without a camera hint unless the match is very close."""
    if match is None or not match.confident or match.device_type is None:
        return False
    if any(h.confidence >= 0.9 and h.device_type != match.device_type for h in hs):
        return False
    if match.device_type in CCTV and not any(h.device_type in CCTV for h in hs) and match.confidence < 0.8:
        return False
    return True


def _follows_near_type(match: Match | None, hs: list[Hint]) -> bool:
    """The nearest products agree on a type (no single product is sure): that type, with the
    same limits as :func:`_follows_product`."""
    if match is None or not match.type_confident or match.near_type is None:
        return False
    if any(h.confidence >= 0.9 and h.device_type != match.near_type for h in hs):
        return False
    return not (match.near_type in CCTV and not any(h.device_type in CCTV for h in hs))


def decide(key: str, record: DeviceRecord | None, sig: DeviceSignals, traffic: DeviceTraffic | None,
           model: TypeModel | None = None, x: np.ndarray | None = None, *,
           catalogue: Catalogue | None = None, sequence: list[int] | None = None,
           seen_s: float | None = None) -> Identity:
    """Identity of one device (see the module docstring)."""
    vendor = lookup(key) if ":" in key else Vendor(None, None, False)
    hs = hints(vendor, sig, traffic, seen_s=seen_s)
    product = next((h.product for h in hs if h.product and h.confidence >= 0.8), None)
    vendor_name = vendor.short
    chosen: str
    conf: float
    decided_by: str | None = None
    match: Match | None = None
    if catalogue is not None and sequence:  # a device that sent no rare frame is not matched (floods)
        from .products import device_tokens

        match = catalogue.match(device_tokens(sig, traffic, vendor.organisation), sequence or [])
    score = combined(hs)
    best = max(score, key=lambda t: score[t], default=None)
    if _follows_product(match, hs):
        assert match is not None and match.device_type is not None and catalogue is not None
        chosen, conf = match.device_type, max(match.confidence, score.get(match.device_type, 0.0))
        decided_by = catalogue.name
    elif best is not None and score[best] >= RULE_DECIDES:
        chosen, conf = best, min(0.99, score[best])
    elif _follows_near_type(match, hs):
        assert match is not None and match.near_type is not None and catalogue is not None
        chosen, conf = match.near_type, match.near_type_confidence
        decided_by = catalogue.name
    elif model is not None:
        if x is None:
            x = features(record, sig, traffic, vendor, hs, seen_s=seen_s)
        p = model.proba(x)[0]
        classes = model.classes
        order = np.argsort(-p)
        cctv_support = any(h.device_type in CCTV for h in hs)
        # a BusyBox DHCP client is no PC or phone unless a hint says so (an Android build can use it)
        no_pc = embedded(sig) is not None and not any(h.device_type in ("computer", "phone") and h.confidence >= 0.5
                                                      for h in hs)
        chosen, conf = "unknown", 0.0
        for i in order:
            if classes[i] in CCTV and not cctv_support:
                continue
            if no_pc and classes[i] in ("computer", "phone"):
                continue
            chosen, conf = classes[i], float(p[i])
            break
        decided_by = model.name
        # an unsure classifier does not overrule the device's own facts: when its answer has no
        # fact for it and is below an even chance, facts from two sources or more (the maker and
        # its cloud, a served port…) that together reach FACTS_OVER_UNSURE decide instead
        if conf < CLASSIFIER_SURE and score.get(chosen, 0.0) == 0.0 and best is not None and best != chosen \
                and score[best] >= FACTS_OVER_UNSURE and _sources(hs, best) >= 2:
            chosen, conf, decided_by = best, score[best], None
    else:
        weak = [h for h in hs if h.confidence >= 0.5]
        if weak:
            chosen, conf = weak[0].device_type, weak[0].confidence
        else:
            chosen, conf = "unknown", 0.0
    evidence: list[str] = []
    line = _vendor_line(vendor)
    if line:
        evidence.append(line)
    if vendor.local_admin and vendor.organisation:
        evidence.append("locally administered MAC (randomised?)")
    support = [h.evidence for h in hs if h.device_type == chosen]
    other = [f"{h.evidence} (suggests {h.device_type})" for h in hs if h.device_type != chosen and h.confidence >= 0.5]
    for e in support + other:
        if e not in evidence and not e.startswith("locally administered"):
            evidence.append(e)
    for e in facts(sig):
        if e not in evidence:
            evidence.append(e)
    if match is not None and catalogue is not None and match.product is not None:  # "nothing close" is no evidence
        line = match.evidence(catalogue.name)
        if decided_by == catalogue.name:
            evidence.insert(0, line)
        else:
            evidence.append(line)
    if decided_by and (catalogue is None or decided_by != catalogue.name):
        evidence.append(f"classifier {decided_by}: {chosen} ({conf:.2f})")
    if product is None and match is not None and match.confident and match.device_type == chosen:
        product = match.product
    return Identity(vendor=vendor_name, device_type=chosen, type_confidence=round(conf, 3), evidence=evidence[:12],
                    model=product, classified_by=decided_by, vendor_org=vendor.organisation, match=match)


def identify(devices: dict[str, DeviceRecord], fp: Fingerprints, traffic: dict[str, DeviceTraffic],
             model: TypeModel | None = None, catalogue: Catalogue | None = None,
             sequences: dict[str, list[int]] | None = None, seen: dict[str, float] | None = None) -> dict[str, Identity]:
    """Identity of every device in ``devices`` (keyed like it); with a product ``catalogue``, each
    device's tokens and its first rare frames (``sequences``) are matched against it; ``seen``:
    seconds each device was seen (see :func:`features`)."""
    seqs, seen = sequences or {}, seen or {}
    return {key: decide(key, rec, fp.get(key), traffic.get(key), model, catalogue=catalogue, sequence=seqs.get(key),
                        seen_s=seen.get(key)) for key, rec in devices.items()}
