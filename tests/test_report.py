"""The audit report and the before/after comparison on the generated hospital incident: every
string translated, numbers and dates per language, nothing loaded from a network, the sections
and charts there, a silent recorder's inbound attempts reported as such, and no report cost on
``analyze``."""

from __future__ import annotations

import csv
import json
import re
import string
import subprocess
import sys
from pathlib import Path

import pytest
from incident import incident

from iotwatch.compare import compare
from iotwatch.outdir import load
from iotwatch.report import render
from iotwatch.report.i18n import LOCALE_DIR, l10n, translations
from iotwatch.report.words import describe

ROOT = Path(__file__).resolve().parents[1]
KANA = re.compile(r"[\u3040-\u30ff]")


def fields(s: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(s) if f}


def test_every_message_has_a_japanese_translation_with_the_same_placeholders() -> None:
    from babel.messages.extract import extract_from_dir
    from babel.messages.pofile import read_po

    ids = {m[2] for m in extract_from_dir(str(ROOT / "iotwatch" / "report"), keywords={"_": None, "n_": (1, 2)})}
    assert len(ids) > 100
    with open(LOCALE_DIR / "ja" / "LC_MESSAGES" / "iotwatch.po", "rb") as f:
        po = read_po(f)
    ja = translations("ja")
    for mid in ids:
        if isinstance(mid, tuple):
            got = ja.ngettext(mid[0], mid[1], 2)
            assert got != mid[1] and fields(got) == fields(mid[1]), mid
        else:
            got = ja.gettext(mid)
            assert mid in po and po[mid].string, f"untranslated: {mid!r}"
            assert fields(got) == fields(mid), mid
            if mid not in ("IP", "MAC", "Mbit/s"):
                assert KANA.search(got) or re.search(r"[\u4e00-\u9fff]", got), (mid, got)


def test_numbers_dates_and_units_follow_the_language() -> None:
    en, ja = l10n("en"), l10n("ja")
    ts = 1754279487.0  # 2025-08-04 03:51:27 UTC
    assert re.fullmatch(r"Aug 4, 2025, 3:51:27\s?AM UTC", en.when(ts)), en.when(ts)
    assert ja.when(ts) == "2025/08/04 12:51:27 JST"
    assert en.num(14549) == "14,549" and ja.num(14549) == "14,549"
    assert en.times(4978.8) == "4,979×" and ja.times(4978.8) == "4,979倍"
    assert en.size(13_827_931) == "13.8 MB"
    assert en.mbps(1.64e6) == "1.64 Mb/s" and en.mbps(1500) == "1.5 kb/s"
    assert ja.duration(83.8) == "84 秒" and en.duration(83.8) == "84 seconds" and en.duration(600) == "10 minutes"
    assert l10n("en", "Asia/Tokyo").when(ts).endswith("12:51:27\u202fPM JST") or "PM JST" in l10n("en", "Asia/Tokyo").when(ts)
    with pytest.raises(ValueError):
        l10n("fr")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.getbasetemp()
    bp, bo = incident(base, "before")
    ap, ao = incident(base, "after")
    return {"before_pcap": bp, "before": bo, "after_pcap": ap, "after": ao}


def test_report_sections_charts_and_no_network(runs: dict[str, Path]) -> None:
    before, after = load(runs["before"]), load(runs["after"])
    rec = before.alerted[0]
    for lang in ("en", "ja"):
        html = render(before, l10n(lang), after)
        assert f"<html lang='{lang}'>" in html
        # self-contained: no script, nothing fetched, and a policy that forbids fetching
        assert "<script" not in html.lower()
        assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html)
        assert "url(http" not in html and "@import" not in html
        assert "default-src 'none'" in html
        for section in ("verdict", "uplink", "inventory", "device-" + rec["mac"].replace(":", "-"), "compare", "method"):
            assert f"id='{section}'" in html, section
        # two charts at least: the uplink by device and the recorder's timeline, drawn as SVG
        assert html.count("<svg") >= 2 and html.count("<figure class='chart") == html.count("<svg")
        # every alert of the recorder is in its evidence table, with its first packet
        for a in before.alerts_of(rec):
            ref = a["evidence"].get("first_packet") or a["evidence"]["alert_packet"]
            assert f"{runs['before_pcap'].name} #{ref['packet']:,}" in html
        assert (KANA.search(html) is not None) == (lang == "ja")
    ja = render(before, l10n("ja"), after)
    assert "ネットワーク監査報告書" in ja and "JST" in ja and "倍" in ja
    en = render(before, l10n("en"), after)
    assert "Network audit report" in en and "Isolate it now" in en


