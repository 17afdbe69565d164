"""Every limit of mcp-config, named once.

Each limit has a documented behaviour when it is reached (docs/limits.md):
requests over a size limit get INVALID_ARGUMENT or RESOURCE_EXHAUSTED, queues
at capacity answer RESOURCE_EXHAUSTED, waits end in UNAVAILABLE or
DEADLINE_EXCEEDED, history beyond its bounds is compacted. Values that an
operator may change are defaults for the node configuration (config.py);
the rest are constants.
"""

from __future__ import annotations

from typing import Final

KIB: Final = 1024
MIB: Final = 1024 * KIB

# --- data model (DESIGN §2) -------------------------------------------------
KEY_BYTES_MAX: Final = 1024
VALUE_BYTES_MAX_DEFAULT: Final = 1 * MIB
REQUEST_ID_BYTES_MAX: Final = 64
TXN_OPS_MAX: Final = 128
TXN_COMPARES_MAX: Final = 128
# A gRPC request may carry a value of VALUE_BYTES_MAX plus this much framing.
REQUEST_OVERHEAD_BYTES: Final = 64 * KIB
# A Range answer stops adding keys past this size and sets `more`.
RANGE_RESPONSE_BYTES_MAX: Final = 8 * MIB
# Cap on what any gRPC message sent by a node may be (above the range cap).
GRPC_SEND_BYTES_MAX: Final = 16 * MIB

# --- history (DESIGN §2, §4) -------------------------------------------------
HISTORY_REVISIONS_MAX_DEFAULT: Final = 10_000
HISTORY_BYTES_MAX_DEFAULT: Final = 64 * MIB
# The history keeps compact records; the messages of this many newest
# revisions (built for the watch hub anyway) are kept too, so a watcher that
# catches up from near the head does not rebuild them. Older ones are rebuilt.
HISTORY_MESSAGES_CACHED: Final = 128
# Write request ids remembered for at-most-once retries.
DEDUPE_ENTRIES_MAX: Final = 10_000

# --- leases (DESIGN §13, docs/leases.md) -------------------------------------------
# Leases alive at once; a grant beyond: RESOURCE_EXHAUSTED. Every lease costs
# the leader a deadline and its holder a keepalive (etcd #9496, #12105).
LEASES_MAX: Final = 10_000
# Keys attached to one lease; a put that would attach one more: RESOURCE_EXHAUSTED,
# nothing written. A revoke deletes them all in one revision, so this bounds that
# revision to the size of the largest txn (kubernetes #96836).
LEASE_KEYS_MAX: Final = TXN_OPS_MAX
# Granted TTL, seconds (etcd's MaxLeaseTTL); 1..this, else INVALID_ARGUMENT.
LEASE_TTL_S_MAX: Final = 9_000_000_000
# Lease ids in one expiry command (each expired lease is its own revision);
# more: INVALID_ARGUMENT. The leader's expiry rate is bounded separately.
LEASE_EXPIRE_BATCH_MAX: Final = 64
# Remaining-TTL checkpoints in one command (etcd's maxLeaseCheckpointBatchSize);
# more: INVALID_ARGUMENT.
LEASE_CHECKPOINT_BATCH_MAX: Final = 1000
# The leader's lease clock (mcpctl/server/lessor.py). The minimum TTL is this
# many max election timeouts (a grant below it is raised to it, as etcd does
# with 1.5x): a lease must outlive the election that may follow its grant.
LEASE_TTL_MIN_ELECTION_TIMEOUTS: Final = 2
# A new leader gives every lease its checkpointed remaining TTL plus a grace
# of leader_fallback + the max election timeout + this margin: the longest a
# cut-off old leader may still take keepalives, plus the election after it,
# so no lease expires because the leader changed.
LEASE_GRACE_MARGIN_S: Final = 1.0
# Expired leases proposed per second at most (etcd #8097 / PR #8099 caps
# revokes at 1000/s): an expiry storm after a long outage is spread out, the
# rest waits for the next tick. Burst: one LEASE_EXPIRE_BATCH_MAX command.
LEASE_EXPIRES_PER_S: Final = 500
# The leader checkpoints remaining TTLs at most once per interval, in one
# command of at most LEASE_CHECKPOINT_BATCH_MAX leases (largest drift first),
# and only leases whose checkpoint is off by at least the drift below.
LEASE_CHECKPOINT_INTERVAL_S: Final = 2.0
LEASE_CHECKPOINT_DRIFT_MS_MIN: Final = 500
# How often the leader's clock looks for expired leases and checkpoints due.
LEASE_TICK_S: Final = 0.1
# Open KeepAlive streams per member; beyond: RESOURCE_EXHAUSTED.
LEASE_KEEPALIVE_STREAMS_MAX: Final = 1000
# Lease ids in one batched keepalive request (LeaseKeepAliveRequest.ids);
# beyond: INVALID_ARGUMENT and the stream ends. The SDK sends at most this many.
LEASE_KEEPALIVE_BATCH_MAX: Final = 1000
# A pause of the leader's clock loop longer than this (the process stopped, the
# event loop starved of CPU or blocked) is not counted against any lease: every
# deadline moves by the pause, because keepalives sent meanwhile are still
# queued, unread. Shorter pauses count (they are within the keepalive margin).
LEASE_CLOCK_PAUSE_S_MAX: Final = 0.5
# A grant with id 0: random ids tried before giving up (a clash in 63 bits is
# next to impossible; the bound only keeps the loop finite). Past it: UNAVAILABLE.
LEASE_ID_ATTEMPTS_MAX: Final = 8

