"""A command's own usage errors (not argparse's) are raised as UsageError and
printed once, by main: one line ``mcpctl COMMAND: MESSAGE`` and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcpctl.cli import main as cli_main
from mcpctl.cli.exitcodes import Exit, UsageError


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["get", "/a", "--rev", "-1"], "mcpctl get: --rev and --limit must not be negative"),
        (["put", "/a", "v", "-f", "x"], "mcpctl put: give VALUE or -f FILE, not both"),
        (
            ["rollback", "--to-rev", "3"],
            "mcpctl rollback: give KEY or --prefix PREFIX (one of them)",
        ),
        (["dev", "--nodes", "0"], "mcpctl dev: --nodes must be 1..9"),
        (["serve", "--set", "oops"], "mcpctl serve: --set 'oops': expected KEY=VALUE"),
    ],
)
def test_usage_error_is_one_line_and_exit_2(
    argv: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main.main(argv) == Exit.USAGE
    out, err = capsys.readouterr()
    assert (out, err) == ("", line + "\n")


def test_unreadable_document_names_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.yaml"
    assert cli_main.main(["apply", "-f", str(missing)]) == Exit.USAGE
    err = capsys.readouterr().err
    assert err == f"mcpctl apply: cannot read {missing}: No such file or directory\n"


def test_usage_error_keeps_its_parts() -> None:
    e = UsageError("snapshot restore", "bad config")
    assert (str(e), e.command, e.message) == (
        "mcpctl snapshot restore: bad config",
        "snapshot restore",
        "bad config",
    )
