"""Product models: a per-device fingerprint matched against a catalogue learned from labelled captures.

IoT Sentinel (Miettinen et al., ICDCS 2017) tells device *models* apart by the first packets a
device sends when it joins a network. This module does the same with what the pipeline already
keeps, so it adds no per-packet work:

- **sequence**: the first :data:`SEQ_LEN` rare frames the device sent (the sidecar sets them aside:
  ARP requests, DHCP, DNS queries, mDNS, SSDP, NTP, discovery, the first payload of each flow and
  direction), each reduced to IoT Sentinel's per-packet features — protocol presence (ARP, IP,
  ICMP, ICMPv6, TCP, UDP, HTTP, HTTPS, DHCP, BOOTP, SSDP, DNS, mDNS, NTP), IP options (padding,
  router alert), size, payload present, a counter of distinct destination addresses, and the
  classes of the source and destination ports — packed into one integer symbol
  (:func:`frame_symbol`). Two sequences are compared by their normalised Damerau–Levenshtein
  distance (compiled). Frames that are not rare (a TCP handshake, ICMP) are not in it: it is the
  device's first *rare* frames, not its first packets.
- **tokens**: the device's facts as words — DHCP host name, vendor class and parameter list,
  mDNS/SSDP/WS-Discovery/vendor discovery strings, HTTP/RTSP/TLS/SSH strings, DNS names and TLS
  server names (its clouds), services it offers and uses, its OUI — with digits runs that name a
  unit (serial numbers, MAC suffixes, addresses) replaced by ``#``. Compared by an IDF-weighted
  cosine.

The distance between a device and a catalogue exemplar is ``W_SEQ·seq + (1-W_SEQ)·(1-cosine)``.
A device matches the product of its nearest exemplar; the confidence grows with the distance's
headroom under :data:`D_UNKNOWN` and with the margin to the nearest exemplar of another product.
Nothing closer than :data:`D_UNKNOWN`: no product (``None``).

The catalogue is a code-free artefact: ``catalogue.json`` (exemplars, IDF weights, parameters)
and ``manifest.json`` (its sha256, format, what it was built from, its measured accuracy);
:meth:`Catalogue.load` refuses a file whose hash does not match (:class:`~iotwatch.errors.ModelError`).

Building: :func:`build_catalogue` over :class:`ProductSample` (one per labelled device and
capture, see :func:`profile_capture`); ``python -m iotwatch.inventory.products build`` builds the
shipped catalogue from ``../shared/pcaps``; ``... evaluate`` measures it with grouped folds.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .._jit import kernel
from ..errors import ModelError
from .fingerprints import DeviceSignals
from .parse import FrameLike
from .traffic import DeviceTraffic

FORMAT = 1
KIND = "product_catalogue"
CATALOGUE_FILE = "catalogue.json"
MANIFEST_FILE = "manifest.json"
#: frames per device in the sequence (IoT Sentinel uses the first 12 packets; rare frames are
#: sparser, so a few more)
SEQ_LEN = 24
W_SEQ = 0.2  # weight of the sequence distance (the rest: token distance); 0.3+ loses product accuracy
D_UNKNOWN = 0.5  # nearest exemplar farther than this: no product
MARGIN = 0.1  # distance to the runner-up that counts as a clear win
CONFIDENT = 0.25  # product confidence from which the coarse type follows the product (ties score 0)
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "models" / "product_catalogue"

# --------------------------------------------------------------------------- per-frame symbols

_HTTP, _HTTPS = (80, 8080, 8000, 8008), (443, 8443)
_F_ARP, _F_IP, _F_ICMP, _F_ICMP6, _F_TCP, _F_UDP, _F_HTTP, _F_HTTPS, _F_DHCP, _F_BOOTP, _F_SSDP, _F_DNS, \
    _F_MDNS, _F_NTP, _F_PAD, _F_RA, _F_RAW = (1 << i for i in range(17))


def _port_class(p: int) -> int:
    """IoT Sentinel's port classes: 0 none, 1 well-known, 2 registered, 3 dynamic."""
    if p < 0:
        return 0
    return 1 if p < 1024 else 2 if p < 49152 else 3


