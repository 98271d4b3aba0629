"""Device inventory: what each device is (vendor, type, model), with evidence and confidence.

    rare frames ──Fingerprints.add──► per-device signals ─┐
    flow rows ───traffic_from_flows──► per-device traffic ─┼─ identify ─► Identity per device
    DeviceRecord (totals), MAC → OUI vendor ───────────────┘

Strong signals decide by rule (a camera model name, RTSP served by a camera vendor, a printer
service); a scikit-learn model over per-device features decides the rest.
"""
