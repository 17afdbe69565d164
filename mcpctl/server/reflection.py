"""gRPC server reflection under both of its names: ``grpc.reflection.v1`` and ``v1alpha``.

Current tools (grpcurl, Postman, grpc_cli) ask ``grpc.reflection.v1.ServerReflection``
first; older ones only know ``v1alpha``. grpcio-reflection (1.85) ships only
``v1alpha``. The v1 protocol is v1alpha renamed: the same messages with the same
field numbers, so the same bytes on the wire. So one servicer answers both:

- v1alpha is registered with grpcio-reflection's generated helper;
- v1 gets a handler with the same (wire-identical) serializers, and its file
  descriptor, v1alpha's with the package renamed, is added to the default
  descriptor pool so that reflection can describe the v1 service itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Protocol

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1ALPHA_SERVICE_NAME: Final = reflection.SERVICE_NAME
V1_PACKAGE: Final = "grpc.reflection.v1"
V1_SERVICE_NAME: Final = f"{V1_PACKAGE}.ServerReflection"
SERVICE_NAMES: Final = (V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)
_V1_FILE: Final = "grpc/reflection/v1/reflection.proto"


class Registrar(Protocol):
    """What grpc's generated ``add_*_to_server`` needs of a server."""

    def add_generic_rpc_handlers(self, generic_handlers: Any) -> None: ...

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None: ...


def _add_v1_descriptor() -> None:
    """Put grpc/reflection/v1/reflection.proto (v1alpha's, renamed) in the default pool."""
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(_V1_FILE)
        return  # added before (another server in this process, or a newer library)
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    old = f".{proto.package}."
    new = f".{V1_PACKAGE}."
    proto.name = _V1_FILE
    proto.package = V1_PACKAGE
    for message in proto.message_type:
        for field in message.field:
            if field.HasField("type_name"):  # a message or enum field
                field.type_name = field.type_name.replace(old, new, 1)
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new, 1)
            method.output_type = method.output_type.replace(old, new, 1)
    pool.AddSerializedFile(proto.SerializeToString())


def add_reflection(server: Registrar, service_names: Sequence[str]) -> None:
    """Serve reflection (v1 and v1alpha) listing ``service_names`` and both reflection names."""
    _add_v1_descriptor()
    servicer = reflection.aio.ReflectionServicer(  # type: ignore[attr-defined]
        [*service_names, *SERVICE_NAMES]
    )
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(V1_SERVICE_NAME, v1),))
    server.add_registered_method_handlers(V1_SERVICE_NAME, v1)
