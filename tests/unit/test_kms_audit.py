"""hyok.kms.audit: the hash chain, its verification and what a tamperer leaves behind."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from hyok.kms.audit import GENESIS, AuditEvent, KmsAuditTrail, read_events, verify


def event(number: int, **changes: object) -> AuditEvent:
    fields: dict[str, object] = {
        "request_id": f"REQ-{number}",
        "account_id": "1234567890123456",
        "principal": "acs:ram::1234567890123456:root",
        "access_key_id": "LTAI5tQ9FZ3wZmbm8YAkUJbE",
        "source_ip": "127.0.0.1",
        "version": "2016-01-20",
        "action": "Encrypt",
        "key_ids": ["key-a"],
        "outcome": "success",
        "code": "OK",
        "latency_ms": 1.25,
    }
    fields.update(changes)
    return AuditEvent(**fields)  # type: ignore[arg-type]


def write(path: Path, count: int) -> None:
    trail = KmsAuditTrail(path)
    for number in range(count):
        trail.record(event(number))
    trail.close()


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="ascii").splitlines(keepends=True)


def test_written_trail_verifies_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "kms-audit.jsonl"
    write(path, 5)
    assert verify(path) == (5, 1, [])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = json.loads(lines(path)[0])
    assert first["prev"] == GENESIS
    assert first["seq"] == 1
    assert set(first) == {
        "time",
        "request_id",
        "account_id",
        "principal",
        "access_key_id",
        "source_ip",
        "version",
        "action",
        "key_ids",
        "via_service",
        "outcome",
        "code",
        "latency_ms",
        "chain",
        "seq",
        "prev",
        "hash",
    }


def test_restart_continues_from_the_last_hash(tmp_path: Path) -> None:
    path = tmp_path / "trail.jsonl"
    write(path, 3)
    last = json.loads(lines(path)[-1])["hash"]
    write(path, 2)
    events = [event for _, event in read_events(path)]
    assert events[3]["prev"] == last
    assert events[3]["seq"] == 1
    assert verify(path) == (5, 2, [])


def test_two_writers_on_one_file_verify(tmp_path: Path) -> None:
    path = tmp_path / "trail.jsonl"
    first, second = KmsAuditTrail(path), KmsAuditTrail(path)
    for number in range(4):
        (first if number % 2 else second).record(event(number))
    first.close()
    second.close()
    assert verify(path) == (4, 2, [])


def test_edited_event_is_found(tmp_path: Path) -> None:
    path = tmp_path / "trail.jsonl"
    write(path, 4)
    text = lines(path)
    text[2] = text[2].replace('"outcome":"success"', '"outcome":"denied"')
    path.write_text("".join(text), encoding="ascii")
    count, _, problems = verify(path)
    assert count == 4
    assert [(p.line, "edited" in p.reason) for p in problems] == [(3, True)]


def test_removed_event_is_found(tmp_path: Path) -> None:
    path = tmp_path / "trail.jsonl"
    write(path, 4)
    text = lines(path)
    del text[1]
    path.write_text("".join(text), encoding="ascii")
    _, _, problems = verify(path)
    assert [p.line for p in problems] == [2]
    assert "removed or reordered" in problems[0].reason


def test_removing_the_first_events_is_found(tmp_path: Path) -> None:
    path = tmp_path / "trail.jsonl"
    write(path, 3)
    path.write_text("".join(lines(path)[1:]), encoding="ascii")
    _, _, problems = verify(path)
    assert [p.line for p in problems] == [1]
    assert "earlier events were removed" in problems[0].reason


def test_reordered_events_are_found(tmp_path: Path) -> None:
    path = tmp_path / "trail.jsonl"
    write(path, 3)
    text = lines(path)
    text[0], text[1] = text[1], text[0]
    path.write_text("".join(text), encoding="ascii")
    assert verify(path)[2]


def test_line_that_is_not_an_event_is_found(tmp_path: Path) -> None:
    path = tmp_path / "trail.jsonl"
    write(path, 2)
    with path.open("a", encoding="ascii") as stream:
        stream.write("not json\n")
    _, _, problems = verify(path)
    assert [(p.line, p.reason) for p in problems] == [(3, "the line is not an audit event")]


def test_cli_verify_fails_on_a_tampered_trail(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from hyok.cli.main import _register, cli

    path = tmp_path / "trail.jsonl"
    write(path, 3)
    config = tmp_path / "kms.toml"
    config.write_text(
        '[server]\ninsecure_plain_http = true\n[root_key]\nenv = "HYOK_UNUSED"\n'
        f"[audit]\npath = {json.dumps(str(path))}\n",
        encoding="utf-8",
    )
    _register()
    runner = CliRunner()
    assert runner.invoke(cli, ["kms", "audit", "verify", "--config", str(config)]).exit_code == 0
    text = lines(path)
    path.write_text(text[0] + text[2], encoding="ascii")
    result = runner.invoke(cli, ["kms", "audit", "verify", "--config", str(config)])
    assert result.exit_code == 1
    assert "line 2: chain" in result.output
    assert "does not verify: 1 problem(s)" in result.output
