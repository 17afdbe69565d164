"""The floor of a Python CLI read: ``mcpctl get`` minus everything of ours.

``python -m bench.cli_floor --endpoints HOST:PORT[,...] get KEY`` parses its
arguments with argparse, imports grpc and mcp-config's generated ``mcp.v1.KV``
stubs, sends one linearizable ``Range`` to the first endpoint on a plain
channel and prints the key and the value, as ``mcpctl get`` does. No SDK (no
retries, no failover, no typed results), no printer, no config: what any
Python program pays to answer the same question over gRPC. The KV benchmark
times it as the ``grpc-floor`` server's CLI next to ``mcpctl get`` and
``etcdctl get`` (against the floor server, which answers at once).
"""

from __future__ import annotations

import argparse
import sys

import grpc

from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import kv_pb2_grpc as kv_grpc

TIMEOUT_S = 5.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cli_floor")
    p.add_argument("--endpoints", required=True)
    p.add_argument("command", choices=["get"])
    p.add_argument("key")
    args = p.parse_args(argv)
    with grpc.insecure_channel(args.endpoints.split(",")[0]) as channel:
        resp = kv_grpc.KVStub(channel).Range(
            kv.RangeRequest(key=args.key.encode()), timeout=TIMEOUT_S
        )
    for item in resp.kvs:
        sys.stdout.write(f"{item.key.decode()}\n{item.value.decode(errors='replace')}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
