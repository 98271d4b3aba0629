"""Detection on Zeek conn.log beside detection on packets, for docs/evaluation.md.

    python -m iotwatch.zeek.evaluate OUT.md WORK_DIR LABEL_FILE... [--section-only]

For every capture of the label files, iotwatch writes Zeek's conn.log (as ``analyze --zeek tsv``
does); the label rows that name a host by IP address (a conn.log has no MAC addresses) are then
evaluated twice with the same detector and model: on the captures, and on their conn.log files.
The table goes into OUT.md as the section "Detection on Zeek conn.log" (replacing it if there).
"""

from __future__ import annotations

import csv
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..addrs import LocalNets
from ..learn.labels import BAD, HostLabel, read_many
from ..pipeline import run
from ..settings import Settings
from .connlog import ZeekSink

TITLE = "Detection on Zeek conn.log"


def write_conn_log(capture: Path, out: Path) -> Path:
    """The conn.log iotwatch writes for a capture (``analyze --zeek tsv``), without the other outputs."""
    out.parent.mkdir(parents=True, exist_ok=True)
    sink = ZeekSink(out, LocalNets(), "tsv")
    try:
        pipe, _caps = run([capture], Settings(), [sink])
        pipe.finish()
    finally:
        sink.close()
    return out


def _write_labels(path: Path, rows: list[tuple[Path, HostLabel]], with_mac: bool) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["file", "host_ip", "host_mac", "behaviour", "first_bad_ts", "end_ts", "device_type"])
        for cap, lab in rows:
            w.writerow([str(cap.resolve()), lab.host_ip, lab.host_mac if with_mac else "", lab.behaviour,
                        "" if lab.first_ts is None else repr(lab.first_ts), "" if lab.end_ts is None else repr(lab.end_ts),
                        lab.device_type])


@dataclass(slots=True)
class Comparison:
    name: str
    rows: int
    dropped: int  # label rows without an IP address
    packets: Any  # learn.evaluate.Report
    conn_log: Any


def compare(name: str, label_files: list[Path], work: Path, model: Any, n_jobs: int = 2) -> Comparison:
    from ..learn.evaluate import evaluate

    labels = read_many(label_files)
    keep = [lab for lab in labels if lab.host_ip]
    conn: dict[Path, Path] = {}
    for k, cap in enumerate(sorted({lab.capture for lab in keep})):
        conn[cap] = write_conn_log(cap, work / "conn" / f"{k:04d}-{cap.stem}" / "conn.log")
    work.mkdir(parents=True, exist_ok=True)
    by_packets, by_log = work / "packets.labels.tsv", work / "conn.labels.tsv"
    _write_labels(by_packets, [(lab.capture, lab) for lab in keep], with_mac=True)
    _write_labels(by_log, [(conn[lab.capture], lab) for lab in keep], with_mac=False)
    return Comparison(name, len(keep), len(labels) - len(keep), evaluate([by_packets], model, n_jobs=n_jobs),
                      evaluate([by_log], model, n_jobs=n_jobs))


def _cells(rep: Any, beh: str) -> str:
    rows = [h for h in rep.hosts if h.label.behaviour == beh]
    caught = [h for h in rows if beh in h.categories]
    return f"{len(caught)} / {len(rows)}"


def table(comps: list[Comparison]) -> str:
    out = ["| data | label rows (by IP) | behaviour | caught from packets | caught from conn.log |", "|---|---|---|---|---|"]
    for c in comps:
        present = [b for b in BAD if any(h.label.behaviour == b for h in c.packets.hosts)]
        for b in present:
            out.append(f"| {c.name} | {c.rows} | {b} | {_cells(c.packets, b)} | {_cells(c.conn_log, b)} |")
        out.append(f"| {c.name} | {c.rows} | false alarms on normal/victim hosts | {len(c.packets.false_alarms)} | "
                   f"{len(c.conn_log.false_alarms)} |")
    return "\n".join(out)