def frame_features(l3: int, data: bytes) -> tuple[int, int, str | None, int, int]:
    """(protocol flags, size, destination address, source port, destination port) of one rare
    frame (``data`` from the IP or ARP header on); ports are -1 when there are none."""
    size = len(data)
    if l3 == 1:
        dst = ".".join(str(b) for b in data[24:28]) if len(data) >= 28 else None
        return _F_ARP, size, dst, -1, -1
    flags = _F_IP
    proto, off, dst = -1, 0, None
    if l3 == 4 and len(data) >= 20:
        ihl = (data[0] & 15) * 4
        proto = data[9]
        dst = ".".join(str(b) for b in data[16:20])
        if ihl > 20:
            opts = data[20:ihl]
            if 148 in opts[:1] or b"\x94\x04" in opts:
                flags |= _F_RA
            if opts[:1] in (b"\x00", b"\x01") or opts.endswith(b"\x00"):
                flags |= _F_PAD
        off = ihl
    elif l3 == 6 and len(data) >= 40:
        proto = data[6]
        dst = data[24:40].hex()
        off = 40
        if proto == 0 and len(data) >= 48:  # hop-by-hop options: MLD's router alert
            if b"\x05\x02" in data[42:48]:
                flags |= _F_RA
            proto, off = data[40], 40 + (data[41] + 1) * 8
    sp = dp = -1
    if proto == 1:
        flags |= _F_ICMP
    elif proto == 58:
        flags |= _F_ICMP6
    elif proto in (6, 17) and len(data) >= off + 8:
        sp, dp = int.from_bytes(data[off:off + 2], "big"), int.from_bytes(data[off + 2:off + 4], "big")
        hl = ((data[off + 12] >> 4) * 4 if len(data) > off + 12 else 20) if proto == 6 else 8
        if len(data) > off + hl:
            flags |= _F_RAW
        flags |= _F_TCP if proto == 6 else _F_UDP
        ports = (sp, dp)
        if any(p in _HTTP for p in ports):
            flags |= _F_HTTP
        if any(p in _HTTPS for p in ports):
            flags |= _F_HTTPS
        if proto == 17:
            if any(p in (67, 68, 546, 547) for p in ports):
                flags |= _F_BOOTP
                if data[off + 8 + 236:off + 8 + 240] == b"\x63\x82\x53\x63" or l3 == 6:
                    flags |= _F_DHCP
            if 1900 in ports:
                flags |= _F_SSDP
            if 53 in ports:
                flags |= _F_DNS
            if 5353 in ports:
                flags |= _F_MDNS
            if 123 in ports:
                flags |= _F_NTP
    return flags, size, dst, sp, dp


#: sizes are compared in steps of 2**SIZE_SHIFT bytes (a host name or a DNS name a few letters
#: longer on another unit moves a packet by a few bytes)
SIZE_SHIFT = 0


def coarse(seq: Sequence[int]) -> list[int]:
    """A sequence as compared: sizes in steps of 2**SIZE_SHIFT bytes."""
    if not SIZE_SHIFT:
        return list(seq)
    keep = ~(4095 << 17)
    return [(x & keep) | ((((x >> 17) & 4095) >> SIZE_SHIFT) << 17) for x in seq]


def frame_symbol(flags: int, size: int, dst_index: int, sp: int, dp: int) -> int:
    """One frame's features packed into one integer (equal symbols: equal features)."""
    return (flags | (min(size, 4095) << 17) | (min(dst_index, 15) << 29) | (_port_class(sp) << 33)
            | (_port_class(dp) << 35))


class Sequences:
    """The first :data:`SEQ_LEN` rare frames each device sent, as symbols (the inventory's
    collector: :meth:`add` each frame as ``Inventory.on_rare`` keeps it; a device's work ends
    after its first frames)."""

    def __init__(self) -> None:
        self.symbols: dict[str, list[int]] = {}
        self._dsts: dict[str, list[str | None]] = {}

    def add(self, frame: FrameLike) -> None:
        key = getattr(frame, "src", None)
        if key is None:
            return
        seq = self.symbols.get(key)
        if seq is None:
            seq = self.symbols[key] = []
            self._dsts[key] = []
        elif len(seq) >= SEQ_LEN:
            return
        flags, size, dst, sp, dp = frame_features(frame.l3, bytes(frame.data))
        dsts = self._dsts[key]
        if dst not in dsts:
            dsts.append(dst)
        seq.append(frame_symbol(flags, size, dsts.index(dst) + 1, sp, dp))
        if len(seq) >= SEQ_LEN:
            del self._dsts[key]

    def get(self, key: str) -> list[int]:
        return list(self.symbols.get(key, ()))


@kernel
def _seq_distances(q, syms, offsets, out, prev2, prev, cur):  # type: ignore[no-untyped-def]
    """Normalised optimal-string-alignment (Damerau–Levenshtein) distance from ``q`` to each
    sequence ``syms[offsets[i]:offsets[i+1]]``; row buffers of len(q)+1 given."""
    n = q.shape[0]
    for e in range(offsets.shape[0] - 1):
        a0, a1 = offsets[e], offsets[e + 1]
        m = a1 - a0
        if n == 0 and m == 0:
            out[e] = 0.0
            continue
        if n == 0 or m == 0:
            out[e] = 1.0
            continue
        for j in range(n + 1):
            prev[j] = j
            prev2[j] = j
        for i in range(1, m + 1):
            cur[0] = i
            s = syms[a0 + i - 1]
            for j in range(1, n + 1):
                cost = 0 if s == q[j - 1] else 1
                v = prev[j] + 1
                if cur[j - 1] + 1 < v:
                    v = cur[j - 1] + 1
                if prev[j - 1] + cost < v:
                    v = prev[j - 1] + cost
                if i > 1 and j > 1 and s == q[j - 2] and syms[a0 + i - 2] == q[j - 1]:
                    if prev2[j - 2] + 1 < v:
                        v = prev2[j - 2] + 1
                cur[j] = v
            for j in range(n + 1):
                prev2[j] = prev[j]
                prev[j] = cur[j]
        out[e] = prev[n] / (m if m > n else n)


