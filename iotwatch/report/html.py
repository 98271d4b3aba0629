"""An ``analyze`` output folder → one self-contained HTML audit report (Japanese or English).

The page has no script and loads nothing: styles are inline, charts are inline SVG, and a
Content-Security-Policy (``default-src 'none'``) makes any attempt to load something else an
error in the browser's console, which the browser test checks. Sections, in reading order:
the verdict in plain words (``#verdict``), the uplink over time by device (``#uplink``), the
device inventory (``#inventory``), one section per alerted device (``#device-…``: timeline,
× baseline, uplink share, top targets, evidence, recommended actions), the before/after
comparison when a later run is given (``#compare``), and how to check the evidence (``#method``).
"""

from __future__ import annotations

import re
from html import escape
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .. import __version__
from ..compare import Comparison, _external, compare
from ..errors import OutputError
from ..outdir import FLOWS, Run, device_key, load
from . import charts, words
from .i18n import L10n, l10n

CSS = """
:root{--ink:#1c2833;--mute:#5d6d7e;--line:#d5dbdb;--bad:#c0392b;--ok:#1e8449;--warn:#b9770e;--bg:#fbfcfc}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.6 "Noto Sans CJK JP","Noto Sans JP","Hiragino Sans",
"Yu Gothic",Meiryo,system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1040px;margin:0 auto;padding:24px 28px 64px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:36px 0 10px;padding-bottom:4px;border-bottom:2px solid var(--line)}
h3{font-size:16px;margin:20px 0 6px}
.sub{color:var(--mute);margin:0 0 18px}
.verdict{border-left:6px solid var(--bad);background:#fdedec;padding:14px 18px;border-radius:4px}
.verdict.ok{border-color:var(--ok);background:#e9f7ef}
.verdict p{margin:6px 0}.verdict .big{font-size:19px;font-weight:700}
table{border-collapse:collapse;width:100%;font-size:13.5px;margin:8px 0}
th,td{border-bottom:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f2f4f4;font-weight:600}td.num,th.num{text-align:right;white-space:nowrap}
.tag{white-space:nowrap;display:inline-block;border-radius:3px;padding:0 6px;margin:1px 2px;font-size:12px;color:#fff;background:var(--bad)}
.facts{display:flex;flex-wrap:wrap;gap:10px;margin:10px 0}
.fact{border:1px solid var(--line);border-radius:6px;padding:8px 14px;min-width:150px;background:#fff}
.fact b{display:block;font-size:22px}.fact span{color:var(--mute);font-size:12.5px}
table.inventory td:nth-child(4),table.evidence td:first-child{white-space:nowrap}
table.evidence td:nth-child(4){width:42%}table.evidence td:nth-child(2),table.evidence td:nth-child(3){white-space:normal}
figure.chart{margin:10px 0;background:#fff;border:1px solid var(--line);border-radius:6px;padding:6px}
figure.chart svg{width:100%;height:auto;display:block}
figcaption{color:var(--mute);font-size:12.5px;padding:2px 6px}
ol.actions li{margin:4px 0}
.mono{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12.5px}
.status-still{color:var(--bad);font-weight:700}.status-silent,.status-stopped{color:var(--ok);font-weight:700}
footer{color:var(--mute);font-size:12px;margin-top:40px}
@media print{main{max-width:none}table.inventory td:nth-child(4),table.evidence td:first-child{white-space:nowrap}
table.evidence td:nth-child(4){width:42%}table.evidence td:nth-child(2),table.evidence td:nth-child(3){white-space:normal}
figure.chart{break-inside:avoid}}
"""
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _h(x: object) -> str:
    return escape(str(x), quote=True)


def _anchor(key: str) -> str:
    return "device-" + re.sub(r"[^0-9A-Za-z]+", "-", key).strip("-")


def _name(t: L10n, dev: dict[str, Any]) -> str:
    ip = (dev.get("ips") or [device_key(dev)])[0]
    kind = words.device_type(t, dev.get("device_type")) if dev.get("device_type") else ""
    what = " ".join(x for x in (dev.get("vendor") or "", kind) if x)
    return f"{ip} ({what})" if what else str(ip)


