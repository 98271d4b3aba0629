"""``iotwatch evidence``, ``iotwatch report`` and ``iotwatch compare``: what an auditor hands over.

Each reads the output folder(s) of ``iotwatch analyze``; the libraries they call
(:mod:`iotwatch.evidence`, :mod:`iotwatch.report`, :mod:`iotwatch.compare`) are imported only
when the command runs, so ``analyze`` never pays for matplotlib or Babel.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import IotwatchError
from .common import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, say, user_errors

if TYPE_CHECKING:
    from ..evidence import Pack

LANGS = ("en", "ja")

OutDir = Annotated[Path, typer.Argument(help="An output folder of `iotwatch analyze`.", show_default=False)]
Captures = Annotated[list[Path], typer.Option("--capture", help="A source capture, when it is no longer where "
                                              "the analysis read it (matched by file name). Repeat for several.")]
Context = Annotated[float, typer.Option("--context", help="Seconds of the device's traffic before its first "
                                        "alert to include.")]
Lang = Annotated[str, typer.Option("--lang", help="Language of the words written: ja or en.")]


def _lang(lang: str) -> str:
    if lang not in LANGS:
        raise typer.BadParameter(f"{lang!r} is not one of {', '.join(LANGS)}", param_hint="--lang")
    return lang


def evidence_command(folder: OutDir, out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Evidence folder (default: OUT_DIR/evidence).")] = None,
        capture: Captures = [],  # noqa: B006 - typer reads it, never mutated
        context: Context = 5.0) -> None:
    """Write the evidence pack: per alerted device its offending packets (pcapng), the flows
    involved (CSV), and a manifest with the sha256 of every file and of the source captures."""
    if context < 0:
        raise typer.BadParameter("must not be negative", param_hint="--context")
    with user_errors():
        typer.echo(describe_pack(make_evidence(folder, out, capture, context)))


def make_evidence(folder: Path, out: Path | None, captures: list[Path], context: float) -> Pack:
    from ..evidence import write_pack

    return write_pack(folder, out, captures=captures, context_s=context)


def describe_pack(pack: Pack) -> str:
    if not pack.devices:
        return f"no alert: nothing to pack → {pack.folder}"
    lines = [f"evidence pack → {pack.folder} (manifest.json, SHA256SUMS)"]
    for d in pack.manifest["devices"]:
        lines.append(f"  {d['device']}: {d['packets']:,} packets ({d['context_packets']:,} of context), "
                     f"{d['flows']:,} flows → {d['folder']}/")
    return "\n".join(lines)


def after_analysis(out: Path, *, report: bool, evidence: bool, quiet: bool) -> int:
    """``analyze --report/--evidence``: the report in both languages and the evidence pack of the
    run just written. Returns EXIT_ERROR on failure, 0 otherwise."""
    try:
        if evidence:
            pack = make_evidence(out, None, [], 5.0)
            if not quiet:
                typer.echo(describe_pack(pack))
        if report:
            for lang in LANGS:
                path = make_report(out, lang, None)
                if not quiet:
                    typer.echo(f"report ({lang}) → {path}")
    except IotwatchError as e:
        say(f"iotwatch: error: {e}")
        return EXIT_ERROR
    return 0


def report_command(folder: OutDir, lang: Lang = "ja",
                   out: Annotated[Path | None, typer.Option("--out", "-o", help="HTML file to write (default: "
                                                             "OUT_DIR/report.LANG.html).")] = None,
                   after: Annotated[Path | None, typer.Option("--after", help="Output folder of a later run "
                                                              "(after the fix): adds the before/after section.")] = None,
                   tz: Annotated[str, typer.Option("--tz", help="Time zone of the report's times, e.g. Asia/Tokyo "
                                                   "(default: Asia/Tokyo in Japanese, UTC in English).")] = "",
                   ) -> None:
    """Write the audit report: one self-contained HTML file (no network needed to open it)."""
    _lang(lang)
    if tz:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise typer.BadParameter(f"{tz!r} is not a time zone name (like Asia/Tokyo or UTC)",
                                     param_hint="--tz") from None
    with user_errors():
        path = make_report(folder, lang, out, after, tz)
    typer.echo(f"report ({lang}) → {path}")


def make_report(folder: Path, lang: str, out: Path | None, after: Path | None = None, tz: str = "") -> Path:
    from ..report import write_report

    return write_report(folder, lang=lang, out=out, after=after, tz=tz)


def ensure_analysed(path: Path, out: Path | None, uplink_mbps: float | None) -> Path:
    """``path`` itself when it is an output folder of ``analyze``; otherwise analyse the captures
    at ``path`` into ``out`` (default: beside them, ``NAME.iotwatch/``) and return that folder."""
    from ..errors import InputError
    from ..settings import Settings
    from .analyze import run_analysis

    if path.is_dir() and (path / "events.jsonl").is_file():
        return path
    if not path.exists():
        raise InputError(path, "no such file or folder")
    dest = out if out is not None else path.with_name(path.name.split(".")[0] + ".iotwatch")
    code = run_analysis([path], dest, Settings(uplink_mbps=uplink_mbps), quiet=True)
    if code not in (EXIT_OK, EXIT_PARTIAL):
        raise typer.Exit(code)
    return dest


def compare_command(before: Annotated[Path, typer.Argument(help="Output folder of `iotwatch analyze`, or "
                                                           "capture(s), before the fix.", show_default=False)],
                    after: Annotated[Path, typer.Argument(help="The same after the fix.", show_default=False)],
                    out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for the analyses of "
                                                             "captures given (before/, after/) and compare.json.")] = None,
                    lang: Lang = "en",
                    uplink_mbps: Annotated[float | None, typer.Option("--uplink-mbps", help="The site's uplink, "
                                                                      "Mbit/s (when captures are analysed).")] = None,
                    ) -> None:
    """Before and after the fix: did each alerted behaviour stop, how did the upload change, and
    what still arrives from outside."""
    _lang(lang)
    from ..compare import compare
    from ..outdir import load
    from ..report.i18n import l10n
    from ..report.words import describe

    if uplink_mbps is not None and uplink_mbps <= 0:
        raise typer.BadParameter("must be positive", param_hint="--uplink-mbps")
    with user_errors():
        b = load(ensure_analysed(before, out / "before" if out else None, uplink_mbps))
        a = load(ensure_analysed(after, out / "after" if out else None, uplink_mbps))
        result = compare(b, a)
        if out is not None:
            result.write(out / "compare.json")
    typer.echo(describe(result, l10n(lang)))
