"""Requests that do not decode are the caller's mistake: INVALID_ARGUMENT naming the field.

grpc decodes a request with its handler's deserializer before any servicer code runs. When that
raises (bytes that are not the message, or a string field holding invalid UTF-8, which proto3
refuses), grpc ends the call UNKNOWN with ``Unexpected <class '...DecodeError'>: ...``: the wrong
code, and internals in the message. ``DecodingInterceptor`` gives the Albatross services' handlers a
pass-through deserializer and decodes inside the behaviour instead, where a failure can end the
call with INVALID_ARGUMENT and a message naming the field (found by walking the wire format).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError

SERVICE_PREFIX = "/albatross.v1."
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


class DecodingInterceptor(grpc.aio.ServerInterceptor):
    """Innermost interceptor: decode Albatross requests where a failure can be reported."""

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method or ""
        if handler is None or handler.request_deserializer is None or not method.startswith(SERVICE_PREFIX):
            return handler
        return _decoding(handler)


def _decoding(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    decode = handler.request_deserializer
    descriptor = getattr(getattr(decode, "__self__", None), "DESCRIPTOR", None)

    async def parse(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        try:
            return decode(raw)
        except DecodeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, undecodable(raw, descriptor))

    async def requests(
        raw_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        async for raw in raw_iterator:
            yield await parse(raw, context)

    options = {"request_deserializer": None, "response_serializer": handler.response_serializer}
    if handler.request_streaming and handler.response_streaming:

        async def stream_stream(raw_iterator: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async for response in handler.stream_stream(requests(raw_iterator, context), context):
                yield response

        return grpc.stream_stream_rpc_method_handler(stream_stream, **options)
    if handler.request_streaming:

        async def stream_unary(raw_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
            return await handler.stream_unary(requests(raw_iterator, context), context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, **options)
    if handler.response_streaming:

        async def unary_stream(raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async for response in handler.unary_stream(await parse(raw, context), context):
                yield response

        return grpc.unary_stream_rpc_method_handler(unary_stream, **options)

    async def unary_unary(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        return await handler.unary_unary(await parse(raw, context), context)

    return grpc.unary_unary_rpc_method_handler(unary_unary, **options)


def undecodable(raw: bytes, descriptor: Descriptor | None) -> str:
    """The client-facing message for ``raw`` bytes that ``descriptor``'s message refused."""
    name = descriptor.full_name if descriptor is not None else "request"
    field = invalid_utf8_field(raw, descriptor) if descriptor is not None else None
    if field is not None:
        return f"{field}: not valid UTF-8 (string fields must be UTF-8 text)"
    return f"the request is not a valid {name} message (corrupt or truncated wire format)"


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[position]
        value |= (byte & 0x7F) << shift
        position, shift = position + 1, shift + 7
        if not byte & 0x80:
            return value, position


_FIXED_SIZES = {1: 8, 5: 4}


def invalid_utf8_field(data: bytes, descriptor: Descriptor, depth: int = 0) -> str | None:
    """Dotted path of the first string field in ``data`` that is not UTF-8, or None (also when the
    wire format itself is broken)."""
    position = 0
    try:
        while position < len(data):
            key, position = _varint(data, position)
            number, wire_type = key >> 3, key & 7
            if wire_type == 0:
                _, position = _varint(data, position)
            elif wire_type in _FIXED_SIZES:
                position += _FIXED_SIZES[wire_type]
            elif wire_type == 2:
                length, position = _varint(data, position)
                chunk, position = data[position : position + length], position + length
                found = _check_field(chunk, descriptor.fields_by_number.get(number), depth)
                if found is not None:
                    return found
            else:
                return None
    except ValueError:
        return None
    return None


def _check_field(chunk: bytes, field: FieldDescriptor | None, depth: int) -> str | None:
    if field is None:
        return None
    if field.type == FieldDescriptor.TYPE_STRING:
        try:
            chunk.decode("utf-8")
        except UnicodeDecodeError:
            return field.name
        return None
    if field.type == FieldDescriptor.TYPE_MESSAGE and depth < 32:
        inner = invalid_utf8_field(chunk, field.message_type, depth + 1)
        return f"{field.name}.{inner}" if inner is not None else None
    return None
