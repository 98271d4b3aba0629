"""The audit report: one self-contained HTML page a hospital director can read, in Japanese or
English (docs/report.md).

* :mod:`.html` — the page, from an ``analyze`` output folder (and optionally a later one);
* :mod:`.charts` — matplotlib charts rendered to inline SVG;
* :mod:`.words` — the sentences, built from the alerts' evidence;
* :mod:`.i18n` — gettext catalogs and Babel formatting of numbers, dates and units.

Nothing here is imported by ``analyze`` unless ``--report`` is asked for.
"""

from .html import render, write_report

__all__ = ["render", "write_report"]