# --- write path --------------------------------------------------------------
# Client requests queued for the next Raft proposal; beyond: RESOURCE_EXHAUSTED.
PROPOSAL_QUEUE_MAX: Final = 4096
# One Raft entry carries at most this many requests / bytes (group commit).
PROPOSAL_BATCH_REQUESTS_MAX: Final = 256
PROPOSAL_BATCH_BYTES_MAX: Final = 4 * MIB
# How long a request may wait for its proposal to commit, in total from its
# arrival (queued time included), before a proposed write is reported as
# "outcome unknown" (an unproposed one and reads as UNAVAILABLE).
PROPOSAL_TIMEOUT_S_DEFAULT: Final = 5.0
# How long a request waits for a leader to be known before UNAVAILABLE.
LEADER_WAIT_S_DEFAULT: Final = 3.0
# PySyncObj's own command queue (a second line of defence behind ours).
RAFT_COMMAND_QUEUE_MAX: Final = 10_000
# Calls waiting to run on the Raft tick thread (log index reads, leadership
# hand-over requests). Past it the caller gets UNAVAILABLE and a warning is
# logged: a call is never dropped silently.
RAFT_TICK_CALLS_MAX: Final = 64
# A follower's AppendEntries answers held until the entries they acknowledge
# are fsynced (raft.durability: fsync; the sync runs every tick). At the limit
# the journal is synced at once and the answers go out: never dropped.
RAFT_DEFERRED_ACKS_MAX: Final = 1_024
# Linearizable reads (ReadIndex, mcpctl/raft/readindex.py): reads waiting on one
# member for a confirmed read index and their local apply; one more:
# RESOURCE_EXHAUSTED. Concurrent reads share one round (leader) or one ask
# (follower), so this bounds memory, not Raft traffic.
READ_INDEX_PENDING_MAX: Final = 4096
# Followers' read index asks a leader holds for its next round; one more is
# answered "busy" at once (each follower keeps one ask in flight).
READ_INDEX_ASKS_MAX: Final = 1024
# A read waits at most this long in the Raft layer (queued, in a round or an
# ask, or for the local apply), then UNAVAILABLE, even when proposal_timeout
# is longer; the proposer's bound (proposal_timeout, the caller's deadline)
# usually ends it first.
READ_INDEX_WAIT_S_MAX: Final = 10.0
# Batching: after a read index round (leader) or ask (follower) that carried
# two reads or more, the next one starts no sooner than this much per read it
# carried after it started, and at most READ_INDEX_GAP_S_MAX after: under load
# a round carries ~10 reads instead of ~2 (each round costs every member a
# probe, an answer and a tick). One read at a time waits nothing extra.
READ_INDEX_GAP_S_PER_READ: Final = 0.001
READ_INDEX_GAP_S_MAX: Final = 0.005

