"""Extract, update and check the console's message catalogues (Babel).

Run from anywhere::

    python -m hyok.console.catalog update   # extract messages.pot, merge it into every .po
    python -m hyok.console.catalog check    # fail when a message lacks a zh_CN translation

``update`` takes messages from the Python modules (``_``, ``gettext``,
``ngettext`` and ``N_`` calls, ``view.gettext`` included) and the templates
(``_()`` calls and ``{% trans %}`` blocks). New messages arrive untranslated
in ``zh_CN``, and changed ones as fuzzy, which the console does not use until
a translator confirms them. ``check`` also fails when the catalogues lag
behind the source, so a test runs it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Final

from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.pofile import read_po, write_po

from hyok.console.i18n import DOMAIN, LOCALES

__all__ = ["check", "extract", "main", "update"]

_METHODS: Final = [("**.py", "python"), ("templates/**.html", "jinja2")]
_OPTIONS: Final = {
    "templates/**.html": {"extensions": "jinja2.ext.i18n", "newstyle_gettext": "true"}
}
_TRANSLATED_LOCALES: Final = tuple(locale for locale in LOCALES if locale != "en")


def _package_dir() -> Path:
    return Path(str(resources.files("hyok.console")))


def _po_path(locale: str) -> Path:
    return _package_dir() / "locale" / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


def extract() -> Catalog:
    """Return a template catalogue of every message in the console's source."""
    catalog = Catalog(project="hyok console", domain=DOMAIN, charset="utf-8")
    for filename, lineno, message, comments, context in extract_from_dir(
        str(_package_dir()), method_map=_METHODS, options_map=_OPTIONS, keywords=DEFAULT_KEYWORDS
    ):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


def _read(locale: str) -> Catalog:
    with _po_path(locale).open("rb") as po_file:
        return read_po(po_file, locale=locale, domain=DOMAIN)


def update() -> None:
    """Write ``locale/messages.pot`` and merge it into each locale's ``messages.po``."""
    template = extract()
    with (_package_dir() / "locale" / f"{DOMAIN}.pot").open("wb") as pot_file:
        write_po(pot_file, template, width=100, omit_header=False)
    for locale in LOCALES:
        path = _po_path(locale)
        if path.exists():
            catalog = _read(locale)
            catalog.update(template, update_header_comment=False)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            catalog = Catalog(locale=locale, domain=DOMAIN, project="hyok console")
            catalog.update(template)
        with path.open("wb") as po_file:
            write_po(po_file, catalog, width=100, ignore_obsolete=True)


def check() -> list[str]:
    """Return the problems of the catalogues: missing, untranslated or fuzzy messages."""
    problems: list[str] = []
    source_ids = {message.id for message in extract() if message.id}
    for locale in LOCALES:
        catalog = _read(locale)
        known = {message.id for message in catalog if message.id}
        problems.extend(
            f"{locale}: {_shown(message_id)} is in the source but not in the catalogue; run "
            "'python -m hyok.console.catalog update'"
            for message_id in sorted(source_ids - known, key=str)
        )
        if locale in _TRANSLATED_LOCALES:
            problems.extend(_untranslated(locale, catalog))
    return problems


def _untranslated(locale: str, catalog: Catalog) -> Iterator[str]:
    for message in catalog:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy:
            yield f"{locale}: {_shown(message.id)} is fuzzy: check the translation"
        elif not all(strings):
            yield f"{locale}: {_shown(message.id)} has no translation"


def _shown(message_id: object) -> str:
    text = message_id[0] if isinstance(message_id, tuple) else str(message_id)
    return repr(text if len(text) <= 60 else text[:57] + "...")


def main(argv: list[str] | None = None) -> int:
    """Run ``update`` or ``check``; return the exit status."""
    command = (argv if argv is not None else sys.argv[1:]) or ["check"]
    if command == ["update"]:
        update()
        return 0
    if command == ["check"]:
        problems = check()
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    print("usage: python -m hyok.console.catalog [update|check]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
