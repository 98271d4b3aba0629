"""Words, numbers, dates and units in the reader's language (English or Japanese).

Every sentence of the report and of ``iotwatch compare`` goes through gettext: the English text
is the message id, the Japanese is in ``locale/ja/LC_MESSAGES/iotwatch.po`` (compiled in memory
with Babel when first used; ``make messages`` re-extracts the ids and updates the catalog).
Numbers, percentages, dates, durations and units are formatted by Babel from CLDR data, so
separators, date order, time zone names and unit words follow the language.
"""

from __future__ import annotations

import functools
import gettext
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

LANGS = ("en", "ja")
DOMAIN = "iotwatch"
LOCALE_DIR = Path(__file__).with_name("locale")
#: the time zone a report is written in when none is given: the site's (the incident's is in Japan)
DEFAULT_TZ = {"en": "UTC", "ja": "Asia/Tokyo"}


@functools.cache
def translations(lang: str) -> gettext.NullTranslations:
    """The gettext catalog of ``lang`` (English is the message ids themselves)."""
    if lang == "en":
        return gettext.NullTranslations()
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    po = LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
    with open(po, "rb") as f:
        catalog = read_po(f, locale=lang)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return gettext.GNUTranslations(buf)


@dataclass(frozen=True, slots=True)
class L10n:
    """Formatting for one language and time zone."""

    lang: str
    tz: str = ""

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz or DEFAULT_TZ[self.lang])

    def _(self, message: str) -> str:
        return translations(self.lang).gettext(message)

    def n_(self, singular: str, plural: str, n: int) -> str:
        return translations(self.lang).ngettext(singular, plural, n)

    def sentences(self, *parts: str) -> str:
        """Sentences one after the other: a space between them in English, none in Japanese."""
        return ("" if self.lang == "ja" else " ").join(p for p in parts if p)

    def num(self, x: float, digits: int = 0) -> str:
        from babel.numbers import format_decimal

        fmt = "#,##0" + ("." + "0" * digits if digits else "")
        return format_decimal(x, format=fmt, locale=self.lang)

    def pct(self, x: float) -> str:
        from babel.numbers import format_percent

        return format_percent(x, format="#,##0%" if x >= 0.1 or x == 0 else "#,##0.0%", locale=self.lang)

    def times(self, x: float) -> str:
        """A ratio such as "× 4,979" ("4,979倍" in Japanese)."""
        digits = 0 if x >= 10 or x == 0 else 1 if x >= 0.1 else 3
        return self._("{x}×").format(x=self.num(x, digits))

    def size(self, n: float) -> str:
        from babel.units import format_unit

        for unit, size in (("digital-gigabyte", 1e9), ("digital-megabyte", 1e6), ("digital-kilobyte", 1e3)):
            if abs(n) >= size:
                return format_unit(round(n / size, 1), unit, length="short", locale=self.lang)
        return format_unit(int(n), "digital-byte", length="short", locale=self.lang)

    def mbps(self, bits_per_s: float) -> str:
        from babel.units import format_compound_unit, format_unit

        per = format_unit("", "duration-second", length="narrow", locale=self.lang).strip()
        unit, v = ("digital-megabit", bits_per_s / 1e6) if bits_per_s >= 1e5 else ("digital-kilobit", bits_per_s / 1e3)
        return format_compound_unit(round(v, 2 if v < 10 else 1), unit, denominator_value=per,
                                    length="short", locale=self.lang) or ""

    def when(self, ts: float, *, seconds: bool = True) -> str:
        from babel.dates import format_datetime

        fmt = "medium" if seconds else "short"
        return format_datetime(datetime.fromtimestamp(ts, UTC), fmt, tzinfo=self.zone, locale=self.lang) + \
            " " + self.zone_name(ts)

    def time(self, ts: float) -> str:
        from babel.dates import format_time

        return format_time(datetime.fromtimestamp(ts, UTC), "medium", tzinfo=self.zone, locale=self.lang)

    def zone_name(self, ts: float) -> str:
        from babel.dates import get_timezone_name

        name = datetime.fromtimestamp(ts, self.zone).tzname() or ""
        if name in ("UTC", "JST"):
            return name
        return get_timezone_name(datetime.fromtimestamp(ts, self.zone), width="short", locale=self.lang)

    def duration(self, seconds: float) -> str:
        from babel.dates import format_timedelta

        return format_timedelta(timedelta(seconds=seconds), threshold=1.5, locale=self.lang)


def l10n(lang: str, tz: str = "") -> L10n:
    if lang not in LANGS:
        raise ValueError(f"language {lang!r} is not one of {', '.join(LANGS)}")
    return L10n(lang, tz)
