"""Entry point of the ``hyok`` command: one group per part of the system."""

from __future__ import annotations

import sys

import click

from hyok import __version__
from hyok.common.errors import HyokError

__all__ = ["cli", "main"]


@click.group()
@click.version_option(__version__, prog_name="hyok")
def cli() -> None:
    """hyok: Hold-Your-Own-Key key management."""


def _register() -> None:
    # Imported here so that each subcommand module can import this one.
    from hyok.cli import files, kmi, kms, kms_audit, kms_calls, kms_lifecycle, ram, up, xki

    cli.add_command(up.up)
    cli.add_command(kms.kms)
    cli.add_command(xki.xki)
    cli.add_command(kmi.kmi)
    cli.add_command(ram.ram)
    cli.add_command(ram.sts)
    for command in files.COMMANDS:
        cli.add_command(command)
    kms_calls.register(kms.kms)
    kms.kms.add_command(kms_audit.audit)
    for command in kms_lifecycle.COMMANDS:
        kms.kms.add_command(command)


def main() -> None:
    _register()
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
