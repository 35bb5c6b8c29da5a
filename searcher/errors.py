"""The one place where domain errors become gRPC status codes, and status codes HTTP statuses.

Every servicer method is wrapped in ``maps_errors``: an ``AlbatrossError`` ends the call with the
status code of its class (its row of ``indexer.errors.FAILURES``); anything else is a bug, logged
with its traceback and reported as INTERNAL without leaking internals to the client. The HTTP API
answers the same error with ``HTTP_STATUS_OF[code]`` and the same message, so a client of either
front-end reads one error vocabulary.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc

from indexer.errors import INTERNAL, AlbatrossError, failure_of

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "internal error (the server log has the traceback)"

# gRPC status -> HTTP status, as Google's API design guide (google.rpc.Code) and grpc-gateway map it.
HTTP_STATUS_OF: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and client-facing message for ``error``.

    Domain errors keep their message, prefixed with the offending field when the message does not
    already name it; anything else becomes INTERNAL with a generic message.
    """
    failure = failure_of(error)
    if failure is INTERNAL or not isinstance(error, AlbatrossError):
        return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE
    return grpc.StatusCode[failure.status], _message_of(error)


def _message_of(error: AlbatrossError) -> str:
    message = str(error)
    field = getattr(error, "field", None)
    if field and field not in message:
        return f"{field}: {message}"
    return message


async def _abort(context: grpc.aio.ServicerContext, error: Exception, method: str) -> None:
    code, message = status_for(error)
    if code is grpc.StatusCode.INTERNAL:
        log.error("unexpected error in %s", method, exc_info=error)
    await context.abort(code, message)


F = TypeVar("F", bound=Callable[..., Any])


def maps_errors(method: F) -> F:
    """Decorate a servicer method (coroutine or async generator) so our errors become statuses.

    ``grpc.aio.AbortError`` (an explicit ``context.abort``) and cancellation pass through untouched.
    """
    name = method.__qualname__
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream(self: Any, request: Any, context: Any) -> AsyncIterator[Any]:
            try:
                async for response in method(self, request, context):
                    yield response
            except grpc.aio.AbortError:
                raise
            except Exception as error:  # the one place that catches everything
                await _abort(context, error, name)

        return stream  # type: ignore[return-value]

    @functools.wraps(method)
    async def unary(self: Any, request: Any, context: Any) -> Any:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:  # the one place that catches everything
            await _abort(context, error, name)

    return unary  # type: ignore[return-value]