# Records of when log indexes appeared, for time-based replication lag
# (one per tick in which the log grew; ~100 s of continuous writes at 10 ms).
LAG_RECORDS_MAX: Final = 10_000

# --- server ------------------------------------------------------------------
CONCURRENT_RPCS_MAX: Final = 1024
# Tick-thread failures in a row after which a node exits for its supervisor.
TICK_FAILURES_MAX: Final = 50
# Client requests: deadline when the caller sets none.
CLIENT_TIMEOUT_S_DEFAULT: Final = 5.0
# Client: attempts over all endpoints for one request (bounded retries).
CLIENT_ATTEMPTS_MAX: Final = 8
CLIENT_BACKOFF_S_MIN: Final = 0.05
CLIENT_BACKOFF_S_MAX: Final = 1.0
# Client: leases one Client keeps alive at once, all on its one KeepAlive
# stream (mcpctl/client/_lease.py); one more: ResourceExhausted before anything
# is sent (no lease is granted that the client could not keep alive).
CLIENT_LEASES_MAX: Final = 1000
# Client: a kept-alive lease is renewed every TTL / this (etcd's client: TTL/3),
# so two renewals in a row can fail before it runs out.
CLIENT_KEEPALIVE_TTL_DIVISOR: Final = 3

# --- the live fleet (mcpctl/fleet/, docs/fleet.md) ------------------------------
# A Registration writes its load at most once per this many seconds (so N
# instances cost at most N Raft writes/s); a change inside the interval waits
# for its end (the newest value is written, never a queue of them).
FLEET_REPORT_INTERVAL_S_MIN: Final = 1.0
# ...and only when the load moved beyond the deadband: in_flight or queue by at
# least max(FLEET_DEADBAND_REQUESTS_MIN, FLEET_DEADBAND_FRACTION x the written
# value), latency by FLEET_DEADBAND_FRACTION and 5 ms, or healthy flipped;
FLEET_DEADBAND_REQUESTS_MIN: Final = 2
FLEET_DEADBAND_FRACTION: Final = 0.2
FLEET_DEADBAND_LATENCY_MS_MIN: Final = 5.0
# ...or, unchanged, every this many seconds (a refresh).
FLEET_REPORT_REFRESH_S: Final = 30.0
# A Registration's lease TTL when none is given (seconds).
FLEET_TTL_S_DEFAULT: Final = 10
# Re-registration after the lease is lost: backoff from MIN doubling to MAX (jittered).
FLEET_REREGISTER_BACKOFF_S_MIN: Final = 0.5
FLEET_REREGISTER_BACKOFF_S_MAX: Final = 10.0
# InstancePicker: when fewer than this fraction of a model's enabled,
# non-draining instances are healthy, pick from all of them (Nacos' protect
# threshold); 0 turns it off.
FLEET_PROTECT_THRESHOLD_DEFAULT: Final = 0.5
# An InstancePicker tracks at most this many instances (over all models);
# more: the extra registrations are ignored and logged (a router's memory stays bounded).
FLEET_PICKER_INSTANCES_MAX: Final = 10_000

# --- security ------------------------------------------------------------------
# Per-identity budget (requests/s, burst) for the whole cluster when auth is
# on; each member enforces 1/voters of it. Beyond: RESOURCE_EXHAUSTED with a
# retry-after-ms trailer.
TOKEN_RATE_PER_S_DEFAULT: Final = 200.0
TOKEN_BURST_DEFAULT: Final = 400
# Open watch streams per identity and per client connection; beyond:
# RESOURCE_EXHAUSTED.
WATCHES_PER_IDENTITY_MAX: Final = 2000
WATCHES_PER_CONNECTION_MAX: Final = 2000

