"""Device inventory: what each device is (vendor, type, model), with evidence and confidence.

    rare frames ──Fingerprints.add──► per-device signals ─┐
    flow rows ───traffic_from_flows──► per-device traffic ─┼─ identify ─► Identity per device
    DeviceRecord (totals), MAC → OUI vendor ───────────────┤
    first rare frames + facts ──Catalogue.match──► product ─┘

A confident product match (``iotwatch.inventory.products``: a catalogue learned from labelled
captures; not imported here, so that ``python -m iotwatch.inventory.products`` runs it once)
gives the type; otherwise strong signals decide by rule (a camera model name, RTSP served by a
camera vendor, a printer service); a scikit-learn model over per-device features decides the
rest. See docs/inventory.md.
"""

from .classify import FEATURES, MODEL_KIND, TYPES, Identity, TypeModel, decide, identify
from .fingerprints import DeviceSignals, Fingerprints
from .oui import REGISTRY, Vendor, lookup
from .parse import Signal, signals
from .traffic import DeviceTraffic, merge_traffic, traffic_from_flows, traffic_from_records

__all__ = ["FEATURES", "MODEL_KIND", "REGISTRY", "TYPES", "DeviceSignals", "DeviceTraffic", "Fingerprints", "Identity",
           "Signal", "TypeModel", "Vendor", "decide", "identify", "lookup", "merge_traffic", "signals",
           "traffic_from_flows", "traffic_from_records"]
