"""gRPC server reflection answers under both names (issue #19, item 9): current tools
ask ``grpc.reflection.v1.ServerReflection``, older ones ``grpc.reflection.v1alpha``.
Each lists every service and describes a service by symbol, over real gRPC against a
real cluster. The v1 calls go to the v1 method path with a hand-made stub (the Python
package ships only v1alpha stubs; the two protocols are the same bytes on the wire).
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from tests.cluster import Cluster

pytestmark = pytest.mark.cluster

CALL_TIMEOUT_S = 10.0
SERVICES = {
    "mcp.v1.KV",
    "mcp.v1.Watch",
    "mcp.v1.Cluster",
    "mcp.v1.Config",
    "mcp.v1.Lease",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
}
# grpc_reflection has no type information: its messages are Any here.
Request: Any = reflection_pb2.ServerReflectionRequest
Response: Any = reflection_pb2.ServerReflectionResponse


def ask(endpoint: str, version: str, *requests: Any) -> list[Any]:
    """One reflection stream on ``grpc.reflection.<version>``: one answer per request."""
    with grpc.insecure_channel(endpoint) as channel:
        call = channel.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=Request.SerializeToString,
            response_deserializer=Response.FromString,
        )
        return list(call(iter(requests), timeout=CALL_TIMEOUT_S))


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_lists_and_describes_over_v1_and_v1alpha(cluster: Cluster, version: str) -> None:
    """list_services names every service (both reflection versions among them);
    file_containing_symbol returns the file that defines mcp.v1.KV, and the one
    that defines this very reflection service."""
    listed, kv_file, own_file = ask(
        cluster.nodes[0].endpoint,
        version,
        Request(list_services=""),
        Request(file_containing_symbol="mcp.v1.KV"),
        Request(file_containing_symbol=f"grpc.reflection.{version}.ServerReflection"),
    )
    assert not listed.HasField("error_response"), listed.error_response
    assert {s.name for s in listed.list_services_response.service} == SERVICES
    for answer, package, service in (
        (kv_file, "mcp.v1", "KV"),
        (own_file, f"grpc.reflection.{version}", "ServerReflection"),
    ):
        assert not answer.HasField("error_response"), answer.error_response
        files = [
            descriptor_pb2.FileDescriptorProto.FromString(raw)
            for raw in answer.file_descriptor_response.file_descriptor_proto
        ]
        defining = [f for f in files if f.package == package]
        assert defining and service in {s.name for s in defining[0].service}, files