def _top_targets(run: Run, dev: dict[str, Any], alerts: list[dict[str, Any]], n: int = 8) -> tuple[list[dict[str, Any]], int]:
    """The external addresses the device sent the most to during its alerts, and how many in all."""
    import pyarrow.dataset as ds

    path = run.folder / FLOWS
    if not path.exists() or not alerts:
        return [], 0
    first = min(float(a["first_ts"]) for a in alerts)
    last = max(float(a["last_ts"]) for a in alerts)
    mine = (pc.field("src_mac") == dev["mac"]) if dev.get("mac") else \
        pc.field("src_ip").isin(pa.array(dev.get("ips") or [], pa.string()))
    t = ds.dataset(path, format="parquet").to_table(
        columns=["dest_ip", "dest_port", "bytes_toserver", "pkts_toserver"],
        filter=mine & (pc.field("start") <= last) & (pc.field("end") >= first))
    if not t.num_rows:
        return [], 0
    g = t.group_by("dest_ip").aggregate([("bytes_toserver", "sum"), ("pkts_toserver", "sum"), ("dest_port", "count"),
                                         ("dest_port", "distinct")])
    ext = _external(g.column("dest_ip").to_pylist(), _nets())
    g = g.filter(pa.array(ext)).sort_by([("bytes_toserver_sum", "descending"), ("dest_ip", "ascending")])
    rows = []
    for r in g.slice(0, n).to_pylist():
        rows.append({"ip": r["dest_ip"], "bytes": r["bytes_toserver_sum"], "packets": r["pkts_toserver_sum"],
                     "flows": r["dest_port_count"], "ports": sorted(r["dest_port_distinct"])[:6]})
    return rows, g.num_rows


def _nets() -> Any:
    from ..addrs import LocalNets

    return LocalNets()


def _window_s(run: Run) -> float:
    if run.windows is not None and run.windows.num_rows:
        return float(run.windows.column("window_s")[0].as_py())
    return 60.0


def _facts(t: L10n, run: Run, dev: dict[str, Any], alerts: list[dict[str, Any]]) -> tuple[list[tuple[str, str]], float | None]:
    """(value, label) boxes for a device, and its normal upload in bit/s when known."""
    key = device_key(dev)
    facts: list[tuple[str, str]] = []
    ev = {k: v for a in alerts for k, v in (a.get("evidence") or {}).items()}
    x = max((float(a["evidence"]["x_baseline"]) for a in alerts if "x_baseline" in (a.get("evidence") or {})),
            default=None)
    if x is not None:
        facts.append((t.times(x), t._("its normal upload")))
    share = max((float(a["evidence"]["uplink_share"]) for a in alerts if "uplink_share" in (a.get("evidence") or {})),
                default=None)
    if share is None and run.windows is not None:
        w = run.windows
        sel = pc.equal(w.column("device"), key)
        shares = w.filter(sel).column("upload_share").to_numpy()
        share = float(shares.max()) if len(shares) else None
    if share is not None:
        facts.append((t.pct(share), t._("of the uplink at its peak")))
    facts.append((t.size(float(dev.get("upload_bytes", 0))), t._("uploaded to the internet")))
    if "targets" in ev:
        facts.append((t.num(int(ev["targets"])), t._("addresses scanned")))
    if "sessions" in ev:
        facts.append((t.num(int(ev["sessions"])), t._("login attempts")))
    base = ev.get("baseline_bytes_per_window")
    baseline_bps = float(base) * 8 / _window_s(run) if isinstance(base, (int, float)) else None
    return facts, baseline_bps


def _evidence_rows(t: L10n, alerts: list[dict[str, Any]]) -> str:
    rows = []
    for a in alerts:
        ev = a.get("evidence") or {}
        ref = ev.get("first_packet") or ev.get("alert_packet")
        where = "—"
        if isinstance(ref, dict):  # a capture's packet, or (conn.log input, docs/zeek.md) the log's line
            where = (f"{Path(str(ref['file'])).name} #{t.num(int(ref['packet']))}" if "packet" in ref
                     else f"{Path(str(ref['file'])).name} {ref.get('line')}")
        rows.append(
            f"<tr><td><span class='tag' style='background:{charts.CATEGORY_COLORS.get(a['alert']['category'], '#c0392b')}'>"
            f"{_h(words.category_short(t, a['alert']['category']))}</span></td>"
            f"<td class='num'>" + _h(t.when(float(a['first_ts']))) + "</td><td class='num'>" + _h(t.time(float(a['last_ts']))) + f"</td>"
            f"<td>{_h(words.alert_summary(t, a))}<div class='mono'>{_h(a['alert']['signature'])}</div></td>"
            f"<td class='mono'>{_h(where)}</td><td class='mono'>{_h(', '.join(ev.get('detected_by', [])))}</td></tr>")
    head = ("<tr><th>" + _h(t._('behaviour')) + "</th><th class='num'>" + _h(t._('since')) + "</th>"
            "<th class='num'>" + _h(t._('until')) + "</th><th>" + _h(t._('what was seen (and the detector’s own words)')) + "</th>"
            "<th>" + _h(t._('first packet (capture #frame)')) + "</th><th>" + _h(t._('detected by')) + "</th></tr>")
    return f"<table class='evidence'>{head}{''.join(rows)}</table>"


