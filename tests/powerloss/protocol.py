"""The power-loss filesystem's control file and settings (no FUSE import, so a
machine without libfuse can still import the tests and skip them)."""

from __future__ import annotations

# Written to: "crash", "crash-before-rename NAME", "crash-on-write BYTES",
# "thaw", "fail-syncs", "sync-delay SECONDS";
# read: "crashes N".
CONTROL = "/.powerloss"
# Seconds every file fsync takes from the start (a slow disk).
SYNC_DELAY_ENV = "POWERLOSS_SYNC_DELAY_S"
