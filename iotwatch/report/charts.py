"""The report's charts: matplotlib, rendered offline to SVG and embedded in the HTML.

Text is drawn as paths (matplotlib's default ``svg.fonttype``), so the SVG needs no font where it
is opened; Japanese needs a font with its glyphs where it is drawn: Noto Sans CJK JP
(Debian ``fonts-noto-cjk``, installed by ``make sysdeps``). Without one, Japanese charts keep
their text as SVG text, which the browser draws with the reader's fonts (:func:`text_as_paths`).
"""

from __future__ import annotations

import functools
import io
import re
from datetime import UTC, datetime
from typing import Any

import numpy as np

from .i18n import L10n

CJK_FONTS = ("Noto Sans CJK JP", "Noto Sans JP", "IPAexGothic", "IPAGothic", "TakaoGothic")
COLORS = ("#c0392b", "#2874a6", "#239b56", "#b9770e", "#7d3c98", "#148f77", "#5d6d7e", "#a04000")
OTHERS = "#bfc9ca"
CATEGORY_COLORS = {"scan": "#e67e22", "bruteforce": "#8e44ad", "flood": "#c0392b", "exfil": "#cb4335", "c2": "#2e4053"}


@functools.cache
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("svg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "iotwatch", "svg.fonttype": "path", "font.size": 9,
                         "axes.spines.top": False, "axes.spines.right": False, "axes.titleweight": "bold"})
    return plt


@functools.cache
def font_family(lang: str) -> list[str]:
    """Font families to draw ``lang`` with (a CJK font first for Japanese)."""
    _pyplot()
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    if lang == "ja":
        cjk = [f for f in CJK_FONTS if f in names]
        if not cjk:  # matplotlib's font list may predate the font's installation: scan once more
            font_manager.fontManager = font_manager._load_fontmanager(try_read_cache=False)
            names = {f.name for f in font_manager.fontManager.ttflist}
            cjk = [f for f in CJK_FONTS if f in names]
        return [*cjk, "DejaVu Sans"]
    return ["DejaVu Sans"]


def text_as_paths(lang: str) -> bool:
    """True when the chart text can be drawn here as paths: always in English, in Japanese when a
    CJK font is installed."""
    return lang != "ja" or font_family(lang)[0] in CJK_FONTS


def _setup(lang: str) -> Any:
    plt = _pyplot()
    plt.rcParams["font.family"] = font_family(lang)
    plt.rcParams["svg.fonttype"] = "path" if text_as_paths(lang) else "none"
    return plt


def _svg(fig: Any, title: str) -> str:
    import warnings

    plt = _pyplot()
    buf = io.StringIO()
    with warnings.catch_warnings():  # "Glyph missing" when Japanese is left to the browser's fonts
        warnings.simplefilter("ignore", UserWarning)
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": "iotwatch"})
    plt.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    # an accessible name, and ids unique per chart when several share a page
    from html import escape

    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{escape(title)}" ', 1)
    import hashlib

    key = "c" + hashlib.sha1(title.encode()).hexdigest()[:8]
    return re.sub(r'(id="|url\(#|href="#)([A-Za-z_][\w.-]*)', lambda m: f"{m.group(1)}{key}-{m.group(2)}", svg)


def _times(t: L10n, starts: np.ndarray) -> list[datetime]:
    zone = t.zone
    return [datetime.fromtimestamp(float(s), UTC).astimezone(zone).replace(tzinfo=None) for s in starts]


def _time_axis(ax: Any, t: L10n, starts: np.ndarray) -> None:
    import matplotlib.dates as mdates

    span = float(starts.max() - starts.min()) if len(starts) else 0.0
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=10))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M" if span > 1800 else "%H:%M:%S"))
    if len(starts):
        ax.set_xlabel(t._("time ({zone})").format(zone=t.zone_name(float(starts[0]))))


