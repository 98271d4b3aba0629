"""The inventory riding along the pipeline: rare frames and finished flows in, identities out."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..addrs import LocalNets
from ..records import DeviceRecord
from ..sidecar import RareFrame
from .classify import Identity, TypeModel, identify
from .fingerprints import Fingerprints
from .products import Catalogue, Sequences
from .traffic import DeviceTraffic, traffic_from_records

#: the type bundle `analyze` uses unless told otherwise (rebuilt by `make model`)
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "models" / "device_type"


def _is_mac(key: str) -> bool:
    return len(key) == 17 and key.count(":") == 5


def default_type_model() -> TypeModel | None:
    if not (DEFAULT_PATH / "manifest.json").is_file():
        return None
    return TypeModel.load(DEFAULT_PATH)


class Inventory:
    """An analyser (:class:`~iotwatch.analyser.Analyser`): fingerprints from rare frames and a
    traffic profile from flow records while the input streams; identities at the end."""

    wants_rare = True

    def __init__(self, local_nets: LocalNets | None = None, model: TypeModel | None = None,
                 catalogue: Catalogue | None = None, window_s: float = 60.0) -> None:
        self.nets = local_nets or LocalNets()
        self.model = model
        self.catalogue = catalogue  # product catalogue (products.py); None: no product matching
        self.fp = Fingerprints(local=self.nets.is_local)
        self.sequences = Sequences()  # each device's first rare frames, for the product match
        self.window_s = window_s
        self.windows: Counter[str] = Counter()  # device → windows it was active in (time seen)
        self._budget: dict[tuple[str | None, str], int] = {}
        self._window = -1
        self.traffic: dict[str, DeviceTraffic] = {}
        self.identities: dict[str, Identity] = {}

    def bind(self, window_s: float, local_nets: LocalNets) -> None:
        """The inventory keeps the networks it was made with (its fingerprints are built on them);
        it takes the run's window length (its windows measure the time each device was seen)."""
        self.window_s = window_s

    #: frames dissected per device, kind and minute: a device's names, banners and announcements
    #: repeat; the first few of each minute tell what it is (the rest only cost time)
    PER_KIND = 4

    def on_rare(self, frames: list[RareFrame]) -> None:
        for f in frames:
            w = int(f.ts // 60)
            if w != self._window:
                self._window = w
                self._budget.clear()
            k = (f.src, f.kind)
            n = self._budget.get(k, 0)
            if n >= self.PER_KIND and f.kind in ("dns", "first_payload", "arp", "ntp"):
                continue
            self._budget[k] = n + 1
            self.fp.add(f)
            self.sequences.add(f)

    def on_flow_records(self, rows: np.ndarray) -> None:
        # devices are MACs or local addresses: a spoofed flood's sources are no devices of ours
        for key, t in traffic_from_records(rows, self.nets, external_ip_devices=False).items():
            have = self.traffic.get(key)
            self.traffic[key] = t if have is None else have.merge(t)

    def on_windows(self, table: pa.Table) -> None:
        """Count each device's active windows: the time it was seen, which a run over captures
        far apart must use instead of its first-to-last span (``classify.features``)."""
        if table.num_rows:
            vc = pc.value_counts(table.column("device"))
            for k, n in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True):
                if k is not None:
                    self.windows[k] += n

    def prepare(self) -> float:
        """Open the type model now (imports scikit-learn) and load the catalogue's kernel; returns
        the seconds it took."""
        import time

        from .oui import lookup

        t = time.perf_counter()
        lookup("00:00:00:00:00:00")  # the IEEE registry's index
        if self.catalogue is not None and self.catalogue.exemplars:  # the sequence kernel, from numba's cache
            e = self.catalogue.exemplars[0]
            self.catalogue.match(e["tokens"], e["seq"])
        if self.model is not None and self.model._bundle is not None and "forest" not in self.model._bundle.manifest:
            _ = self.model.estimator
        return time.perf_counter() - t

    def conclude(self, devices: dict[str, DeviceRecord], files: list[str] | None = None) -> list:  # type: ignore[type-arg]
        """Type every device: its record gains vendor, type, confidence, evidence and product
        (a name it gave, else the catalogue's confident match);
        the identities stay in ``self.identities``. The inventory raises no alerts."""
        seen = {k: n * self.window_s for k, n in self.windows.items()}
        # products are matched for devices of this network: MACs, and local addresses when there
        # is no Ethernet (a spoofed flood's external sources would each cost a match)
        seqs = {k: q for k, q in self.sequences.symbols.items() if _is_mac(k) or self.nets.is_local(k)}
        ids = identify(devices, self.fp, self.traffic, self.model, self.catalogue, seqs, seen)
        for key, ident in ids.items():
            rec = devices[key]
            rec.vendor = ident.vendor
            rec.device_type = ident.device_type
            rec.type_confidence = round(ident.type_confidence, 3)
            rec.evidence = list(ident.evidence)
            rec.model = ident.model
            rec.classified_by = ident.classified_by or "rules"
        self.identities = ids
        return []