# --- watch (DESIGN §4) ---------------------------------------------------------
# Open watch streams per node; beyond: RESOURCE_EXHAUSTED.
WATCHERS_MAX: Final = 5000
# Revisions / bytes queued for one in-sync stream. Past either, the stream is
# marked slow: it stops receiving live events and catches up from history.
WATCHER_QUEUE_REVISIONS_MAX: Final = 1024
WATCHER_QUEUE_BYTES_MAX: Final = 4 * MIB
# One watch message carries whole revisions up to this size (a single larger
# revision is sent alone).
WATCH_MESSAGE_BYTES_MAX: Final = 2 * MIB
# Catch-up from history: revisions scanned per step (the store lock is held).
WATCH_CATCHUP_SCAN_MAX: Final = 1024
# Server-wide budget of watch messages per second (a token bucket refilled
# continuously, holding WATCH_MESSAGES_BURST_S of it, at least one message):
# a message goes at once while the budget lasts; past it the stream waits its
# turn (~ streams waiting / budget) and its events coalesce into one message
# (Python gRPC pays per message, not per event). 2,000, not 4,000: with 100
# streams at 200 puts/s, 4,000 sent 1.6 events per message and writers' put
# p50 doubled (22 vs 10-12 ms); 2,000 sends 3.2 per message, puts as before.
WATCH_MESSAGES_PER_S: Final = 2000
WATCH_MESSAGES_BURST_S: Final = 0.25
WATCH_PROGRESS_INTERVAL_S_DEFAULT: Final = 5.0
WATCH_PROGRESS_INTERVAL_MS_MIN: Final = 100
WATCH_PROGRESS_INTERVAL_MS_MAX: Final = 600_000
# How often the hub checks that this node still hears from a leader.
WATCH_LEADER_CHECK_S: Final = 0.1
# Client: consecutive failed attempts to (re)open a watch before giving up.
WATCH_RESUME_ATTEMPTS_MAX: Final = 30
# ConfigWatcher: how often it cross-checks its view against a read at a bookmark.
CONFIG_WATCHER_CHECK_S_DEFAULT: Final = 30.0
# ConfigWatcher's last-good cache file (mcpctl/client/cache.py): a copy whose
# file would be larger is not written (the previous file stays, a warning is
# logged); a larger file is ignored when read. Above what one prefix read can
# return (RANGE_RESPONSE_BYTES_MAX) once base64-encoded.
CLIENT_CACHE_BYTES_MAX: Final = 32 * MIB
# The cache file is rewritten at most this often (a burst of changes costs one
# write, not one per change); a pending change is written at the next watch
# message or progress notification after the interval, and at stop().
CLIENT_CACHE_SAVE_INTERVAL_S: Final = 1.0

# --- web console (docs/console.md) ---------------------------------------------
# A request body (apply, rollback) is at most this big; beyond: 413. Twice the
# MCP document limit (mcpctl.mcp.schema.DOCUMENT_BYTES_MAX), so a document at
# its limit still fits once JSON-escaped; the document limit itself gives 400.
CONSOLE_BODY_BYTES_MAX: Final = 512 * KIB
# Open status streams (SSE) per node; beyond: 429.
CONSOLE_STREAMS_MAX: Final = 16
# Open HTTP connections per node (uvicorn answers 503 beyond).
CONSOLE_CONNECTIONS_MAX: Final = 64
# One history page holds at most this many entries (default: the lower one).
CONSOLE_HISTORY_PAGE_MAX: Final = 100
CONSOLE_HISTORY_PAGE_DEFAULT: Final = 50
# One key listing holds at most this many keys.
CONSOLE_KEYS_PAGE_MAX: Final = 500
# Lines per side the config page's diff compares; past it, a whole replacement.
CONSOLE_DIFF_LINES_MAX: Final = 5000
# The status stream computes the cluster status this often (shared by every
# open stream), with at most this many computations in flight: a member that
# does not answer holds one for mcpctl.server.peers.PEER_STATUS_TIMEOUT_S, and the
# stream must still update every tick then (checked at start-up:
# (IN_FLIGHT_MAX - 1) x TICK_S > PEER_STATUS_TIMEOUT_S).
CONSOLE_TICK_S: Final = 0.5
CONSOLE_STATUS_IN_FLIGHT_MAX: Final = 4
# Status snapshots kept for a page that opens (the chart's last few minutes).
CONSOLE_SAMPLES_MAX: Final = 600
# Snapshots queued for one slow stream; past it the oldest is dropped (status
# is a level, not an event: only the newest matters).
CONSOLE_STREAM_QUEUE_MAX: Final = 4
# How long open streams get to finish when the node stops.
CONSOLE_STOP_GRACE_S: Final = 1

