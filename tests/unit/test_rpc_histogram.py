"""The RPC latency histogram (``RpcMetrics``, a collector of its own, cheaper per
request) exposes what prometheus_client's ``Histogram`` exposed for the same
observations: same name, labels, buckets (upper bounds inclusive), counts and
sums (only the ``_created`` samples are gone)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from mcpctl.server.metrics import RPC_BUCKETS_S, RpcMetrics

OBSERVED = [
    ("Range", "OK", 0.0005),  # exactly on a bound: counted in that bucket
    ("Range", "OK", 0.003),
    ("Range", "OK", 0.0001),
    ("Range", "OK", 5.0),
    ("Put", "INTERNAL", 7.0),  # above the last bound: +Inf only
    ("etcd.Range", "NOT_FOUND", 0.02),
]


def test_the_histogram_exposes_what_prometheus_clients_histogram_did() -> None:
    reference = CollectorRegistry()
    histogram = Histogram(
        RpcMetrics.NAME,
        "gRPC request latency by method and status code",
        ["method", "code"],
        buckets=RPC_BUCKETS_S,
        registry=reference,
    )
    ours = CollectorRegistry()
    metrics = RpcMetrics(ours)
    for method, code, seconds in OBSERVED:
        histogram.labels(method, code).observe(seconds)
        metrics.observe(method, code, seconds)
    expected = [
        line for line in generate_latest(reference).decode().splitlines() if "_created" not in line
    ]
    text = generate_latest(ours).decode()
    assert text.splitlines() == expected
    assert 'mcp_rpc_duration_seconds_bucket{code="OK",le="0.0005",method="Range"} 2.0' in text
