"""The alert record: one device, one behaviour episode, with its evidence (EVE ``alert`` events)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

SEVERITY_WORDS = {1: "high", 2: "medium", 3: "low"}


def iso(ts: float) -> str:
    """ISO-8601 with microseconds and offset, as Suricata writes timestamps."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+0000")


@dataclass(slots=True)
class Alert:
    device: str  # device key (MAC, or IP without Ethernet)
    src_mac: str | None
    src_ip: str | None
    category: str  # scan | bruteforce | flood | exfil | c2
    signature: str  # human readable
    severity: int  # 1 high .. 3 low
    score: float  # 0..1
    timestamp: float  # when the evidence crossed the threshold: when a live sensor raises it
    first_ts: float  # first packet of the behaviour
    last_ts: float  # last packet of the behaviour seen
    evidence: dict[str, object] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)  # rules and model that agree ("rule:probe_fanout", "model")

    def to_event(self) -> dict[str, object]:
        return {
            "event_type": "alert",
            "timestamp": iso(self.timestamp),
            "src_ip": self.src_ip,
            "src_mac": self.src_mac,
            "alert": {"category": self.category, "signature": self.signature, "severity": self.severity},
            "score": round(self.score, 4),
            "first_ts": round(self.first_ts, 6),
            "last_ts": round(self.last_ts, 6),
            "evidence": {**self.evidence, "detected_by": self.sources},
        }

    def summary(self) -> dict[str, object]:
        """What a device object lists of its alerts."""
        return {"category": self.category, "signature": self.signature, "severity": self.severity,
                "score": round(self.score, 4), "timestamp": iso(self.timestamp), "first_ts": round(self.first_ts, 6),
                "last_ts": round(self.last_ts, 6)}

    def sentence(self) -> str:
        """Plain words for the terminal."""
        who = self.src_ip or self.device
        if self.src_mac and self.src_ip:
            who = f"{self.src_ip} ({self.src_mac})"
        since = datetime.fromtimestamp(self.first_ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"{who} — {self.category.upper()} since {since}: {self.signature}"
