"""``hyok kms audit``: check and read the KMS's hash-chained audit trail."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click

from hyok.cli._common import CliError, OutputFormat, output_option, print_table
from hyok.cli.kms import _config_options, _load

__all__ = ["audit"]

_MAX_LIST: int = 100_000


@click.group()
def audit() -> None:
    """Check and read the audit trail of every KMS API call."""


def _trail(data_dir: Path | None, config: Path | None) -> Path:
    path = _load(data_dir, config).audit.path
    if not path.is_file():
        raise CliError(
            f"the audit trail {path} does not exist: the KMS writes it from its first request"
        )
    return path


@audit.command("verify")
@_config_options
def verify_trail(data_dir: Path | None, config: Path | None) -> None:
    """Recompute every hash of the trail; exit 1 if an event was edited, removed or reordered."""
    from hyok.kms.audit import verify

    path = _trail(data_dir, config)
    count, chains, problems = verify(path)
    for problem in problems[:50]:
        click.echo(f"line {problem.line}: {problem.reason}", err=True)
    if problems:
        more = " (the first 50 shown)" if len(problems) > 50 else ""
        raise CliError(f"the audit trail {path} does not verify: {len(problems)} problem(s){more}")
    click.echo(f"{path}: {count} events in {chains} chain(s) verified")


def _parse_time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a time: write it as 2026-12-05T10:00:00Z or 2026-12-05",
            param_hint=option,
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@audit.command("list")
@_config_options
@click.option("--key-id", help="Only events that named this key ID.")
@click.option("--principal", help="Only events of this principal ARN (or its account ID).")
@click.option("--action", "action", help="Only events of this API action, such as Encrypt.")
@click.option("--since", help="Only events at or after this time (ISO 8601, UTC by default).")
@click.option("--until", help="Only events before this time (ISO 8601, UTC by default).")
@click.option(
    "--limit",
    type=click.IntRange(1, _MAX_LIST),
    default=100,
    show_default=True,
    help="Show at most this many of the newest matching events.",
)
@output_option
def list_events(
    data_dir: Path | None,
    config: Path | None,
    key_id: str | None,
    principal: str | None,
    action: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    output: OutputFormat,
) -> None:
    """List audit events, oldest first, filtered by key, principal, action and time."""
    from hyok.kms.audit import read_events

    after = _parse_time(since, "--since")
    before = _parse_time(until, "--until")
    path = _trail(data_dir, config)
    matched: list[dict[str, object]] = []
    unreadable = 0
    for _number, event in read_events(path):
        if not event:
            unreadable += 1
            continue
        if key_id and key_id not in (event.get("key_ids") or []):
            continue
        if principal and principal not in (event.get("principal"), event.get("account_id")):
            continue
        if action and event.get("action") != action:
            continue
        if after or before:
            try:
                when = datetime.fromisoformat(str(event.get("time")))
            except ValueError:
                continue
            if (after and when < after) or (before and when >= before):
                continue
        matched.append(event)
    if unreadable:
        click.echo(
            f"warning: {unreadable} line(s) of {path} are not audit events; run "
            "'hyok kms audit verify' to see where",
            err=True,
        )
    if not matched:
        click.echo(
            "No audit event matches. Action names are case-sensitive (Encrypt), and --key-id "
            "takes a key ID or an alias name as the call named it.",
            err=True,
        )
    matched = matched[-limit:]
    if output is OutputFormat.JSON:
        click.echo(json.dumps(matched, indent=2))
        return
    rows = [
        [
            str(event.get("time", "")),
            str(event.get("action", "")),
            str(event.get("outcome", "")),
            str(event.get("code", "")),
            str(event.get("principal", "")),
            ",".join(str(key) for key in event.get("key_ids") or []),  # type: ignore[attr-defined]
            str(event.get("request_id", "")),
        ]
        for event in matched
    ]
    print_table(None, ["Time", "Action", "Outcome", "Code", "Principal", "Keys", "RequestId"], rows)