def seq_distances(q: Sequence[int], syms: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    qa = np.asarray(q, np.int64)
    out = np.empty(len(offsets) - 1, np.float64)
    bufs = [np.empty(len(qa) + 1, np.int64) for _ in range(3)]
    _seq_distances(qa, syms, offsets, out, *bufs)
    return out


# --------------------------------------------------------------------------- tokens

_IP = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")
#: a unit's own digits (MAC suffixes, serials, counters): hex runs of 4+ with a digit and a
#: letter, digit runs of 6+; model numbers ("HS110", "DCH-S220", "DCS-930L") stay
_UNIT = re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{4,}|(?<=[a-z_-])(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])"
                   r"[0-9a-f]{4,}\b|\d{6,}")
#: signal kinds that say nothing about the product (answers about others, per-connection paths)
_SKIP = {"rtsp_request", "http_path", "ntp_server"}
#: ports up to this are services; above it, ephemeral ports of one connection (Linux and
#: embedded stacks pick them from 1024 up: a unit's random port says nothing about its model)
_SERVICE_PORTS = 10000


def _norm(v: str) -> str:
    v = _IP.sub("<ip>", v.lower().strip())
    return _UNIT.sub("#", v)[:80]


def device_tokens(sig: DeviceSignals, traffic: DeviceTraffic | None, organisation: str | None) -> list[str]:
    """The device's facts as normalised words (sorted, distinct)."""
    out: set[str] = set()
    for kind, c in sig.kinds.items():
        if kind in _SKIP:
            continue
        for v in c:
            out.add(f"{kind}:{_norm(v)}")
    if traffic is not None:
        for (proto, port) in traffic.served:
            if port <= _SERVICE_PORTS:
                out.add(f"serves:{proto}/{port}")
        for (proto, port) in traffic.used:
            if port <= _SERVICE_PORTS:
                out.add(f"uses:{proto}/{port}")
    if organisation:
        out.add(f"oui:{organisation.lower()}")
    return sorted(out)


# --------------------------------------------------------------------------- catalogue

@dataclass(slots=True)
class ProductSample:
    """One labelled device in one capture: what the catalogue learns from."""

    product: str
    device_type: str
    group: str  # held out together in evaluation (a capture set)
    source: str  # capture file
    tokens: list[str]
    seq: list[int]


@dataclass(slots=True)
class Match:
    product: str | None  # None: nothing close enough
    device_type: str | None
    distance: float
    confidence: float
    runner_up: str | None = None  # nearest other product
    runner_up_distance: float = 1.0
    source: str = ""  # the nearest exemplar's capture
    shared: list[str] = field(default_factory=list)  # the strongest tokens in common
    #: the nearest products' common type when they agree (a product family, or a model never
    #: seen that behaves like its kind), and its confidence: margin to the nearest other type
    near_type: str | None = None
    near_type_confidence: float = 0.0

    @property
    def confident(self) -> bool:
        return self.product is not None and self.confidence >= CONFIDENT

    @property
    def type_confident(self) -> bool:
        return self.near_type is not None and self.near_type_confidence >= CONFIDENT

    def evidence(self, catalogue_name: str) -> str:
        if self.product is None:
            return f"catalogue {catalogue_name}: no product within {D_UNKNOWN} (nearest {self.runner_up}, " \
                   f"distance {self.runner_up_distance:.2f})"
        why = f"; shares {', '.join(self.shared[:3])}" if self.shared else ""
        near = "" if self.confident or not self.type_confident else \
            f"; the nearest products are {self.near_type} ({self.near_type_confidence:.2f})"
        return (f"catalogue {catalogue_name}: product {self.product} ({self.device_type}), distance "
                f"{self.distance:.2f}, confidence {self.confidence:.2f}, next {self.runner_up} "
                f"{self.runner_up_distance:.2f}{near}{why}")


def _confidence(d1: float, d2: float) -> float:
    """The headroom of the best distance under :data:`D_UNKNOWN` times its margin to the
    runner-up (a margin of :data:`MARGIN` or more counts in full): a tie is never confident."""
    return round(max(0.0, 1.0 - d1 / D_UNKNOWN) * min(1.0, (d2 - d1) / MARGIN), 3)