def uplink_chart(t: L10n, windows: Any, names: dict[str, str], top: int = 6) -> str:
    """Upload to the internet over time, stacked by device (Mbit/s per window)."""
    plt = _setup(t.lang)
    title = t._("Upload to the internet over time, by device")
    dev = np.array(windows.column("device").to_pylist(), dtype=object)
    start = windows.column("window_start").to_numpy()
    width = windows.column("window_s").to_numpy()
    up = windows.column("upload_bytes").to_numpy().astype(np.float64)
    slots = np.unique(start)
    w = float(width[0]) if len(width) else 60.0
    totals = {k: float(up[dev == k].sum()) for k in np.unique(dev)}
    ranked = [k for k, v in sorted(totals.items(), key=lambda kv: -kv[1]) if v > 0]
    shown, rest = ranked[:top], ranked[top:]
    fig, ax = plt.subplots(figsize=(9, 3.4))
    x = _times(t, slots)
    bottom = np.zeros(len(slots))
    idx = {s: i for i, s in enumerate(slots.tolist())}
    series: list[tuple[str, np.ndarray, str]] = []
    for i, k in enumerate(shown):
        y = np.zeros(len(slots))
        sel = dev == k
        for s, v in zip(start[sel].tolist(), up[sel].tolist(), strict=True):
            y[idx[s]] += v * 8 / w / 1e6
        series.append((names.get(k, k), y, COLORS[i % len(COLORS)]))
    if rest:
        y = np.zeros(len(slots))
        sel = np.isin(dev, rest)
        for s, v in zip(start[sel].tolist(), up[sel].tolist(), strict=True):
            y[idx[s]] += v * 8 / w / 1e6
        series.append((t._("{n} other devices").format(n=t.num(len(rest))), y, OTHERS))
    from datetime import timedelta

    bar_w = timedelta(seconds=w * 0.9)
    for label, y, color in series:
        ax.bar(x, y, width=bar_w, bottom=bottom, label=label, color=color, align="edge")
        bottom += y
    if not series:
        ax.text(0.5, 0.5, t._("no upload to the internet"), transform=ax.transAxes, ha="center", va="center")
    ax.set_ylabel(t._("Mbit/s (average per window)"))
    ax.set_title(title, loc="left")
    _time_axis(ax, t, slots)
    if series:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return _svg(fig, title)


def device_chart(t: L10n, windows: Any, key: str, alerts: list[dict[str, Any]], baseline_bps: float | None) -> str:
    """One device: its upload per window, the alerts' spans, and its normal upload."""
    plt = _setup(t.lang)
    title = t._("Timeline of {device}").format(device=key)
    sel = np.array(windows.column("device").to_pylist(), dtype=object) == key
    start = windows.column("window_start").to_numpy()[sel]
    w = float(windows.column("window_s").to_numpy()[sel][0]) if sel.any() else 60.0
    up = windows.column("upload_bytes").to_numpy()[sel].astype(np.float64) * 8 / w / 1e6
    pkts = windows.column("packets_out").to_numpy()[sel].astype(np.float64) / w
    order = np.argsort(start)
    start, up, pkts = start[order], up[order], pkts[order]
    from datetime import timedelta

    fig, (band, ax) = plt.subplots(2, 1, figsize=(9, 3.2 + 0.25 * len(alerts)), sharex=True,
                                   gridspec_kw={"height_ratios": [0.6 + 0.3 * len(alerts), 2.6], "hspace": 0.08})
    ax.bar(_times(t, start), up, width=timedelta(seconds=w * 0.9), align="edge", color="#2874a6",
           label=t._("upload to the internet (Mbit/s)"))
    ax.set_ylabel(t._("Mbit/s"))
    ax2 = ax.twinx()
    ax2.plot([x + timedelta(seconds=w / 2) for x in _times(t, start)], pkts, color="#117a65", marker="o", ms=3,
             label=t._("packets sent per second"))
    ax2.set_ylabel(t._("packets/s"))
    ax2.spines["right"].set_visible(True)
    if baseline_bps:
        ax.axhline(baseline_bps / 1e6, color="#7f8c8d", ls="--", lw=1,
                   label=t._("its normal upload ({rate})").format(rate=t.mbps(baseline_bps)))
    labels = []
    for i, a in enumerate(alerts):
        cat = a["alert"]["category"]
        t0, t1 = _times(t, np.array([float(a["first_ts"]), float(a["last_ts"])]))
        color = CATEGORY_COLORS.get(cat, "#c0392b")
        band.barh(i, max(t1 - t0, timedelta(seconds=1)), left=t0, height=0.7, color=color)
        ax.axvline(t0, color=color, lw=0.8, ls=":")
        labels.append(_short(t, cat))
    band.set_yticks(range(len(alerts)), labels)
    band.invert_yaxis()
    band.spines["left"].set_visible(False)
    band.tick_params(axis="y", length=0)
    band.set_title(title, loc="left")
    _time_axis(ax, t, start)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper left", bbox_to_anchor=(1.08, 1.0), fontsize=7.5, frameon=False)
    return _svg(fig, title)


def _short(t: L10n, cat: str) -> str:
    from .words import category_short

    return category_short(t, cat)
