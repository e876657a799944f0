"""gRPC server reflection, both versions: ``grpc.reflection.v1`` (what grpcurl, buf curl and Postman ask
first) and ``grpc.reflection.v1alpha`` (what older tools ask).

grpcio-reflection ships only the v1alpha service. The v1 protocol is the same protocol under a new package
name: its messages have the same fields and numbers, so the v1alpha servicer answers v1 calls byte for byte,
registered under the v1 service name with the v1alpha (de)serializers.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2 as pb

V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
V1ALPHA_SERVICE_NAME = reflection.SERVICE_NAME
SERVICE_NAMES = (V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)


def enable(server: grpc.aio.Server, service_names: Iterable[str]) -> None:
    """Serve reflection for ``service_names`` (the reflection services list themselves too)."""
    servicer = reflection.aio.ReflectionServicer(tuple(service_names) + SERVICE_NAMES)
    for name in SERVICE_NAMES:
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(name, {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=pb.ServerReflectionRequest.FromString,
                response_serializer=pb.ServerReflectionResponse.SerializeToString),
        })])