def test_japanese_charts_without_a_cjk_font_leave_text_to_the_browser(runs: dict[str, Path],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from iotwatch.report import charts

    before = load(runs["before"])
    if charts.text_as_paths("ja"):  # Noto Sans CJK JP installed (make sysdeps): the text is drawn as paths
        assert "<text" not in render(before, l10n("ja"))
    monkeypatch.setattr(charts, "CJK_FONTS", ("No Such Font",))
    charts.font_family.cache_clear()
    try:
        html = render(before, l10n("ja"))
    finally:
        charts.font_family.cache_clear()
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", html)
    assert any(KANA.search(x) for x in texts)


def test_compare_silent_recorder_with_inbound_attempts(runs: dict[str, Path]) -> None:
    before, after = load(runs["before"]), load(runs["after"])
    assert after.alerts == []  # knocking on a silent device is nobody's misbehaviour on this network
    c = compare(before, after)
    [d] = c.devices
    rec = before.alerted[0]
    assert d.key == rec["mac"] and d.device_type == "recorder"
    assert {b.category for b in d.behaviours} == {a["alert"]["category"] for a in before.alerts_of(rec)}
    assert all(b.stopped for b in d.behaviours) and d.new_alerts == []
    assert d.verdict == "silent" and d.packets_out_after == 0
    assert d.upload_after_bps == 0.0 and d.upload_ratio == 0.0 and d.upload_before_bps > 100_000
    # the inbound attempts are exactly what the generator sent, none answered
    with open(runs["after_pcap"].with_name("after.labels.tsv"), newline="") as f:
        [victim] = [r for r in csv.DictReader(f, delimiter="\t") if r["behaviour"] == "victim"]
    assert victim["host_mac"] == rec["mac"]
    sent = int(re.match(r"([\d,]+) inbound", victim["evidence"]).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert d.inbound_after.attempts == sent and d.inbound_after.answered == 0
    assert d.inbound_after.sources > 50 and d.inbound_after.ports[0][0] == 23
    text = describe(c, l10n("en"))
    assert "Silent after the fix" in text and f"{sent:,} inbound connection attempts" in text
    assert "not its own behaviour" in text
    ja = describe(c, l10n("ja"))
    assert "沈黙" in ja and f"{sent:,} 件の接続試行" in ja
    for lang, words_ in (("en", "inbound connection attempts"), ("ja", "接続試行")):
        html = render(before, l10n(lang), after)
        part = html[html.index("id='compare'"):]
        assert words_ in part and "status-silent" in part


def test_compare_and_report_cli(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    r = subprocess.run([sys.executable, "-m", "iotwatch", "compare", str(runs["before"]), str(runs["after_pcap"]),
                        "--out", str(out), "--uplink-mbps", "2", "--lang", "ja"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "対策後は沈黙しています" in r.stdout
    saved = json.loads((out / "compare.json").read_text())
    assert saved["devices"][0]["verdict"] == "silent" and (out / "after" / "events.jsonl").exists()
    html = tmp_path / "r.html"
    r = subprocess.run([sys.executable, "-m", "iotwatch", "report", str(runs["before"]), "--lang", "en", "--out",
                        str(html), "--after", str(out / "after")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "id='compare'" in html.read_text()
    r = subprocess.run([sys.executable, "-m", "iotwatch", "report", str(runs["before"]), "--lang", "fr"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--lang" in r.stderr
    r = subprocess.run([sys.executable, "-m", "iotwatch", "report", str(runs["before"]), "--tz", "Mars/Olympus"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--tz" in r.stderr
    r = subprocess.run([sys.executable, "-m", "iotwatch", "report", str(runs["before"]), "--lang", "en", "--tz",
                        "Asia/Tokyo", "--out", str(html)], capture_output=True, text=True)
    assert r.returncode == 0 and "JST" in html.read_text() and "UTC" not in html.read_text()
    r = subprocess.run([sys.executable, "-m", "iotwatch", "report", str(tmp_path / "none")], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_analyze_does_not_import_the_report_libraries() -> None:
    code = ("import sys, iotwatch.cli, iotwatch.cli.analyze, iotwatch.pipeline; "
            "bad = [m for m in ('matplotlib', 'babel', 'iotwatch.report', 'iotwatch.evidence') if m in sys.modules]; "
            "print(bad)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_analyze_report_and_evidence_options(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "o"
    r = subprocess.run([sys.executable, "-m", "iotwatch", "analyze", str(runs["before_pcap"]), "--out", str(out),
                        "--uplink-mbps", "2", "--report", "--evidence"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (out / "report.ja.html").exists() and (out / "report.en.html").exists()
    assert (out / "evidence" / "manifest.json").exists() and "evidence pack" in r.stdout


def test_after_scenario_is_deterministic_and_the_same_site(runs: dict[str, Path], tmp_path: Path) -> None:
    from incident import AFTER

    from iotwatch.synth import generate

    again = generate(AFTER, tmp_path / "after.pcap")
    assert again.pcap.read_bytes() == runs["after_pcap"].read_bytes()

    def hosts(labels: Path) -> dict[str, str]:
        with open(labels, newline="") as f:
            return {r["host_mac"]: r["host_ip"] for r in csv.DictReader(f, delimiter="\t") if r["host_mac"]}

    # the same devices at the same addresses as the incident of the same seed
    assert hosts(runs["after_pcap"].with_name("after.labels.tsv")) == \
        hosts(runs["before_pcap"].with_name("before.labels.tsv"))


def test_incident_runs_follow_the_event_interface(runs: dict[str, Path]) -> None:
    from conftest import CHECK_EVENTS

    if not CHECK_EVENTS.exists():
        pytest.skip("../shared/tools/check_events.py is absent")
    for which in ("before", "after"):
        r = subprocess.run([sys.executable, str(CHECK_EVENTS), str(runs[which])], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
