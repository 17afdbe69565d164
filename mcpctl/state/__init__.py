"""The pure, deterministic state machine of mcp-config (guarantees: ``store``).

``Store.apply(request) -> Applied`` is the only way the state changes; no
module here reads a clock, does I/O or logs. One job each:

- ``store``: ``Store`` -- apply dispatch, revisions, put/delete/txn, reads,
  revoke and expiry, snapshot to/from bytes;
- ``history``: the history ring, its bounds (``HistoryLimits``), compaction,
  ``changes`` and resume (``since``);
- ``dedupe``: the per-identity dedupe table, request fingerprints, replay;
- ``leases``: the lease table, grant, checkpoint, attach checks, the fence;
- ``applied``: ``Applied``, what apply returns;
- ``keyspace``: key spans, compares and bounded range answers;
- ``records``: ``Version``, one compact record per key version shared by the
  key table and the history, and the wire bytes answers are parsed from;
- ``snapshot_wire``: the snapshot's ``raft.Snapshot`` bytes from the records.
"""

from mcpctl.errors import McpError
from mcpctl.state.applied import Applied
from mcpctl.state.history import HistoryLimits
from mcpctl.state.leases import LEASE_EXPIRY_IDENTITY, LeaseInfo
from mcpctl.state.store import Store

__all__ = ["LEASE_EXPIRY_IDENTITY", "Applied", "HistoryLimits", "LeaseInfo", "McpError", "Store"]
