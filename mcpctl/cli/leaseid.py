"""Lease ids on the command line: 16 hex digits, as etcdctl prints and reads them.

Hex, not decimal, also in JSON: ids are random 63-bit numbers, and a JSON
number above 2**53 loses digits in many parsers (JavaScript, jq 1.6).
"""

from __future__ import annotations

LEASE_ID_MAX = 2**63 - 1  # int64 > 0 (the wire type)


def lease_hex(lease_id: int) -> str:
    """``694d77aa9e38260f``: zero-padded to 16 digits, lower case."""
    return f"{lease_id:016x}"


def parse_lease_id(text: str) -> int:
    """The id written in hex (``0x`` allowed); ``ValueError`` saying what is wrong."""
    digits = text.strip().lower().removeprefix("0x")
    if not digits or len(digits) > 16 or any(c not in "0123456789abcdef" for c in digits):
        raise ValueError(f"bad lease id {text!r}: expected hex like 694d77aa9e38260f")
    value = int(digits, 16)
    if not 0 < value <= LEASE_ID_MAX:
        raise ValueError(f"bad lease id {text!r}: must be in 1..7fffffffffffffff")
    return value
