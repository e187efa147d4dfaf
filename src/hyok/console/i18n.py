"""Languages of the console: message catalogues, the choice of language and dates.

The catalogues are the gettext ``.po`` files under ``locale/<locale>/LC_MESSAGES``.
They are compiled in memory when first used, so an editable install and a
wheel need no build step and no ``.mo`` file can go stale. Fuzzy entries
are not used. ``python -m hyok.console.catalog`` extracts and checks them.

The language comes from the language cookie, else from ``Accept-Language``,
else English. Dates are shown in UTC, with the zone named, in the format of
the language.
"""

from __future__ import annotations

import functools
import gettext
import io
from datetime import UTC, datetime
from importlib import resources
from typing import Final

from babel import Locale
from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

__all__ = [
    "DEFAULT_LOCALE",
    "DOMAIN",
    "LOCALES",
    "format_time",
    "locale_from_header",
    "translations",
]

DOMAIN: Final = "messages"
DEFAULT_LOCALE: Final = "en"
LOCALES: Final = {"en": "English", "zh_CN": "简体中文"}
"""The languages of the console, each with its own name for the language switch."""

_LANGUAGE_TAGS: Final = {"en": "en", "zh_CN": "zh-CN"}
_MAX_ACCEPT_LANGUAGE: Final = 512


@functools.cache
def translations(locale: str) -> gettext.NullTranslations:
    """Return the compiled catalogue of ``locale``; English returns the message IDs themselves."""
    if locale not in LOCALES:
        raise ValueError(f"the console has no catalogue for locale {locale!r}")
    source = resources.files("hyok.console").joinpath(
        "locale", locale, "LC_MESSAGES", f"{DOMAIN}.po"
    )
    with source.open("rb") as po_file:
        catalog = read_po(po_file, locale=locale, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def language_tag(locale: str) -> str:
    """Return the BCP 47 tag of a console locale, for the ``lang`` attribute."""
    return _LANGUAGE_TAGS[locale]


def locale_from_header(accept_language: str | None) -> str:
    """Pick the console locale that best matches an ``Accept-Language`` header.

    Any Chinese tag picks Simplified Chinese, the only Chinese catalogue.
    """
    if not accept_language:
        return DEFAULT_LOCALE
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept_language[:_MAX_ACCEPT_LANGUAGE].split(",")):
        tag, _, parameters = item.strip().partition(";")
        quality = 1.0
        parameter = parameters.strip()
        if parameter.startswith("q="):
            try:
                quality = float(parameter[2:])
            except ValueError:
                quality = 0.0
        if quality > 0:
            ranked.append((-quality, position, tag.strip().lower()))
    for _quality, _position, tag in sorted(ranked):
        primary = tag.split("-")[0]
        if primary == "zh":
            return "zh_CN"
        if primary == "en":
            return "en"
    return DEFAULT_LOCALE


def format_time(value: datetime, locale: str) -> str:
    """Format a timezone-aware time in UTC in the style of ``locale``, naming the zone."""
    if value.utcoffset() is None:
        raise ValueError("format_time takes only timezone-aware datetimes")
    return (
        format_datetime(
            value.astimezone(UTC), format="medium", tzinfo=UTC, locale=Locale.parse(locale)
        )
        + " UTC"
    )
