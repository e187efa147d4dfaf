"""Reading a new console password for ``hyok ram login-profile`` and ``hyok kms account``.

A password never comes from an option value, which would land in the shell
history and in the process list. It comes from, in this order:

- ``--password-file FILE``: the first line of FILE, or of standard input
  when FILE is ``-``;
- a prompt on the terminal, typed twice without echo, when standard input
  is a terminal;
- the first line of standard input otherwise, for scripts
  (``printf '%s\\n' "$PASSWORD" | hyok ram login-profile create alice``).

The trailing newline is removed; everything else, spaces included, is part
of the password. The policy check happens where the password is stored.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO, Any, Final, TypeVar

import click

from hyok.cli._common import CliError
from hyok.common.secrets import Secret
from hyok.kms.domain.passwords import MAX_PASSWORD_LENGTH, PASSWORD_RULES

__all__ = ["password_file_option", "read_new_password"]

_F = TypeVar("_F", bound=Callable[..., Any])
# A line longer than any valid password is read in full only up to this bound.
_MAX_LINE: Final = 4 * MAX_PASSWORD_LENGTH


def password_file_option(function: _F) -> _F:
    """Add ``--password-file``, which names the file (or ``-``) that contains the new password."""
    return click.option(
        "--password-file",
        type=click.File("r", encoding="utf-8"),
        default=None,
        help=(
            "File whose first line is the new console password; - reads standard input. "
            "Without it the password is prompted for on a terminal, or read from standard "
            f"input. Policy: {PASSWORD_RULES}."
        ),
    )(function)


def _first_line(stream: IO[str], source: str) -> Secret:
    line = stream.readline(_MAX_LINE + 1).rstrip("\r\n")
    if not line:
        raise CliError(f"no password in {source}: write the password on its first line")
    return Secret(line)


def read_new_password(password_file: IO[str] | None) -> Secret:
    """Return the new password from ``--password-file``, a terminal prompt or standard input."""
    if password_file is not None:
        source = "standard input" if password_file.name == "<stdin>" else password_file.name
        return _first_line(password_file, source)
    if not sys.stdin.isatty():
        return _first_line(sys.stdin, "standard input")
    value: str = click.prompt(
        "New console password",
        hide_input=True,
        confirmation_prompt="Repeat the password",
        show_default=False,
    )
    return Secret(value)