def section(comps: list[Comparison], seconds: float) -> str:
    missed = []
    for c in comps:
        for h in c.conn_log.hosts:
            if h.label.bad and h.label.behaviour not in h.categories:
                same = next((p for p in c.packets.hosts if p.label.host_ip == h.label.host_ip
                             and p.label.behaviour == h.label.behaviour and p.label.first_ts == h.label.first_ts), None)
                was = "caught" if same is not None and h.label.behaviour in same.categories else "missed too"
                missed.append(f"- {c.name}: {h.label.host_ip} {h.label.behaviour} (from packets: {was}; "
                              f"from conn.log alerted as {', '.join(h.categories) or 'nothing'})")
    body = [
        "Every labelled capture is turned into the conn.log iotwatch writes for it (`iotwatch analyze CAPTURE "
        "--zeek tsv`), then the same label rows are evaluated on the captures and on the conn.log files, with the "
        "same rules and behaviour model. Only label rows that name the host by IP address take part (a conn.log "
        "has no MAC addresses); what a conn.log cannot carry is listed in docs/zeek.md.",
        "",
        "```sh",
        "python -m iotwatch.zeek.evaluate docs/evaluation.md build/zeek-eval build/eval/*.labels.tsv -- ../shared/pcaps/LABELS.tsv",
        "```",
        "",
        table(comps),
        "",
        "What only packets carry, and so what a conn.log cannot show (docs/zeek.md): payloads (the Mirai C2 hello and "
        "the controller's DNS name, DNS tunnel names, the SSH banner that makes a login on an unusual port a "
        "brute-force attempt), ARP (an ARP sweep), TCP sequence numbers (Mirai's seq = address signature: its scan "
        "is still caught as a scan). Counts, bytes, timing between connections and handshake outcomes survive.",
        "",
    ]
    if missed:
        body += ["Missed from the conn.log:", "", *missed, ""]
    false = [f"- {c.name}: {lab.host_ip} ({lab.behaviour}, {lab.capture.parent.name}) alerted as {cat}: {sig}"
             for c in comps for lab, cat, sig in c.conn_log.false_alarms]
    if false:
        body += ["Alerts on hosts labelled normal or victim, from the conn.log:", "", *false, ""]
    body.append(f"Time: {seconds:.0f} s on this machine (2 cores).")
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"## {TITLE}\n\nMeasured on {when}.\n\n" + "\n".join(body) + "\n"


def replace_section(doc: Path, text: str) -> None:
    old = doc.read_text() if doc.exists() else "# Evaluation\n"
    head = f"## {TITLE}\n"
    marker = "\nEvaluation time:"
    if head in old:  # drop the old section: up to the next section or make eval's closing line
        start = old.index(head)
        ends = [k for k in (old.find("\n## ", start + len(head)), old.find(marker, start)) if k >= 0]
        old = old[:start] + (old[min(ends) + 1:] if ends else "")
    at = old.rfind(marker)
    new = (old[:at].rstrip("\n") + "\n\n" + text + "\n" + old[at + 1:]) if at >= 0 else (old.rstrip("\n") + "\n\n" + text)
    doc.write_text(new)


def main(argv: list[str]) -> int:
    """OUT.md WORK_DIR GENERATED_LABEL_FILES... [-- SHARED_LABELS]"""
    if len(argv) < 3:
        sys.stderr.write("usage: python -m iotwatch.zeek.evaluate OUT.md WORK_DIR LABELS... [-- SHARED_LABELS...]\n")
        return 2
    from ..detect import model as behaviour

    out, work = Path(argv[0]), Path(argv[1])
    rest = argv[2:]
    generated, shared = (rest[: rest.index("--")], rest[rest.index("--") + 1:]) if "--" in rest else (rest, [])
    bundle = behaviour.default_model()
    t = time.perf_counter()
    comps = []
    if generated:
        comps.append(compare("generated scenarios", [Path(x) for x in generated], work / "generated", bundle))
    if shared:
        comps.append(compare("shared labelled captures", [Path(x) for x in shared], work / "shared", bundle))
    replace_section(out, section(comps, time.perf_counter() - t))
    print(f"wrote the section '{TITLE}' of {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
