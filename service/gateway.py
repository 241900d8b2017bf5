"""The WebSocket engine gateway: the ``Direct`` session for runtimes without an HTTP/2 gRPC client.

GDScript (Godot 4 ``WebSocketPeer``) and Unity without native plugins cannot speak gRPC. The gateway
runs in the same process as the gRPC server and serves the same session (``SessionRegistry`` +
``run_session`` in :mod:`service.sessions`) with the same ``shotstream.v1`` messages, carried as
proto3 JSON over one WebSocket connection. Everything below is the whole wire contract a client
needs besides ``proto/shotstream/v1/shotstream.proto``.

Endpoint
========
``ws://HOST:PORT/v1/direct`` (``wss://`` when the server has a TLS certificate). One connection is
one ``Direct`` session. Any other path is refused at the handshake with HTTP 404. The query string
is ignored apart from ``token``.

Authentication
==============
When the server has a token, the handshake must carry it, either as the header
``Authorization: Bearer <token>`` or as the query parameter ``?token=<token>`` (URL-encoded; for
web builds, which cannot set handshake headers). Otherwise the handshake is refused with HTTP 401
(plain-text body says why; header ``WWW-Authenticate: Bearer``).

Browser pages: when the server has *no* token, a handshake with an ``Origin`` header that is not a
loopback origin (``http(s)://localhost``, ``127.0.0.1`` or ``[::1]``, any port) is refused with
HTTP 403, so an arbitrary web page cannot drive a local GPU through the visitor's browser. Native
clients send no ``Origin`` and are not affected; a web build served from elsewhere needs a token.

Messages
========
Client -> server: **text** frames, each one ``shotstream.v1.ClientMessage`` as proto3 JSON
(UTF-8), e.g.::

    {"open": {"protocolVersion": 1, "clientName": "godot/MyGame", "globalCaption": "...",
              "seed": "42", "frameFormat": "FRAME_FORMAT_RGBA8", "maxChunksInFlight": 2}}
    {"cue": {"eventId": "boss", "prompt": "...", "numChunks": 2, "mode": "CUE_MODE_CUT"}}
    {"ack": {"chunkSeq": "3"}}
    {"pause": {}}   {"resume": {}}   {"close": {}}
    {"startTake": {"name": "boss-fight"}}   {"stopTake": {}}

The server parses with ``google.protobuf.json_format.Parse(ignore_unknown_fields=False)``, so it
accepts both camelCase (``chunkSeq``) and proto field names (``chunk_seq``), 64-bit integers as
JSON numbers or strings, and enums as names or numbers. A frame that is not valid JSON, names an
unknown field, has a wrong type, or is a **binary** frame is answered with a non-fatal
``{"error": {"code": 3, "message": "..."}}`` (3 = INVALID_ARGUMENT) and otherwise ignored; the
session goes on. A client frame larger than the server's ``max_control_message_bytes`` (64 KiB by
default) closes the connection with WebSocket close code 1009 (message too big).

Session rules are those of ``Direct``: the first message must be ``open`` (the server answers
``opened``, or a fatal ``error`` and closes); cues become shots; the server sends at most
``maxChunksInFlight`` chunks before the client acks them (an ack for a ``chunkSeq`` not yet received
is a non-fatal error); ``close`` is answered with ``closed``. The limits (queued cues, idle and open
timeouts, messages waiting for a client that does not read) are those of ``Direct``: see the
README's table of limits.

Server -> client: two kinds of frames.

1. **Text** frames: one ``shotstream.v1.ServerMessage`` as proto3 JSON, exactly what
   ``json_format.MessageToJson(msg, indent=None, ensure_ascii=False)`` produces, i.e. the
   ``MessageToJson`` defaults for everything that matters to a parser:

   * field names in lowerCamelCase (``sessionId``, ``framesFirstChunk``, ``chunkSeq``);
   * enums as their names (``"FRAME_FORMAT_RGB8"``, ``"TRANSPORT_INLINE"``);
   * 64-bit integers (``uint64``: ``seed``, ``chunkSeq``, ``storyFrame``, ring ``offset`` ...) as
     JSON **strings** (``"chunkSeq": "1"``); 32-bit integers and doubles as numbers;
   * fields holding their default value (0, false, "", first enum value) are **omitted**: a
     missing key means zero/false/empty (e.g. ``chunkIndex`` is absent on a shot's first chunk,
     ``queuePosition`` on a cue that starts next, ``fatal`` on a non-fatal error);
   * one message per frame, no indentation, non-ASCII characters as UTF-8 (not ``\\u`` escapes).

   Every message kind goes this way (``opened``, ``cueAccepted``, ``shotStarted``,
   ``shotFinished``, ``stats``, ``error``, ``closed``, ``takeStarted``, ``takeSaved``), and so does a ``chunk`` whose pixels are in
   the shared-memory ring (``TRANSPORT_SHARED_MEMORY``: the chunk has ``ringSlot`` and no pixels).

2. **Binary** frames: one frame chunk with inline pixels (``TRANSPORT_INLINE``, the default), laid
   out as::

       offset  size  content
       0       4     magic, the ASCII bytes "SSC1" (0x53 0x53 0x43 0x31)
       4       4     N, unsigned 32-bit little-endian: length of the JSON header
       8       N     UTF-8 proto3 JSON of the shotstream.v1.FrameChunk, with `pixels` cleared
                     (same JSON rules as text frames; this is the FrameChunk itself, NOT wrapped
                     in a ServerMessage: {"chunkSeq": "1", "eventId": ..., "numFrames": 9, ...})
       8+N     P     the raw pixels, P = numFrames * height * width * C bytes, where C = 3 for
                     FRAME_FORMAT_RGB8 and 4 for FRAME_FORMAT_RGBA8 (alpha 255); frames in
                     order, each row-major with the top row first, channels interleaved (RGB or
                     RGBA), no padding. P is also simply the frame length minus 8 minus N.

   Reading it (Godot 4)::

       var data := ws.get_packet()
       if not ws.was_string_packet():                 # after get_packet(), not before
           var n := data.decode_u32(4)                 # little-endian
           var header: Dictionary = JSON.parse_string(data.slice(8, 8 + n).get_string_from_utf8())
           var pixels := data.slice(8 + n)
           # frame i: Image.create_from_data(w, h, false, Image.FORMAT_RGBA8 (or RGB8),
           #                                  pixels.slice(i * w * h * c, (i + 1) * w * h * c))

   Unity C#: ``n = BinaryPrimitives.ReadUInt32LittleEndian(buf.AsSpan(4))``, header
   ``Encoding.UTF8.GetString(buf, 8, (int)n)``, pixels from ``8 + n`` (``Texture2D.LoadRawTextureData``
   per frame with ``TextureFormat.RGBA32``/``RGB24``; Unity's texture rows go bottom-up, so flip
   vertically or sample with v flipped).

   The chunk's ``chunkSeq`` (a string in the header) is what the client acks.

   Size: one chunk of the 1.3B model is up to 12 x 480 x 832 x 4 = 19.2 MB (RGBA8; 14.4 MB RGB8)
   plus under 1 KB of header. Clients must accept messages that large: Godot 4's
   ``WebSocketPeer.inbound_buffer_size`` defaults to 65535 and must be raised before
   ``connect_to_url`` to hold every chunk that may be in flight (credits x largest chunk + a
   margin; a chunk that does not fit is dropped); a Unity ``ClientWebSocket`` reader appends
   ``ReceiveAsync`` results until ``EndOfMessage``. ``SessionOpened`` gives width, height and the
   frames per chunk, so a client can size its buffers and textures up front.

Any other binary layout or magic is reserved for future versions; a client should ignore a binary
frame whose magic it does not know.

Connection end
==============
After ``closed`` (or a fatal ``error``) the server waits up to 2 s for the client to close the
WebSocket (clients should: some WebSocket stacks, e.g. Godot's native one, drop messages that arrive
just before a close frame), then closes it itself with code 1000 and a reason that repeats the end
(``closed: client``, ``error 8: the server is full ...``; at most 123 bytes). When the client
closes or drops the connection, the session ends and its resources (GPU caches, ring file, its
slot in the session limits) are freed, as if it had sent ``close``. On server shutdown an open
session gets ``{"closed": {"reason": "server shutdown"}}`` and then a normal close (1000); if the
gateway itself stops first, connections are closed with 1001 (going away) and no ``closed``.
The server pings every 20 s; WebSocket libraries answer pings on their own.

Frames carry no compression (permessage-deflate is off: pixels compress poorly and the cost would
be latency).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import http
import json
import logging
import ssl
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import grpc
from google.protobuf import json_format
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .protocol import ProtocolError, error_message, pb
from .sessions import SessionRegistry, run_session
from .settings import ServerSettings, is_loopback

log = logging.getLogger(__name__)

PATH = "/v1/direct"
CHUNK_MAGIC = b"SSC1"
_HEADER = struct.Struct("<4sI")  # magic, JSON header length (u32 little-endian)
MAX_QUEUE = 4  # incoming frames buffered per connection before TCP backpressure
# A peer that stops reading during the closing handshake holds its session (GPU cache, ring) until
# this runs out; websockets' default is 10 s.
CLOSE_TIMEOUT_S = 2.0
CLIENT_CLOSE_WAIT_S = 2.0  # after `closed` / a fatal error: how long the client gets to close first

__all__ = ["PATH", "CHUNK_MAGIC", "GatewayHandle", "start_gateway", "to_json", "encode_server_message",
           "decode_chunk_frame", "parse_client_message"]


# -- encoding (also used by tests and clients written in Python) ---------------------------------


def to_json(msg) -> str:
    """proto3 JSON as the gateway writes it: camelCase, enum names, 64-bit ints as strings, compact."""
    return json_format.MessageToJson(msg, preserving_proto_field_name=False, indent=None, ensure_ascii=False)


def encode_server_message(msg: pb.ServerMessage) -> str | bytes:
    """The WebSocket frame for one server message: bytes for an inline-pixel chunk, else text."""
    if msg.WhichOneof("kind") == "chunk" and msg.chunk.WhichOneof("payload") == "pixels":
        chunk = msg.chunk
        header = pb.FrameChunk()
        for field in chunk.DESCRIPTOR.fields:  # everything but the pixels (ListFields would copy them out)
            name = field.name
            if name == "pixels":
                continue
            if field.is_repeated:
                getattr(header, name).extend(getattr(chunk, name))
            elif field.message_type is not None:
                if chunk.HasField(name):
                    getattr(header, name).CopyFrom(getattr(chunk, name))
            else:
                setattr(header, name, getattr(chunk, name))
        header_json = to_json(header).encode("utf-8")
        return b"".join((_HEADER.pack(CHUNK_MAGIC, len(header_json)), header_json, chunk.pixels))
    return to_json(msg)


def decode_chunk_frame(data: bytes) -> tuple[pb.FrameChunk, bytes]:
    """Inverse of the binary chunk framing: ``(FrameChunk without pixels, pixel bytes)``."""
    if len(data) < _HEADER.size:
        raise ValueError(f"binary frame of {len(data)} bytes is shorter than the {_HEADER.size}-byte header")
    magic, n = _HEADER.unpack_from(data)
    if magic != CHUNK_MAGIC:
        raise ValueError(f"unknown binary frame magic {magic!r} (expected {CHUNK_MAGIC!r})")
    if _HEADER.size + n > len(data):
        raise ValueError(f"JSON header length {n} runs past the end of a {len(data)}-byte frame")
    header = json_format.Parse(data[_HEADER.size:_HEADER.size + n].decode("utf-8"), pb.FrameChunk())
    return header, data[_HEADER.size + n:]


def parse_client_message(data: str | bytes) -> pb.ClientMessage:
    """One client frame -> ClientMessage, or ProtocolError(INVALID_ARGUMENT, non-fatal)."""
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    if not isinstance(data, str):
        raise ProtocolError(invalid, f"binary frames are not accepted from clients (got {len(data)} bytes): send "
                                     "each shotstream.v1.ClientMessage as proto3 JSON in a text frame")
    try:
        return json_format.Parse(data, pb.ClientMessage(), ignore_unknown_fields=False)
    except Exception as exc:  # noqa: BLE001 - ParseError, or whatever odd JSON trips inside the parser
        detail = " ".join(str(exc).split()) or type(exc).__name__
        with contextlib.suppress(ValueError, RecursionError):  # e.g. '[' * 5000: too deep for json too
            value = json.loads(data)
            if not isinstance(value, dict):
                names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
                detail = f"the frame holds {names.get(type(value), 'a number')}, not a JSON object"
        if len(detail) > 500:
            detail = detail[:500] + "..."
        raise ProtocolError(invalid, f"could not parse the text frame as shotstream.v1.ClientMessage proto3 JSON "
                                     f"(e.g. {{\"cue\": {{\"prompt\": \"...\"}}}}): {detail}") from None


# -- server ---------------------------------------------------------------------------------------


@dataclass
class GatewayHandle:
    server: Server
    port: int

    async def close(self) -> None:
        """Stop accepting, close every connection (their sessions end and are freed), wait for handlers."""
        self.server.close()
        await self.server.wait_closed()


async def start_gateway(registry: SessionRegistry, settings: ServerSettings) -> GatewayHandle:
    """Serve ``/v1/direct`` on ``settings.host``:``settings.gateway_port`` (0 = a free port)."""
    if settings.gateway_port < 0:
        raise ValueError("the gateway is off (gateway_port < 0)")

    async def handler(ws: ServerConnection) -> None:
        await _serve_connection(registry, ws)

    ssl_context = None
    if settings.tls_cert is not None:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(settings.tls_cert, settings.tls_key)

    def start(port: int) -> Server:
        return serve(handler, settings.host, port, process_request=_checker(settings),
                     max_size=settings.max_control_message_bytes, max_queue=MAX_QUEUE, compression=None,
                     close_timeout=CLOSE_TIMEOUT_S, ssl=ssl_context, logger=log)

    server = await start(settings.gateway_port)
    ports = sorted({sock.getsockname()[1] for sock in server.sockets})
    if len(ports) > 1 and settings.gateway_port == 0:  # e.g. "localhost" -> IPv4 and IPv6, each its own free port
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        server = await start(port)
        ports = [port]
    log.debug("engine gateway listening on %s://%s:%d%s", "wss" if ssl_context else "ws", settings.host, ports[0], PATH)
    return GatewayHandle(server, ports[0])


def _checker(settings: ServerSettings):
    token = settings.token.encode() if settings.token else None

    def process_request(ws: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if token is not None:
            offered = list(parse_qs(url.query).get("token", []))
            auth = request.headers.get("Authorization", "")
            scheme, _, value = auth.partition(" ")
            if scheme.lower() == "bearer":
                offered.append(value.strip())
            if not any(hmac.compare_digest(o.encode(), token) for o in offered):
                why = "the token is wrong" if offered else "no token was sent"
                response = ws.respond(http.HTTPStatus.UNAUTHORIZED,
                                      f"401 Unauthorized: {why}. This server requires its bearer token: send the "
                                      "header `Authorization: Bearer <token>` or, where headers cannot be set (web "
                                      "builds), the query parameter `?token=<token>`.\n")
                response.headers["WWW-Authenticate"] = 'Bearer realm="shotstream"'
                return response
        else:
            origin = request.headers.get("Origin")
            if origin is not None and not _loopback_origin(origin):
                return ws.respond(http.HTTPStatus.FORBIDDEN,
                                  f"403 Forbidden: browser pages from {origin} may not use this server without a "
                                  "token. Start the server with a token (--token) and pass it as `?token=`.\n")
        if url.path != PATH:
            return ws.respond(http.HTTPStatus.NOT_FOUND,
                              f"404 Not Found: no WebSocket endpoint at {url.path!r}; the ShotStream engine gateway "
                              f"serves {PATH} (one Direct session per connection).\n")
        return None

    return process_request


def _loopback_origin(origin: str) -> bool:
    try:
        host = urlsplit(origin).hostname
    except ValueError:
        return False
    return host is not None and is_loopback(host)


async def _serve_connection(registry: SessionRegistry, ws: ServerConnection) -> None:
    ending: list[str] = []  # why the session ended, once the server has said so

    async def send(msg: pb.ServerMessage) -> None:
        await ws.send(encode_server_message(msg))
        kind = msg.WhichOneof("kind")
        if kind == "closed":
            ending[:] = [f"closed: {msg.closed.reason}"]
        elif kind == "error" and msg.error.fatal:
            ending[:] = [f"error {msg.error.code}: {msg.error.message}"]

    incoming = _incoming(ws)
    try:
        address = ws.remote_address
        unsent = await run_session(registry, incoming, send, str(address[0]) if address else "unknown")
        if unsent is not None:  # the client is not reading: close at once with the reason
            await ws.close(1008, _close_reason(f"error {unsent.code.value[0]}: {unsent.message}"))
            return
        if ending:  # the client has every message: let it close first, then close with the reason
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(ws.wait_closed(), CLIENT_CLOSE_WAIT_S)
            await ws.close(1000, _close_reason(ending[0]))
    except ConnectionClosed:
        pass  # the client went away; run_session has freed the session
    except Exception:  # noqa: BLE001 - never let one connection take the gateway down
        log.exception("gateway connection from %s failed", ws.remote_address)
    finally:
        with contextlib.suppress(Exception):
            await incoming.aclose()


def _close_reason(text: str) -> str:
    """``text`` cut to the 123 UTF-8 bytes a WebSocket close reason may hold."""
    data = text.encode("utf-8")
    if len(data) <= 123:
        return text
    return data[:120].decode("utf-8", "ignore") + "..."


async def _incoming(ws: ServerConnection) -> AsyncIterator[pb.ClientMessage]:
    """Client frames as ClientMessages; ends when the client closes or drops the connection."""
    while True:
        try:
            data = await ws.recv()
        except ConnectionClosed:
            return
        try:
            msg = parse_client_message(data)
        except ProtocolError as exc:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(to_json(error_message(exc)))
            continue
        yield msg
