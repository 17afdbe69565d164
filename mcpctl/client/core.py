"""The SDK's core, by name: ``Client``, its typed values and ``WatchStream``.

A stable import path (``mcpctl.client.core``) over small private modules,
each with one job:

- ``_values``: typed results (``Header``, ``KeyValue``, ``GetResult``, ...),
  request ids and key/value encoding;
- ``_transport``: endpoints (``check_endpoint``, ``endpoints_from_env``), TLS
  and the ``ChannelFactory`` seam (real gRPC channels by default);
- ``_rules``: the retry and outcome rules of one call (which errors move on,
  bounded attempts and backoff, sent or never sent, ``OutcomeUnknown``,
  error mapping) as ``Attempts`` over ``Endpoints``, with time injected as
  ``Timing``; both clients run them;
- ``_calls``: what each call sends and how its answer reads, one ``Call``
  per method, shared with the asyncio client (``mcpctl.aio``);
- ``_client``: ``Client``, its KV, watch, cluster and membership calls;
- ``_lease``: ``Lease`` and the lease calls of ``Client``; ``_keepalive``: the
  thread and stream that keep a Client's leases alive;
- ``_ops``: ``put_op``/``delete_op``, the operations of a txn (older form);
- ``_txn``: ``Compare`` and ``Op``, a txn's conditions and operations;
- ``_results``: typed history, cluster status and membership results;
- ``_watch``: ``WatchStream``, a watch that resumes without a gap.

Users import from ``mcpctl.client``; errors are in ``mcpctl.errors``.
"""

from __future__ import annotations

from mcpctl.client._client import Client
from mcpctl.client._lease import Lease
from mcpctl.client._ops import delete_op, put_op
from mcpctl.client._rules import Timing
from mcpctl.client._transport import (
    DEFAULT_ENDPOINTS,
    ENDPOINTS_ENV,
    TOKEN_ENV,
    ChannelFactory,
    check_endpoint,
    endpoints_from_env,
)
from mcpctl.client._values import (
    DeleteResult,
    Event,
    GetResult,
    Header,
    KeyValue,
    LeaseGrant,
    LeaseKeepAlive,
    LeaseList,
    MemberStatus,
    PutResult,
    TimeToLive,
    TxnResult,
    WatchBatch,
    new_request_id,
)
from mcpctl.client._watch import WatchStream

__all__ = [
    "DEFAULT_ENDPOINTS",
    "ENDPOINTS_ENV",
    "TOKEN_ENV",
    "ChannelFactory",
    "Client",
    "DeleteResult",
    "Event",
    "GetResult",
    "Header",
    "KeyValue",
    "Lease",
    "LeaseGrant",
    "LeaseKeepAlive",
    "LeaseList",
    "MemberStatus",
    "PutResult",
    "TimeToLive",
    "Timing",
    "TxnResult",
    "WatchBatch",
    "WatchStream",
    "check_endpoint",
    "delete_op",
    "endpoints_from_env",
    "new_request_id",
    "put_op",
]
