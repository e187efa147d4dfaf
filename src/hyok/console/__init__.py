"""The hyok web console, served by the KMS app under ``/console`` (see :mod:`hyok.console.app`)."""

from hyok.console.app import Console, SignIn, build_console

__all__ = ["Console", "SignIn", "build_console"]
