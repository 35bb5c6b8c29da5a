"""Rebuilding a gRPC method handler around another behaviour (what server interceptors return).

A handler carries one of four behaviours, chosen by whether requests and responses stream; an
interceptor that wraps or replaces the behaviour must rebuild a handler of the same kind, with the
same (de)serializers, or the call would be decoded wrongly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

Behaviour = Callable[..., Any]
# What a server interceptor is given to look up the handler of a call.
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]

_KINDS: dict[tuple[bool, bool], tuple[str, Callable[..., grpc.RpcMethodHandler]]] = {
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}


def behaviour_of(handler: grpc.RpcMethodHandler) -> Behaviour:
    """The function serving calls of ``handler``: ``(request or request iterator, context)``."""
    attribute, _ = _KINDS[(handler.request_streaming, handler.response_streaming)]
    behaviour: Behaviour = getattr(handler, attribute)
    return behaviour


def with_behaviour(handler: grpc.RpcMethodHandler, behaviour: Behaviour) -> grpc.RpcMethodHandler:
    """A handler of the same kind and (de)serializers as ``handler`` that runs ``behaviour``."""
    _, factory = _KINDS[(handler.request_streaming, handler.response_streaming)]
    return factory(
        behaviour,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