# --- stopping (docs/operations.md) --------------------------------------------
# A stopping member (SIGTERM, removed from the cluster) answers new gRPC calls
# and ends its open streams with UNAVAILABLE "member stopping; retry another
# member", and gives the unary calls in flight this long to finish
# (limits.stop_grace_ms); one still running then ends UNAVAILABLE with the
# outcome_unknown trailer (a write may have been applied). Never a bare CANCELLED.
STOP_GRACE_S_DEFAULT: Final = 1.0
# How long sending that answer to one call may wait (it queues behind the
# messages a slow client has not read yet); past it the call is left to
# grpc's stop (the client sees its transport error).
STOP_ANSWER_WAIT_S: Final = 1.0

# --- mcpctl render (docs/render.md) ----------------------------------------------
# The agent config file, and templates in it; beyond: a one-line config error.
RENDER_CONFIG_BYTES_MAX: Final = 256 * KIB
RENDER_TEMPLATES_MAX: Final = 64
# Keys plus prefixes one template reads; beyond: a one-line config error.
RENDER_READS_MAX: Final = 64
# A template source file; beyond: a one-line config error at start-up.
RENDER_TEMPLATE_BYTES_MAX: Final = 1 * MIB
# A rendered file; beyond: that render fails (nothing written, the last good
# file stays, the reason is printed).
RENDER_OUTPUT_BYTES_MAX: Final = 8 * MIB
# check_cmd / reload_cmd: default and largest timeout, seconds; a command still
# running then is killed and counts as failed.
RENDER_CMD_TIMEOUT_S_DEFAULT: Final = 30.0
RENDER_CMD_TIMEOUT_S_MAX: Final = 600.0
# Bytes of a failed command's output kept in the message that reports it.
RENDER_CMD_OUTPUT_BYTES_MAX: Final = 2 * KIB
# wait.min / wait.max (debounce), seconds: the largest allowed.
RENDER_WAIT_S_MAX: Final = 3600.0
# Lines of a --dry-run diff printed per template; the rest is counted, not shown.
RENDER_DIFF_LINES_MAX: Final = 2000
# Before a render, how long the agent waits for every source (watched prefix,
# MCP view) to reach the newest revision one of them has, so a txn across two
# prefixes is never rendered half-applied; past it, it renders what it has
# (a warning). An idle watch moves on with its progress notification (1 s).
RENDER_SOURCES_WAIT_S: Final = 5.0

# --- etcd v3 API (docs/etcd-compat.md) ---------------------------------------
# An etcd txn (or a put with ignore_value/ignore_lease, a delete over a byte
# range that is not a prefix) is planned on the store as it is and applied
# guarded; when the keys it read changed meanwhile it is planned again, at most
# this many times. Past it: UNAVAILABLE (etcd clients retry it).
ETCD_TXN_ATTEMPTS_MAX: Final = 8
# Nesting depth of etcd txns (request_txn inside request_txn); deeper: UNIMPLEMENTED.
ETCD_TXN_DEPTH_MAX: Final = 8
# Watches one etcd Watch stream may hold at once (each is a watch stream of the
# hub, also counted by WATCHES_PER_CONNECTION_MAX). Past it the create is
# answered canceled with a reason, the stream goes on.
ETCD_WATCHES_PER_STREAM_MAX: Final = 1000
# Answers queued for one etcd Watch stream (all its watches); a full queue holds
# the watches back and the hub catches them up from history when the client reads.
ETCD_WATCH_STREAM_QUEUE_MAX: Final = 64
# etcd's JSON gateway (etcd_gateway.listen): a request body at most this big
# (a value at VALUE_BYTES_MAX_DEFAULT, base64, plus the JSON around it); past it:
# HTTP 429 RESOURCE_EXHAUSTED. Connections: as the console's, past it HTTP 503.
ETCD_GATEWAY_BODY_BYTES_MAX: Final = 2 * MIB
ETCD_GATEWAY_CONNECTIONS_MAX: Final = 64
