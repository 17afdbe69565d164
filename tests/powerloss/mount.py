"""Start, crash and stop a power-loss filesystem (``tests.powerloss.lazyfs``).

``unavailable_reason()`` says why FUSE cannot run here (no /dev/fuse, no
fusermount3, no libfuse, not allowed to mount), for a clear skip; in CI
(``CI=true``) the tests fail instead of skipping.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from tests.powerloss.protocol import CONTROL, SYNC_DELAY_ENV

MOUNT_TIMEOUT_S = 10.0
REPO = Path(__file__).resolve().parents[2]


def unavailable_reason() -> str | None:
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse on this machine"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is missing (Debian package fuse3)"
    try:
        import mfusepy  # noqa: F401
    except Exception as e:  # mfusepy raises a bare EnvironmentError without libfuse
        return f"mfusepy cannot load libfuse: {e}"
    return None


class PowerLossMount:
    """A mounted ``PowerLossFS`` at ``mountpoint`` over ``backing``."""

    def __init__(
        self, backing: Path, mountpoint: Path, log: Path, *, sync_delay_s: float = 0.0
    ) -> None:
        self.backing = backing
        self.sync_delay_s = sync_delay_s
        self.mountpoint = mountpoint
        self._log_path = log
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        log = open(self._log_path, "ab")  # noqa: SIM115 (the child keeps it)
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.powerloss.lazyfs",
                str(self.backing),
                str(self.mountpoint),
            ],
            cwd=REPO,
            env={**os.environ, SYNC_DELAY_ENV: str(self.sync_delay_s)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + MOUNT_TIMEOUT_S
        while not os.path.ismount(self.mountpoint):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"power-loss filesystem did not mount at {self.mountpoint}: "
                    + self._log_path.read_text(errors="replace")[-2000:]
                )
            time.sleep(0.02)

    def crash(self) -> None:
        """The power cut: everything not fsynced is gone (kill the programs first)."""
        self._control(b"crash")

    def crash_before_rename(self, name: str) -> None:
        """Cut the power at the first rename onto a file called ``name``; the
        filesystem then fails every call until ``thaw``."""
        self._control(f"crash-before-rename {name}".encode())

    def slow_syncs(self, seconds: float) -> None:
        """Every file fsync from now on takes ``seconds`` (a slow disk)."""
        self._control(f"sync-delay {seconds}".encode())

    def crash_on_write(self, pattern: str) -> None:
        """Cut the power at the first write containing ``pattern``; the
        filesystem then fails every call until ``thaw``."""
        self._control(f"crash-on-write {pattern}".encode())

    def fail_syncs(self) -> None:
        """Every file fsync from now on fails with EIO (a dying disk)."""
        self._control(b"fail-syncs")

    def thaw(self) -> None:
        self._control(b"thaw")

    def crashes(self) -> int:
        with open(str(self.mountpoint) + CONTROL, "rb", buffering=0) as f:
            return int(f.read(64).split()[1])

    def _control(self, command: bytes) -> None:
        with open(str(self.mountpoint) + CONTROL, "wb", buffering=0) as f:
            f.write(command)

    def stop(self) -> None:
        if os.path.ismount(self.mountpoint):
            subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], check=False)
        if self._proc is not None:
            try:
                self._proc.wait(timeout=MOUNT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def __enter__(self) -> PowerLossMount:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
