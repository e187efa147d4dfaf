"""Entry point of the ``hyok`` command: one group per part of the system.

Each command's module is imported only when that command runs, because the
modules together take seconds and tens of MiB to import, and a command such
as ``hyok encrypt-file`` needs only its own. ``hyok --help`` imports them all
to list them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Final

import click

from hyok import __version__
from hyok.common.errors import HyokError

__all__ = ["cli", "main"]


def _up() -> click.Command:
    from hyok.cli import up

    return up.up


def _kms() -> click.Command:
    from hyok.cli import kms, kms_audit, kms_calls, kms_lifecycle

    if "audit" not in kms.kms.commands:
        kms_calls.register(kms.kms)
        kms.kms.add_command(kms_audit.audit)
        for command in kms_lifecycle.COMMANDS:
            kms.kms.add_command(command)
    return kms.kms


def _xki() -> click.Command:
    from hyok.cli import xki

    return xki.xki


def _kmi() -> click.Command:
    from hyok.cli import kmi

    return kmi.kmi


def _ram() -> click.Command:
    from hyok.cli import ram

    return ram.ram


def _sts() -> click.Command:
    from hyok.cli import ram

    return ram.sts


def _file_command(name: str) -> Callable[[], click.Command]:
    def load() -> click.Command:
        from hyok.cli import files

        return next(command for command in files.COMMANDS if command.name == name)

    return load


_LOADERS: Final[dict[str, Callable[[], click.Command]]] = {
    "up": _up,
    "kms": _kms,
    "xki": _xki,
    "kmi": _kmi,
    "ram": _ram,
    "sts": _sts,
    "encrypt-file": _file_command("encrypt-file"),
    "decrypt-file": _file_command("decrypt-file"),
}


class _LazyGroup(click.Group):
    """A group that imports a command's module the first time the command is looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LOADERS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in _LOADERS:
            command = _LOADERS[cmd_name]()
            self.add_command(command, cmd_name)
        return command


@click.group(cls=_LazyGroup)
@click.version_option(__version__, prog_name="hyok")
def cli() -> None:
    """hyok: Hold-Your-Own-Key key management."""


def _register() -> None:
    """Load every command now, for callers that invoke ``cli`` with click's test runner."""
    for name, load in _LOADERS.items():
        if name not in cli.commands:
            cli.add_command(load(), name)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except HyokError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(1)