def _device_section(t: L10n, run: Run, dev: dict[str, Any]) -> str:
    key = device_key(dev)
    alerts = run.alerts_of(dev)
    cats = [a["alert"]["category"] for a in alerts]
    facts, baseline_bps = _facts(t, run, dev, alerts)
    parts = [f"<section class='device' id='{_anchor(key)}'>",
             f"<h2>{_h(words.upper_first(words.who(t, dev)))} <span class='mono'>{_h(key)}</span></h2>",
             "<p>" + _h(t._("Since {time} this device has been {what}.").format(
                 time=t.when(min(float(a["first_ts"]) for a in alerts)),
                 what=words.join(t, [words.category(t, c) for c in dict.fromkeys(cats)]))) + "</p>",
             "<div class='facts'>" + "".join(f"<div class='fact'><b>{_h(v)}</b><span>{_h(lbl)}</span></div>"
                                             for v, lbl in facts) + "</div>"]
    if run.windows is not None and run.windows.num_rows:
        svg = charts.device_chart(t, run.windows, key, alerts, baseline_bps)
        parts.append(f"<figure class='chart timeline'>{svg}<figcaption>" + _h(t._('Each bar is one window of the analysis; coloured bands at the top mark when each behaviour was seen.')) + "</figcaption></figure>")
    targets, total = _top_targets(run, dev, alerts)
    if targets:
        parts.append("<h3>" + _h(t._('Top targets on the internet')) + "</h3>")
        parts.append("<p>" + _h(t._("During its alerts it sent to {n} internet addresses; the most:").format(
            n=t.num(total))) + "</p>")
        rows = "".join(f"<tr><td class='mono'>{_h(r['ip'])}</td><td class='num'>" + _h(t.size(r['bytes'])) + "</td>"
                       "<td class='num'>" + _h(t.num(r['packets'])) + "</td><td class='num'>" + _h(t.num(r['flows'])) + f"</td>"
                       f"<td class='mono'>{_h(', '.join(str(p) for p in r['ports']))}</td></tr>" for r in targets)
        parts.append("<table class='targets'><tr><th>" + _h(t._('address')) + "</th><th class='num'>" + _h(t._('sent')) + "</th>"
                     "<th class='num'>" + _h(t._('packets')) + "</th><th class='num'>" + _h(t._('connections')) + "</th>"
                     "<th>" + _h(t._('ports')) + f"</th></tr>{rows}</table>")
    parts.append("<h3>" + _h(t._('Evidence')) + "</h3>")
    parts.append(_evidence_rows(t, alerts))
    peers = sorted({p for a in alerts for p in (a.get("evidence") or {}).get("peers", [])})
    parts.append("<h3>" + _h(t._('What to do')) + "</h3><ol class='actions'>"
                 + "".join(f"<li>{_h(x)}</li>" for x in words.actions(t, set(cats), dev, peers)) + "</ol>")
    parts.append("</section>")
    return "\n".join(parts)


