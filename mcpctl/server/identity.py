"""Who this member is: the cluster and member ids every response header carries.

The ids are derived, never stored: from the cluster's name and its key
(``cluster_key``: ``cluster.token`` when set, else a one-way derivation of the
cluster secret) and, for a member, its name. So they are the same on every
member, survive restarts, and do not change with member add and remove.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

# PBKDF2 rounds from the cluster secret to the cluster id (~0.1 s, once at start):
# the id is in every response header, so a guess at a weak secret costs this much.
CLUSTER_ID_KDF_ROUNDS = 200_000
_CLUSTER_ID_SALT = b"mcp-config cluster id v1"


def stable_id(*parts: str) -> int:
    """A 64-bit id from text (cluster and member ids in headers)."""
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


def cluster_key(token: str | None, secret: str) -> str:
    """What makes this cluster's ids its own: ``cluster.token`` when set, else a
    one-way derivation of the cluster secret.

    Every member has the same secret (they could not talk otherwise) and two
    clusters do not, so the id is the same on every member, a member that
    joins later gets it too, and it survives restarts with no state of its
    own; it changes only when the secret is rotated and no token is set.
    """
    if token is not None:
        return "token:" + token
    derived = hashlib.pbkdf2_hmac(
        "sha256", secret.encode(), _CLUSTER_ID_SALT, CLUSTER_ID_KDF_ROUNDS
    )
    return "secret:" + derived.hex()


@dataclass(frozen=True, slots=True)
class Identity:
    cluster_name: str
    member_name: str
    cluster_id: int
    member_id: int

    @classmethod
    def of(cls, cluster_name: str, member_name: str, key: str) -> Identity:
        """Ids from the cluster's name and ``key`` (``cluster_key``): never from the
        member list, which changes with member add and remove."""
        return cls(
            cluster_name,
            member_name,
            stable_id("cluster", cluster_name, key),
            stable_id("member", cluster_name, key, member_name),
        )
