"""The report in a real browser: Debian's headless Chromium opens it in both languages with no
console message (a Content-Security-Policy violation, a failed load or a script error would
be one), the rendered DOM has its sections and charts, and a screenshot is kept as an artefact
(build/artefacts/, or $IOTWATCH_ARTEFACTS)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from incident import incident

from iotwatch.outdir import load
from iotwatch.report import write_report

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium") if p and Path(p).exists()), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (run `make sysdeps`)")
ARTEFACTS = Path(os.environ.get("IOTWATCH_ARTEFACTS", ROOT / "build" / "artefacts"))
# how Chromium logs a page's console with --enable-logging=stderr: "...:INFO:CONSOLE:1] "text", source: ..."
CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\]\s*(.*)")


def chromium(url: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
           "--disable-extensions", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
           "--hide-scrollbars", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def console(stderr: str) -> list[str]:
    return [m.group(1) for m in map(CONSOLE.search, stderr.splitlines()) if m]


@needs_chromium
def test_the_console_check_sees_errors(tmp_path: Path) -> None:
    """The check below can fail: a page that loads from the network and runs a script under the
    report's policy produces console messages."""
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><head><meta http-equiv='Content-Security-Policy' content=\"default-src "
                    "'none'; style-src 'unsafe-inline'; img-src data:\"></head><body>"
                    "<img src='http://192.0.2.1/x.png'><script>console.error('boom')</script></body></html>")
    r = chromium(page.as_uri(), tmp_path / "profile", "--dump-dom")
    msgs = console(r.stderr)
    assert any("192.0.2.1" in m for m in msgs) and any("inline script" in m for m in msgs), r.stderr[-2000:]


@needs_chromium
@pytest.mark.parametrize("lang", ["ja", "en"])
def test_report_opens_in_chromium(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, lang: str) -> None:
    base = tmp_path_factory.getbasetemp()
    _, before = incident(base, "before")
    _, after = incident(base, "after")
    html = write_report(before, lang=lang, out=tmp_path / f"report.{lang}.html", after=after)
    r = chromium(html.as_uri(), tmp_path / "profile", "--dump-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    assert console(r.stderr) == []
    dom = r.stdout
    rec = load(before).alerted[0]
    for section in ("verdict", "uplink", "inventory", "device-" + rec["mac"].replace(":", "-"), "compare", "method"):
        assert re.search(rf"""<section [^>]*id="{section}\"""", dom), section
    charts = re.findall(r'<figure class="chart (\w+)"><svg[^>]*role="img"', dom)
    assert charts == ["uplink", "timeline"]
    assert f'lang="{lang}"' in dom
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTEFACTS / f"report-{lang}.png"
    shot.unlink(missing_ok=True)
    r = chromium(html.as_uri(), tmp_path / "profile", f"--screenshot={shot}", "--window-size=1100,1800")
    assert r.returncode == 0 and console(r.stderr) == []
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1100, 1800)
        colours = im.convert("RGB").resize((220, 360)).getcolors(maxcolors=1 << 16)
        assert colours is not None and len(colours) > 50  # text, tables and charts, not a blank page