def _verdict(t: L10n, run: Run) -> str:
    alerted = run.alerted
    span = run.span
    dur = t.duration(span[1] - span[0]) if span else "—"
    if not alerted:
        ok = t._("No device behaved like an infected one in the {duration} captured.").format(duration=dur)
        return f"<section id='verdict' class='verdict ok'><p class='big'>{_h(ok)}</p></section>"
    n = len(alerted)
    head = t.n_("{n} device on this network behaves like an infected device.",
                "{n} devices on this network behave like infected devices.", n).format(n=t.num(n))
    ps = [f"<p class='big'>{_h(head)}</p>"]
    details = t._("Details")
    for dev in alerted:
        alerts = run.alerts_of(dev)
        cats = list(dict.fromkeys(a["alert"]["category"] for a in alerts))
        line = words.upper_first(t._("{who} has been {what} since {time}.").format(
            who=words.who(t, dev), what=words.join(t, [words.category(t, c) for c in cats]),
            time=t.when(min(float(a["first_ts"]) for a in alerts))))
        ex = [a for a in alerts if "x_baseline" in (a.get("evidence") or {})]
        if ex:
            e = ex[0]["evidence"]
            if "uplink_share" in e:
                more = t._("Its upload reached {x} its own normal, {share} of the uplink.").format(
                    x=t.times(float(e["x_baseline"])), share=t.pct(float(e["uplink_share"])))
            else:
                more = t._("Its upload reached {x} its own normal.").format(x=t.times(float(e["x_baseline"])))
            line = t.sentences(line, more)
        ps.append(f"<p>{_h(line)} <a href='#{_anchor(device_key(dev))}'>{_h(details)}</a></p>")
    first = t._("First thing to do: isolate it from the network (unplug it or disable its switch port).")
    ps.append(f"<p><b>{_h(first)}</b></p>")
    others = len(run.devices) - n
    rest = t.n_("The other device seen did nothing suspicious in the {duration} captured.",
                "The other {n} devices seen did nothing suspicious in the {duration} captured.",
                others).format(n=t.num(others), duration=dur)
    ps.append(f"<p>{_h(rest)}</p>")
    return "<section id='verdict' class='verdict'>" + "".join(ps) + "</section>"


def _uplink(t: L10n, run: Run) -> str:
    if run.windows is None or not run.windows.num_rows:
        return ""
    names = {device_key(d): _name(t, d) for d in run.devices}
    svg = charts.uplink_chart(t, run.windows, names)
    total = sum(float(d.get("upload_bytes", 0)) for d in run.devices)
    top = max(run.devices, key=lambda d: float(d.get("upload_bytes", 0)), default=None)
    line = ""
    if top is not None and total > 0:
        line = t._("{who} sent {share} of everything uploaded to the internet ({size} of {total}).").format(
            who=_name(t, top), share=t.pct(float(top["upload_bytes"]) / total), size=t.size(float(top["upload_bytes"])),
            total=t.size(total))
    return ("<section id='uplink'><h2>" + _h(t._('Who uses the uplink')) + f"</h2><p>{_h(line)}</p>"
            f"<figure class='chart uplink'>{svg}<figcaption>" + _h(t._('Upload to internet addresses per analysis window, stacked by device.')) + "</figcaption></figure></section>")


def _inventory(t: L10n, run: Run) -> str:
    alerted = {device_key(d) for d in run.alerted}
    order = sorted(run.devices, key=lambda d: (device_key(d) not in alerted, -float(d.get("upload_bytes", 0))))
    rows = []
    for d in order:
        key = device_key(d)
        conf = t.pct(float(d["type_confidence"])) if d.get("type_confidence") is not None else ""
        tags = "".join(f"<span class='tag'>{_h(words.category_short(t, c))}</span>"
                       for c in dict.fromkeys(a["category"] for a in d.get("alerts", [])))
        rows.append(f"<tr><td class='mono'>{_h(', '.join(d.get('ips', [])[:2]) or '—')}</td><td class='mono'>{_h(d.get('mac') or '—')}</td>"
                    f"<td>{_h(d.get('vendor') or '—')}</td><td>{_h(words.device_type(t, d.get('device_type')))}</td>"
                    f"<td class='num'>{_h(conf)}</td><td>{_h('; '.join(d.get('evidence', [])[:3]) or '—')}</td>"
                    f"<td class='num'>" + _h(t.size(float(d.get('upload_bytes', 0)))) + f"</td><td>{tags}</td></tr>")
        del key
    head = ("<tr><th>" + _h(t._('IP')) + "</th><th>" + _h(t._('MAC')) + "</th><th>" + _h(t._('vendor')) + "</th><th>" + _h(t._('type')) + "</th>"
            "<th class='num'>" + _h(t._('confidence')) + "</th><th>" + _h(t._('why we think so')) + "</th>"
            "<th class='num'>" + _h(t._('uploaded')) + "</th><th>" + _h(t._('alerts')) + "</th></tr>")
    return ("<section id='inventory'><h2>" + _h(t._('Devices on the network')) + "</h2>"
            "<p>" + _h(t.n_('{n} device seen.', '{n} devices seen.', len(run.devices)).format(n=t.num(len(run.devices)))) + f"</p>"
            f"<table class='inventory'>{head}{''.join(rows)}</table></section>")


