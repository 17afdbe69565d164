"""Installing a rendered file: compare, check, swap atomically, reload.

1. Identical to the file in place: nothing is written, nothing reloaded.
2. The candidate is written to a temporary file next to ``dest`` (same
   filesystem, so the final rename is atomic), with ``perms``, and fsynced.
3. ``check_cmd`` (``{src}`` replaced by the candidate's path) must exit 0
   within ``command_timeout_s``; otherwise the candidate is deleted, the file
   in place stays (the last good one) and the outcome says why.
4. With ``backup``, the file in place is first copied to ``dest.bak``.
5. rename over ``dest``, fsync of the directory, then ``reload_cmd``.

Commands run with ``/bin/sh -c``. A dry run stops after step 1 and returns
the unified diff instead.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import shlex
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from mcpctl import limits
from mcpctl.client.cache import fsync_dir, write_atomic
from mcpctl.render.config import Template


class Status(Enum):
    UNCHANGED = "unchanged"
    INSTALLED = "installed"
    WOULD_CHANGE = "would change"
    RENDER_FAILED = "render failed"
    CHECK_FAILED = "check failed"
    INSTALL_FAILED = "install failed"
    RELOAD_FAILED = "reload failed"

    @property
    def ok(self) -> bool:
        return self in (Status.UNCHANGED, Status.INSTALLED, Status.WOULD_CHANGE)


@dataclass(frozen=True)
class Outcome:
    status: Status
    detail: str = ""  # why (failures), or the diff (dry run)


def current(dest: Path) -> bytes | None:
    try:
        return dest.read_bytes()
    except FileNotFoundError:
        return None


def diff(dest: Path, old: bytes | None, new: bytes) -> str:
    a = (old or b"").decode("utf-8", "replace").splitlines(keepends=True)
    b = new.decode("utf-8", "replace").splitlines(keepends=True)
    lines = list(
        difflib.unified_diff(
            a, b, fromfile=str(dest) if old is not None else "/dev/null", tofile=str(dest)
        )
    )
    shown = lines[: limits.RENDER_DIFF_LINES_MAX]
    text = "".join(line if line.endswith("\n") else line + "\n" for line in shown)
    if len(lines) > len(shown):
        text += f"... {len(lines) - len(shown)} more diff lines (RENDER_DIFF_LINES_MAX)\n"
    return text


def run_command(cmd: str, timeout_s: float, *, src: Path | None = None) -> str | None:
    """Run ``cmd`` in a shell; None when it exits 0, else why (one line)."""
    if src is not None:
        cmd = cmd.replace("{src}", shlex.quote(str(src)))
    try:
        # Its own process group: a timeout kills what the shell started too
        # (a grandchild holding the output pipe would otherwise hang us).
        proc = subprocess.Popen(
            ["/bin/sh", "-c", cmd],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as e:
        return f"`{cmd}` could not run: {e.strerror}"
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return f"`{cmd}` did not finish within {timeout_s:g} s (killed)"
    if proc.returncode == 0:
        return None
    said = " ".join(
        output[-limits.RENDER_CMD_OUTPUT_BYTES_MAX :].decode("utf-8", "replace").split()
    )
    return f"`{cmd}` exited {proc.returncode}" + (f": {said}" if said else "")


def install(t: Template, content: bytes, *, dry_run: bool = False) -> Outcome:
    old = current(t.dest)
    if old == content:
        return Outcome(Status.UNCHANGED)
    if dry_run:
        return Outcome(Status.WOULD_CHANGE, diff(t.dest, old, content))
    try:
        t.dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=t.dest.parent, prefix=f".{t.dest.name}.", suffix=".new")
    except OSError as e:
        return Outcome(Status.INSTALL_FAILED, f"cannot write next to {t.dest}: {e.strerror}")
    candidate = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fchmod(f.fileno(), t.perms)
            os.fsync(f.fileno())
        if t.check_cmd:
            why = run_command(t.check_cmd, t.command_timeout_s, src=candidate)
            if why is not None:
                return Outcome(Status.CHECK_FAILED, f"{why}; keeping the file in place")
        if t.backup and old is not None:
            write_atomic(t.dest.with_name(t.dest.name + ".bak"), old, t.perms)
        os.replace(candidate, t.dest)
        fsync_dir(t.dest.parent)
    except OSError as e:
        return Outcome(Status.INSTALL_FAILED, f"{e.filename or t.dest}: {e.strerror}")
    finally:
        candidate.unlink(missing_ok=True)
    if t.reload_cmd:
        why = run_command(t.reload_cmd, t.command_timeout_s)
        if why is not None:
            return Outcome(Status.RELOAD_FAILED, f"installed, but {why}")
    return Outcome(Status.INSTALLED)