class Catalogue:
    """Exemplars of known products; :meth:`match` a device's fingerprint against them."""

    def __init__(self, exemplars: list[dict[str, Any]], products: dict[str, dict[str, str]],
                 idf: dict[str, float], name: str = "products-v1", manifest: dict[str, Any] | None = None) -> None:
        self.name = name
        self.exemplars = exemplars
        self.products = products
        self.idf = idf
        self.manifest = manifest or {}
        self._default_idf = max(idf.values(), default=1.0)
        seqs = [coarse(e["seq"]) for e in exemplars]
        self._syms = np.array([s for q in seqs for s in q], np.int64)
        self._offsets = np.zeros(len(seqs) + 1, np.int64)
        self._offsets[1:] = np.cumsum([len(q) for q in seqs])
        self._vecs = [self._vector(e["tokens"]) for e in exemplars]
        # per product: its exemplars and its centroid (each token's weight times the share of the
        # product's exemplars that have it: a host name every unit sends counts in full, the NTP
        # pool one capture happened to ask for counts little)
        self._members: dict[str, list[int]] = defaultdict(list)
        for i, e in enumerate(exemplars):
            self._members[e["product"]].append(i)
        self._centroids: dict[str, tuple[dict[str, float], float]] = {}
        for p, idx in self._members.items():
            c: Counter[str] = Counter()
            for i in idx:
                c.update(exemplars[i]["tokens"])
            v = {t: self.idf.get(t, self._default_idf) * n / len(idx) for t, n in c.items()}
            self._centroids[p] = (v, math.sqrt(sum(w * w for w in v.values())) or 1.0)

    def _vector(self, tokens: Iterable[str]) -> tuple[dict[str, float], float]:
        v = {t: self.idf.get(t, self._default_idf) for t in tokens}
        return v, math.sqrt(sum(w * w for w in v.values())) or 1.0

    @staticmethod
    def _cos(a: tuple[dict[str, float], float], b: tuple[dict[str, float], float]) -> float:
        (av, an), (bv, bn) = a, b
        small, big = (av, bv) if len(av) < len(bv) else (bv, av)
        return sum(w * big[t] for t, w in small.items() if t in big) / (an * bn)

    def distances(self, tokens: Sequence[str], seq: Sequence[int]) -> np.ndarray:
        """Distance from a device to every exemplar (0 same, 1 nothing alike)."""
        q = self._vector(tokens)
        cos = np.array([self._cos(q, e) for e in self._vecs], np.float64)
        if len(self.exemplars) == 0:
            return cos
        sd = seq_distances(coarse(seq), self._syms, self._offsets)
        return W_SEQ * sd + (1.0 - W_SEQ) * (1.0 - cos)

    def product_distances(self, tokens: Sequence[str], seq: Sequence[int]) -> dict[str, tuple[float, int]]:
        """Per product: distance from the device (the token distance to the product's centroid,
        and the sequence distance to its nearest exemplar) and the nearest exemplar's index."""
        q = self._vector(tokens)
        sd = seq_distances(coarse(seq), self._syms, self._offsets)
        out: dict[str, tuple[float, int]] = {}
        for p, idx in self._members.items():
            i = min(idx, key=lambda j: sd[j])
            out[p] = (W_SEQ * float(sd[i]) + (1.0 - W_SEQ) * (1.0 - self._cos(q, self._centroids[p])), i)
        return out

    def match(self, tokens: Sequence[str], seq: Sequence[int]) -> Match:
        if not self.exemplars or (not tokens and not seq):
            return Match(None, None, 1.0, 0.0)
        best = self.product_distances(tokens, seq)
        order = sorted(best.items(), key=lambda kv: (kv[1][0], kv[0]))
        (p1, (d1, i1)) = order[0]
        p2, d2 = (order[1][0], order[1][1][0]) if len(order) > 1 else (None, 1.0)
        if d1 > D_UNKNOWN:
            return Match(None, None, round(d1, 3), 0.0, runner_up=p1, runner_up_distance=round(d1, 3))
        t1 = self.products[p1]["device_type"]
        other_type = next((dd for p, (dd, _) in order if self.products[p]["device_type"] != t1), 1.0)
        ex = self.exemplars[i1]
        cw = self._centroids[p1][0]  # shared facts, those the product always shows first
        common = sorted((t for t in set(tokens) if t in cw), key=lambda t: (-cw[t], t))
        return Match(p1, t1, round(d1, 3), _confidence(d1, d2), p2, round(d2, 3), ex.get("source", ""), common[:5],
                     t1, _confidence(d1, other_type))

    # ------------------------------------------------------------------ the file format

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "kind": KIND, "name": self.name, "seq_len": SEQ_LEN,
                "params": {"w_seq": W_SEQ, "d_unknown": D_UNKNOWN, "confident": CONFIDENT},
                "products": self.products, "idf": self.idf, "exemplars": self.exemplars}

    def save(self, folder: str | Path, *, training: dict[str, Any] | None = None,
             metrics: dict[str, Any] | None = None) -> Path:
        """Write ``catalogue.json`` and ``manifest.json`` (with the former's sha256) to ``folder``."""
        from ..bundle import versions

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        body = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()
        (out / CATALOGUE_FILE).write_bytes(body)
        manifest = {"kind": KIND, "format": FORMAT, "name": self.name, "file": CATALOGUE_FILE,
                    "sha256": hashlib.sha256(body).hexdigest(), "created": datetime.now(UTC).isoformat(timespec="seconds"),
                    "products": len(self.products), "exemplars": len(self.exemplars),
                    "versions": versions(), "training": training or {}, "metrics": metrics or {}}
        (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        return out

    @classmethod
    def load(cls, folder: str | Path) -> Catalogue:
        """Open a catalogue folder; raises ``ModelError`` when it is missing, altered or malformed."""
        f = Path(folder)
        try:
            manifest = json.loads((f / MANIFEST_FILE).read_text())
            body = (f / CATALOGUE_FILE).read_bytes()
        except (OSError, ValueError) as e:
            raise ModelError(f"{f}: not a product catalogue ({e})") from None
        if not isinstance(manifest, dict) or manifest.get("kind") != KIND or manifest.get("format") != FORMAT:
            raise ModelError(f"{f}: not a product catalogue of format {FORMAT}")
        if hashlib.sha256(body).hexdigest() != manifest.get("sha256"):
            raise ModelError(f"{f / CATALOGUE_FILE}: sha256 does not match the manifest (altered or damaged)")
        try:
            d = json.loads(body)
            ok = (d["format"] == FORMAT and d["kind"] == KIND and d["seq_len"] == SEQ_LEN
                  and all(isinstance(e["product"], str) and e["product"] in d["products"]
                          and all(isinstance(t, str) for t in e["tokens"])
                          and all(isinstance(s, int) for s in e["seq"]) for e in d["exemplars"])
                  and all(isinstance(w, int | float) for w in d["idf"].values()))
        except (ValueError, KeyError, TypeError) as e:
            raise ModelError(f"{f / CATALOGUE_FILE}: malformed ({e})") from None
        if not ok:
            raise ModelError(f"{f / CATALOGUE_FILE}: malformed (fields of the wrong type or sequence length)")
        return cls(d["exemplars"], d["products"], {k: float(v) for k, v in d["idf"].items()}, d["name"], manifest)


def build_catalogue(samples: Sequence[ProductSample], name: str = "products-v1") -> Catalogue:
    """A catalogue from labelled samples: every sample an exemplar (duplicates of one product
    dropped), IDF weights over the samples; a product's type is its samples' majority label."""
    n = len(samples)
    df: Counter[str] = Counter()
    for s in samples:
        df.update(set(s.tokens))
    idf = {t: round(math.log((1 + n) / (1 + c)) + 1.0, 4) for t, c in df.items()}
    types: dict[str, Counter[str]] = defaultdict(Counter)
    exemplars: list[dict[str, Any]] = []
    seen: set[tuple[str, tuple[str, ...], tuple[int, ...]]] = set()
    for s in samples:
        types[s.product][s.device_type] += 1
        k = (s.product, tuple(s.tokens), tuple(s.seq))
        if k in seen:
            continue
        seen.add(k)
        exemplars.append({"product": s.product, "source": s.source, "tokens": list(s.tokens), "seq": list(s.seq)})
    products = {p: {"device_type": c.most_common(1)[0][0]} for p, c in types.items()}
    return Catalogue(exemplars, products, idf, name)


def default_catalogue() -> Catalogue | None:
    """The shipped catalogue (``models/product_catalogue``), or None when absent."""
    if not (DEFAULT_PATH / MANIFEST_FILE).is_file():
        return None
    return Catalogue.load(DEFAULT_PATH)


# --------------------------------------------------------------------------- labelled data

@dataclass(slots=True)
class Labelled:
    path: Path
    product: str
    device_type: str
    mac: str
    group: str  # capture set: held out together
    unit: str  # physical device


def iot_sentinel(root: str | Path) -> list[Labelled]:
    """IoT Sentinel's setup captures under ``root`` (``../shared/pcaps``): the folder is the product,
    ``MANIFEST.tsv`` gives the device's MAC, ``LABELS.tsv`` the type of that host (the Hue switch's
    and the D-Link door sensor's captures show their hub: labelled hub), else
    ``iot_sentinel/MODELS.tsv`` the product's type. Group: the
    product and its setup letter (``Setup-A``…), except for products recorded in one setup only,
    whose captures 1–7 and 8+ are two groups."""
    root = Path(root)
    types: dict[str, str] = {}
    with open(root / "iot_sentinel" / "MODELS.tsv", newline="") as f:
        for row in csv.reader(f, delimiter="\t"):
            if len(row) >= 3:
                types[row[0]] = row[2]
    macs: dict[str, str] = {}
    with open(root / "MANIFEST.tsv", newline="") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            if r["set"] == "iot_sentinel":
                m = re.search(r"device MAC ([0-9a-f:]{17})", r["ground_truth"])
                if m:
                    macs[r["file"]] = m.group(1)
    host_types: dict[tuple[str, str], str] = {}
    with open(root / "LABELS.tsv", newline="") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            if r["file"].startswith("iot_sentinel/") and r["device_type"] != "unknown":
                host_types[(r["file"].removeprefix("iot_sentinel/"), r["host_mac"])] = r["device_type"]
    out: list[Labelled] = []
    for rel, mac in sorted(macs.items()):
        prod = rel.split("/")[0]
        m = re.match(r"Setup-([A-Z])-(\d+)", Path(rel).name)
        if prod not in types or m is None:
            continue
        t = host_types.get((rel, mac), types[prod])
        out.append(Labelled(root / "iot_sentinel" / rel, prod, t, mac, f"{prod}/{m.group(1)}", mac))
    setups: dict[str, set[str]] = defaultdict(set)
    for x in out:
        setups[x.product].add(x.group)
    for x in out:
        if len(setups[x.product]) == 1:
            n = int(re.match(r"Setup-[A-Z]-(\d+)", x.path.name).group(1))  # type: ignore[union-attr]
            x.group = f"{x.group}/{'1-7' if n <= 7 else '8+'}"
    return out


@dataclass(slots=True)
class Profiled:
    """What the inventory saw of one capture (see :func:`profile_capture`)."""

    devices: dict[str, Any]
    sig: dict[str, DeviceSignals]
    traffic: dict[str, DeviceTraffic]
    seq: dict[str, list[int]]
    seen: dict[str, float] = field(default_factory=dict)  # seconds seen (active windows)


def _cache_file(path: Path) -> Path:
    import os

    from . import analyser, fingerprints, parse, traffic

    h = hashlib.sha256()
    for mod in (parse, fingerprints, traffic, analyser, sys.modules[__name__]):
        h.update(Path(mod.__file__ or "").read_bytes())
    st = path.stat()
    h.update(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return Path(os.environ.get("IOTWATCH_CACHE", "/tmp/iotwatch-inventory-cache")) / f"product-{h.hexdigest()[:24]}.pkl"


def profile_capture(path: str | Path, *, cache: bool = True) -> Profiled:
    """Run the pipeline with an inventory over one capture; keep what the catalogue needs
    (cached under ``$IOTWATCH_CACHE``: a local cache of our own results, never shipped)."""
    import pickle

    from ..pipeline import run
    from ..settings import Settings
    from .analyser import Inventory

    p = Path(path)
    cfile = _cache_file(p)
    if cache and cfile.exists():
        try:
            with open(cfile, "rb") as f:
                got = pickle.load(f)  # written below by this function
            if isinstance(got, Profiled):
                return got
        except Exception:
            pass
    inv = Inventory(model=None, catalogue=None)
    pipe, _ = run([p], Settings(detect=False, identify=False), analysers=[inv])
    devices, _ = pipe.finish()
    prof = Profiled(devices, dict(inv.fp.devices), inv.traffic, inv.sequences.symbols,
                    {k: n * inv.window_s for k, n in inv.windows.items()})
    if cache:
        cfile.parent.mkdir(parents=True, exist_ok=True)
        tmp = cfile.with_suffix(f".{id(prof)}.tmp")
        with open(tmp, "wb") as f:
            pickle.dump(prof, f)
        tmp.replace(cfile)
    return prof


def sample_of(x: Labelled, prof: Profiled) -> ProductSample | None:
    from .oui import lookup

    if x.mac not in prof.devices:
        return None
    toks = device_tokens(prof.sig.get(x.mac) or DeviceSignals(), prof.traffic.get(x.mac), lookup(x.mac).organisation)
    return ProductSample(x.product, x.device_type, x.group, str(x.path), toks, list(prof.seq.get(x.mac, [])))


def _profiles(items: Sequence[Labelled], jobs: int = 1) -> dict[Path, Profiled]:
    paths = list(dict.fromkeys(x.path for x in items))
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs) as ex:
            return dict(zip(paths, ex.map(profile_capture, paths, chunksize=8), strict=True))
    return {p: profile_capture(p) for p in paths}


# --------------------------------------------------------------------------- evaluation

@dataclass(slots=True)
class FoldResult:
    sample: ProductSample
    match: Match
    device_type: str  # the coarse type decided with this match (classify.decide)
    classified_by: str


def evaluate(items: Sequence[Labelled], profiles: dict[Path, Profiled], *, type_model: Any = None) -> list[FoldResult]:
    """Leave-one-group-out: each capture set is matched against a catalogue built without it,
    and its device typed by ``classify.decide`` with that match."""
    from .classify import decide

    pairs = [(x, s) for x in items if (s := sample_of(x, profiles[x.path])) is not None]
    out: list[FoldResult] = []
    for g in sorted({x.group for x, _ in pairs}):
        train = [s for x, s in pairs if x.group != g]
        cat = build_catalogue(train)
        for x, s in pairs:
            if x.group != g:
                continue
            prof = profiles[x.path]
            m = cat.match(s.tokens, s.seq)
            ident = decide(x.mac, prof.devices.get(x.mac), prof.sig.get(x.mac) or DeviceSignals(),
                           prof.traffic.get(x.mac), type_model, catalogue=cat, sequence=s.seq,
                           seen_s=prof.seen.get(x.mac))
            out.append(FoldResult(s, m, ident.device_type, ident.classified_by or "rules"))
    return out


def report(results: Sequence[FoldResult]) -> str:
    n = len(results)
    prod_ok = sum(r.match.product == r.sample.product for r in results)
    conf = [r for r in results if r.match.confident]
    conf_ok = sum(r.match.product == r.sample.product for r in conf)
    type_ok = sum(r.device_type == r.sample.device_type for r in results)
    false_cctv = [r for r in results if r.device_type in ("camera", "recorder")
                  and r.sample.device_type not in ("camera", "recorder")]
    lines = [f"captures: {n}, groups: {len({r.sample.group for r in results})}",
             f"product (nearest exemplar): {prod_ok}/{n} = {prod_ok / max(n, 1):.3f}",
             f"product, confident matches: {conf_ok}/{len(conf)} right; {len(conf)}/{n} confident",
             f"coarse type (decide with the match): {type_ok}/{n} = {type_ok / max(n, 1):.3f}",
             f"typed camera/recorder but not one: {len(false_cctv)}"]
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in results:
        c = per[r.sample.product]
        c[0] += 1
        c[1] += r.match.product == r.sample.product
        c[2] += r.device_type == r.sample.device_type
    lines.append(f"{'product':<20} {'n':>3} {'prod':>4} {'type':>4}  most often confused with")
    for p in sorted(per):
        c = per[p]
        wrong = Counter(str(r.match.product) for r in results if r.sample.product == p and r.match.product != p)
        lines.append(f"{p:<20} {c[0]:>3} {c[1]:>4} {c[2]:>4}  {', '.join(f'{k} {v}' for k, v in wrong.most_common(3))}")
    return "\n".join(lines)


@dataclass(slots=True)
class HostResult:
    file: str
    key: str
    unit: str
    label: str
    without: str  # type by rules + classifier (no catalogue)
    with_catalogue: str  # type with the catalogue as well (and, merged, the time seen)
    evidence: list[str]
    merged: bool = False  # one answer for the unit from all its captures


def evaluate_hosts(root: str | Path, *, n_splits: int = 5, jobs: int = 1) -> list[HostResult]:
    """Every labelled host of ``root/LABELS.tsv`` typed with and without the catalogue, 5 folds
    grouped by physical device (the type model's own folds): each fold's type model and
    catalogue are built without the fold's units (IoT Sentinel captures of a held-out unit are
    left out of the catalogue, so its product is unknown to it: only its kind can be recognised)."""
    from sklearn.model_selection import GroupKFold

    from . import train
    from .classify import decide

    root = Path(root)
    ss, _ = train.samples([root / "LABELS.tsv"])
    items = iot_sentinel(root)
    paths = list(dict.fromkeys([*(root / s.file for s in ss), *(x.path for x in items)]))
    profiles = _profiles([Labelled(p, "", "", "", "", "") for p in paths], jobs)
    iot = [(x, ps) for x in items if (ps := sample_of(x, profiles[x.path])) is not None]
    groups = np.array([s.group for s in ss])
    out: list[HostResult] = []
    for tr, te in GroupKFold(n_splits=n_splits).split(np.zeros(len(ss)), groups=groups):
        model = train._fit([ss[i] for i in tr], jobs)
        held = {str(g) for g in groups[te]}
        cat = build_catalogue([ps for x, ps in iot if x.unit not in held])
        for i in te:
            sm = ss[i]
            prof = profiles[root / sm.file]
            seq, seen = prof.seq.get(sm.key, []), prof.seen.get(sm.key)
            a = decide(sm.key, sm.record, sm.sig, sm.traffic, model, None, seen_s=seen)
            b = decide(sm.key, sm.record, sm.sig, sm.traffic, model, None, catalogue=cat, sequence=seq, seen_s=seen)
            out.append(HostResult(sm.file, sm.key, sm.group, sm.label, a.device_type, b.device_type, b.evidence))
        # each held-out unit once from all its captures, as one run over them types it: merged
        # (train.merge_unit), first with the first-to-last span, then with the time seen and the catalogue
        held_units: dict[str, list[Any]] = defaultdict(list)
        for i in te:
            held_units[ss[i].group].append(ss[i])
        for g, gs in held_units.items():
            key, rec, fp, trf = train.merge_unit(gs)
            order = sorted(gs, key=lambda x: x.file)
            seen = sum(profiles[root / x.file].seen.get(x.key, 0.0) for x in order)
            seq = next((q for x in order if (q := profiles[root / x.file].seq.get(x.key))), [])
            a = decide(key, rec, fp.get(key), trf.get(key), model)
            b = decide(key, rec, fp.get(key), trf.get(key), model, catalogue=cat, sequence=seq, seen_s=seen)
            out.append(HostResult(f"{len(gs)} captures", key, g, gs[0].label, a.device_type, b.device_type,
                                  b.evidence, merged=True))
    return out


def host_report(all_res: Sequence[HostResult]) -> str:
    merged = [r for r in all_res if r.merged]
    res = [r for r in all_res if not r.merged]
    n = len(res)
    units: dict[str, list[HostResult]] = defaultdict(list)
    for r in res:
        units[r.unit].append(r)
    lines = [f"labelled hosts: {n} rows, {len(units)} physical devices (5 folds grouped by device)"]
    for name, attr in (("rules + classifier", "without"), ("with the catalogue", "with_catalogue")):
        ok = sum(getattr(r, attr) == r.label for r in res)
        uok = sum(all(getattr(r, attr) == r.label for r in rs) for rs in units.values())
        cctv = sum(getattr(r, attr) in ("camera", "recorder") and r.label not in ("camera", "recorder") for r in res)
        lines.append(f"{name}: rows {ok}/{n} = {ok / max(n, 1):.3f}; devices with every row right {uok}/{len(units)} "
                     f"= {uok / max(len(units), 1):.3f}; false camera/recorder rows {cctv}")
    lines.append("wrong with the catalogue (unit: rows wrong/rows, label → answers; first evidence):")
    for u, rs in sorted(units.items()):
        bad = [r for r in rs if r.with_catalogue != r.label]
        if bad:
            got = Counter(r.with_catalogue for r in bad)
            lines.append(f"  {u} {len(bad)}/{len(rs)} {rs[0].label} → {dict(got)}; {bad[0].file}: "
                         f"{' | '.join(bad[0].evidence[:4])}")
    m = len(merged)
    for name, attr in (("merged per device, first-to-last span, no catalogue", "without"),
                       ("merged per device, time seen, with the catalogue", "with_catalogue")):
        ok = sum(getattr(r, attr) == r.label for r in merged)
        lines.append(f"{name}: {ok}/{m} = {ok / max(m, 1):.3f}; false camera/recorder "
                     f"{sum(getattr(r, attr) in ('camera', 'recorder') and r.label not in ('camera', 'recorder') for r in merged)}")
    for r in merged:
        if r.with_catalogue != r.label or r.without != r.label:
            lines.append(f"  merged {r.unit} ({r.file}) {r.label}: span → {r.without}, seen+catalogue → "
                         f"{r.with_catalogue}; {' | '.join(r.evidence[:3])}")
    changed = [r for r in res if r.with_catalogue != r.without]
    lines.append(f"rows changed by the catalogue: {len(changed)} "
                 f"({sum(r.with_catalogue == r.label for r in changed)} to right, "
                 f"{sum(r.without == r.label for r in changed)} to wrong)")
    return "\n".join(lines)


def rebuild(root: str | Path, out: str | Path, *, jobs: int = 1, items: Sequence[Labelled] | None = None,
            profiles: dict[Path, Profiled] | None = None) -> Catalogue:
    """Build the catalogue from the labelled captures under ``root`` (``../shared/pcaps``), measure
    it (leave one capture set out) and save it to ``out``: what ``make model`` and training call.
    Raises ``OSError``/``KeyError`` when the label files are missing or lack their columns."""
    items = list(items) if items is not None else iot_sentinel(root)
    profiles = profiles if profiles is not None else _profiles(items, jobs)
    samples = [s for x in items if (s := sample_of(x, profiles[x.path])) is not None]
    cat = build_catalogue(samples)
    res = evaluate(items, profiles)
    n = len(res)
    metrics = {"protocol": "leave one capture set out (product + setup letter)", "captures": n,
               "product_accuracy": round(sum(r.match.product == r.sample.product for r in res) / max(n, 1), 4),
               "type_accuracy": round(sum(r.device_type == r.sample.device_type for r in res) / max(n, 1), 4)}
    cat.save(out, training={"set": "iot_sentinel", "captures": len(samples),
                            "labels": ["MANIFEST.tsv", "LABELS.tsv", "iot_sentinel/MODELS.tsv"]}, metrics=metrics)
    return Catalogue.load(out)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m iotwatch.inventory.products",
                                 description="Build or evaluate the product catalogue from ../shared/pcaps.")
    ap.add_argument("command", choices=("build", "evaluate", "evaluate-hosts"),
                    help="build the catalogue; evaluate it on IoT Sentinel's 27 models (leave one capture set "
                         "out); evaluate-hosts: coarse type of every labelled host, folds by physical device")
    ap.add_argument("root", type=Path, help="the shared captures folder (with MANIFEST.tsv and iot_sentinel/)")
    ap.add_argument("--out", type=Path, default=DEFAULT_PATH, help="catalogue folder to write (build)")
    ap.add_argument("--type-model", type=Path, default=None,
                    help="type bundle for devices without a confident product (evaluate; default: rules only)")
    ap.add_argument("--by", choices=("setup", "capture"), default="setup",
                    help="evaluate: hold out a capture set (product + setup letter, default) or one capture at a "
                         "time (IoT Sentinel's own protocol: other captures of the same unit and setup in training)")
    ap.add_argument("--jobs", type=int, default=1, help="processes profiling captures (first run only: cached)")
    a = ap.parse_args(argv)
    try:
        items = iot_sentinel(a.root)
    except (OSError, KeyError) as e:
        print(f"{a.root}: cannot read the labelled captures ({e})", file=sys.stderr)
        return 2
    if a.command == "evaluate-hosts":
        print(host_report(evaluate_hosts(a.root, jobs=a.jobs)))
        return 0
    profiles = _profiles(items, a.jobs)
    if a.command == "evaluate" and a.by == "capture":
        for x in items:
            x.group = str(x.path)
    if a.command == "evaluate":
        tm = None
        if a.type_model is not None:
            from .classify import TypeModel

            tm = TypeModel.load(a.type_model)
        res = evaluate(items, profiles, type_model=tm)
        print(report(res))
        return 0
    cat = rebuild(a.root, a.out, jobs=a.jobs, items=items, profiles=profiles)
    metrics = cat.manifest["metrics"]
    print(f"wrote {a.out}: {len(cat.products)} products, {len(cat.exemplars)} exemplars; {metrics}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