def compare_section(t: L10n, c: Comparison) -> str:
    parts = ["<section id='compare'><h2>" + _h(t._('After the fix')) + "</h2>"]
    if c.after_span:
        parts.append("<p>" + _h(t._("Compared with a capture from {t0} to {t1}.").format(
            t0=t.when(c.after_span[0]), t1=t.when(c.after_span[1]))) + "</p>")
    if not c.devices:
        parts.append("<p>" + _h(t._('No device was alerted before or after.')) + "</p>")
    for d in c.devices:
        head = words.upper_first(words.who(t, {"ips": [d.ip] if d.ip else [], "mac": d.key, "vendor": d.vendor, "device_type": d.device_type}))
        parts.append(f"<div class='change' id='compare-{_anchor(d.key)}'><h3>{_h(head)} <span class='mono'>{_h(d.key)}</span></h3>")
        parts.append(f"<p class='status-{d.verdict}'>{_h(words.verdict(t, d))}</p><ul>")
        parts += [f"<li>{_h(words.behaviour_line(t, b.category, b.stopped))}</li>" for b in d.behaviours]
        parts += ["<li class='status-still'>" + _h(t._('New after the fix: {what}').format(what=words.category_short(t, c_))) + "</li>"
                  for c_, _ in d.new_alerts]
        parts.append(f"<li>{_h(words.upload_line(t, d))}</li>")
        parts.append(f"<li class='inbound'>{_h(words.inbound_line(t, d.inbound_after, silent=d.silent))}</li></ul>")
        if d.inbound_after.top_sources:
            rows = "".join(f"<tr><td class='mono'>{_h(ip)}</td><td class='num'>" + _h(t.num(n)) + "</td></tr>"
                           for ip, n in d.inbound_after.top_sources)
            parts.append("<table class='inbound'><tr><th>" + _h(t._('from (internet address)')) + "</th>"
                         "<th class='num'>" + _h(t._('attempts')) + f"</th></tr>{rows}</table>")
        parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)


def _method(t: L10n, run: Run) -> str:
    stats = run.stats
    items = [t._("Captured traffic: {packets} packets, {size}, {files} capture file(s).").format(
                 packets=t.num(int(stats.get("packets", 0))), size=t.size(float(stats.get("bytes", 0))),
                 files=t.num(int(stats.get("files", 0)))),
             t._("Each alert names the capture file and the packet number where the behaviour starts: open the capture "
                 "in Wireshark and go to that packet (Go → Go to Packet)."),
             t._("`iotwatch evidence` writes the offending packets of each device as a pcapng with the SHA-256 of every "
                 "file, so anyone can check them independently.")]
    return ("<section id='method'><h2>" + _h(t._('How to check this report')) + "</h2><ul>"
            + "".join(f"<li>{_h(x)}</li>" for x in items) + "</ul></section>")


def render(run: Run, t: L10n, after: Run | None = None) -> str:
    """The report as one HTML document."""
    span = run.span
    when = (t._("Traffic from {t0} to {t1}").format(t0=t.when(span[0]), t1=t.when(span[1])) if span else "")
    body = ["<h1>" + _h(t._('Network audit report')) + "</h1>",
            f"<p class='sub'>{_h(when)} · {_h(run.folder.name)}</p>",
            _verdict(t, run), _uplink(t, run), _inventory(t, run)]
    body += [_device_section(t, run, d) for d in run.alerted]
    if after is not None:
        body.append(compare_section(t, compare(run, after)))
    body.append(_method(t, run))
    body.append("<footer>" + _h(t._('Written by iotwatch {version}. Times are in {zone}.').format(version=__version__, zone=t.zone_name(span[0] if span else 0.0))) + "</footer>")
    return ("<!DOCTYPE html>\n"
            f"<html lang='{t.lang}'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<meta name='generator' content='iotwatch {__version__}'>"
            f"<title>" + _h(t._('Network audit report')) + f" — {_h(run.folder.name)}</title>"
            f"<style>{CSS}</style></head><body><main>\n" + "\n".join(x for x in body if x) + "\n</main></body></html>\n")


def write_report(folder: str | Path, *, lang: str = "ja", out: str | Path | None = None, after: str | Path | None = None,
                 tz: str = "") -> Path:
    """Write the report of the output ``folder`` (and the comparison with ``after``) to ``out``
    (default ``folder/report.LANG.html``)."""
    run = load(folder)
    t = l10n(lang, tz)
    later = load(after) if after is not None else None
    html = render(run, t, later)
    path = Path(out) if out is not None else run.folder / f"report.{lang}.html"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html, encoding="utf-8")
    except OSError as e:
        raise OutputError(f"{path}: cannot write: {e.strerror or e}") from None
    return path
