"""Undecodable unary requests get INVALID_ARGUMENT, not UNKNOWN with a traceback in the log.

grpc.aio decodes a unary request before the method runs; a decode failure there is logged with a
full traceback and answered UNKNOWN. :class:`DecodeGuard` swaps in a deserializer that returns a
marker instead, and a behaviour that answers the marker with INVALID_ARGUMENT. Streaming requests
(``Direct``) raise ``DecodeError`` from the request iterator, which the method handles itself.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

log = logging.getLogger(__name__)


class _Undecodable:
    def __init__(self, size: int, error: Exception):
        self.size, self.error = size, error


class DecodeGuard(grpc.aio.ServerInterceptor):
    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable],
                                handler_call_details: grpc.HandlerCallDetails):
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming or handler.request_deserializer is None:
            return handler
        decode = handler.request_deserializer

        def safe_decode(data: bytes) -> Any:
            try:
                return decode(data)
            except (DecodeError, ValueError, TypeError) as exc:  # protobuf raises DecodeError; odd bytes others
                return _Undecodable(len(data), exc)

        inner = handler.unary_stream if handler.response_streaming else handler.unary_unary

        async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, _Undecodable):
                log.info("undecodable %d-byte request to %s", request.size, (handler_call_details.method or "")[:200])
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"could not decode the request as this method's message: {request.error}")
            return await inner(request, context)

        async def generator_behaviour(request: Any, context: grpc.aio.ServicerContext):
            if isinstance(request, _Undecodable):
                await behaviour(request, context)
            async for item in inner(request, context):
                yield item

        kwargs = dict(request_deserializer=safe_decode, response_serializer=handler.response_serializer)
        if handler.response_streaming:  # a generator method yields; others (e.g. health Watch) write
            chosen = generator_behaviour if inspect.isasyncgenfunction(inner) else behaviour
            return grpc.unary_stream_rpc_method_handler(chosen, **kwargs)
        return grpc.unary_unary_rpc_method_handler(behaviour, **kwargs)
