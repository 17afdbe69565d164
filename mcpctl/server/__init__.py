"""Everything that runs inside a node (``mcpctl serve``).

- ``app``: builds and wires a node (config -> Raft -> proposer -> hub -> gRPC);
- ``node``: the node's operations (reads, writes through the proposer, status);
- ``proposer``: group commit and read fences on top of Raft;
- ``hub``: fans applied events out to watch streams;
- ``peers``: member-to-member status calls and write forwarding;
- ``kv``, ``mcp_service``: the gRPC servicers (thin); ``errors``: the one
  exception -> status mapping; ``auth``, ``security``: tokens, roles, TLS;
- ``config``, ``logs``, ``metrics``, ``console``: configuration, logging,
  Prometheus, the web console.

The Raft adapter is ``mcpctl.raft``; the pure store is ``mcpctl.state``.
"""
