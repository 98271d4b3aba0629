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
capture, see :func:`iotwatch.learn.products.profile_capture`); ``python -m iotwatch.learn.products build`` builds the
shipped catalogue from ``../shared/pcaps``; ``... evaluate`` measures it with grouped folds.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
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
