"""The CLI's and the node's fast paths give the same results as the slow ones."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest
import structlog

from mcpctl.cli.main import COMMANDS, build_parser, command_of
from mcpctl.server.logs import AuditLog


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["get", "/a"], "get"),
        (["--endpoints", "127.0.0.1:1", "get", "/a"], "get"),
        (["--endpoints=127.0.0.1:1", "-w", "json", "put", "/a", "b"], "put"),
        (["--timeout", "2", "del", "/a"], "delete"),
        (["--token", "get", "watch", "/a"], "watch"),  # "get" is the token's value
        (["bogus"], None),
        ([], None),
        (["--help"], None),
        (["--", "get"], None),
    ],
)
def test_command_of(argv: list[str], command: str | None) -> None:
    assert command_of(argv) == command


def test_one_command_parser_parses_like_the_whole_one() -> None:
    argv = ["--endpoints", "127.0.0.1:1", "get", "/a", "--prefix"]
    whole = vars(build_parser().parse_args(argv))
    only = vars(build_parser(command_of(argv)).parse_args(argv))
    assert whole.keys() == only.keys()
    assert {k: v for k, v in whole.items() if k != "run"} == {
        k: v for k, v in only.items() if k != "run"
    }


def test_unknown_command_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser(command_of(["bogus"])).parse_args(["bogus"])
    err = capsys.readouterr().err
    assert all(name in err for name in ("put", "get", "del", "rollback"))
    assert len(COMMANDS) >= 15


def test_audit_lines_are_batched_per_loop_turn_and_keep_their_shape() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    audit = AuditLog()
    audit.configure(handler, "n1")

    async def two_writes() -> str:
        structlog.contextvars.bind_contextvars(method="Put", peer="ipv4:127.0.0.1:1")
        audit.info("write", identity="deployer", keys=["/a"], revision=7)
        audit.info("write", identity="deployer", keys=["/b"], revision=8)
        written_before_the_turn_ended = stream.getvalue()
        await asyncio.sleep(0)
        return written_before_the_turn_ended

    assert asyncio.run(two_writes()) == ""
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["revision"] for line in lines] == [7, 8]
    first = lines[0]
    assert first["event"] == "write" and first["logger"] == "mcpctl.audit"
    assert (first["level"], first["node"], first["method"]) == ("info", "n1", "Put")
    assert first["timestamp"].endswith("Z") and first["keys"] == ["/a"]


def test_audit_off_the_loop_writes_at_once() -> None:
    stream = io.StringIO()
    audit = AuditLog()
    audit.configure(logging.StreamHandler(stream), None)
    audit.info("write", identity="x", revision=1)
    assert json.loads(stream.getvalue())["identity"] == "x"
