"""The checked-in generated code under mcpctl/_proto matches protos/ (DESIGN §1):
`python -m mcpctl._proto.generate --check` passes, and it really fails on a stale tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mcpctl._proto import generate

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_proto_code_is_fresh() -> None:
    """Regenerating from protos/ gives exactly the checked-in files (else: run `make proto`)."""
    proc = subprocess.run(
        [sys.executable, "-m", "mcpctl._proto.generate", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"stale generated code:\n{proc.stderr}"


@pytest.fixture
def stale_copy(tmp_path: Path) -> Path:
    """A copy of the checked-in generated tree (the real one is never touched)."""
    copy = tmp_path / "mcp"
    shutil.copytree(generate.OUT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def check_against(out: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """Run the real `--check` code path with the checked-in tree replaced by ``out``."""
    monkeypatch.setattr(generate, "OUT", out)
    return generate.main(["--check"])


def test_check_passes_on_an_unmodified_copy(
    stale_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The comparison accepts an identical tree (so the failures below are meaningful)."""
    assert check_against(stale_copy, monkeypatch) == 0


def test_check_fails_when_a_generated_file_was_edited(
    stale_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hand edit of one generated file makes --check exit 1 with the `make proto` hint."""
    target = stale_copy / "v1" / "kv_pb2.py"
    target.write_text(target.read_text() + "\n# edited by hand\n")
    assert check_against(stale_copy, monkeypatch) == 1
    assert "make proto" in capsys.readouterr().err


def test_check_fails_when_the_content_differs_but_size_and_time_do_not(
    stale_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same size, different bytes: the check compares contents, not just stat data."""
    target = stale_copy / "v1" / "cluster_pb2.py"
    data = bytearray(target.read_bytes())
    i = data.index(b"cluster")
    data[i : i + 7] = b"CLUSTER"
    target.write_bytes(bytes(data))
    assert check_against(stale_copy, monkeypatch) == 1


def test_check_fails_when_a_generated_file_is_missing(
    stale_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A generated module that was deleted (or never added) fails the check."""
    (stale_copy / "v1" / "raft_pb2_grpc.pyi").unlink()
    assert check_against(stale_copy, monkeypatch) == 1


def test_check_fails_when_an_extra_file_is_present(
    stale_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A leftover module from a removed .proto fails the check."""
    (stale_copy / "v1" / "old_pb2.py").write_text("# from a proto that no longer exists\n")
    assert check_against(stale_copy, monkeypatch) == 1


def test_check_fails_when_the_tree_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No generated tree at all fails the check."""
    assert check_against(tmp_path / "absent", monkeypatch) == 1
