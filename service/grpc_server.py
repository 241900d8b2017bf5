"""The gRPC door: ``shotstream.v1.ShotStream`` on ``grpc.aio``, plus auth, health and reflection.

Error convention (both streaming RPCs): a client mistake that ends the call is reported twice,
consistently: ``Direct`` first sends the ``Error`` message (``fatal=true``) on the stream, then ends
the call with the same status code and message; ``RenderStory`` has no error message in its event
stream, so it ends the call with the status alone. Non-fatal mistakes (a bad cue, an ack for an
unknown chunk) are ``Error`` messages only; the session goes on. A session that the server closes
(``closed{reason: "server shutdown"}``) ends with status OK on ``Direct`` and UNAVAILABLE on
``RenderStory`` (whose story did not finish).

Backpressure: ``Direct`` writes with ``context.write``, which waits for gRPC flow control, and the
session never generates more than its credits ahead of the client's acks. ``RenderStory`` acks each
chunk itself right after gRPC has taken it (the async generator resumes only then), with 2 credits.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import metadata

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2

from engine_core import ShotStreamEngine

from .protocol import (PROTOCOL_VERSION, ProtocolError, check_protocol_version, decoder_enum, error_message, pb,
                       pb_grpc, status_code)
from .cue_log import replay_shots
from .checks import check_prompt
from .sessions import SessionRegistry, run_session
from .grpc_guard import DecodeGuard
from .logs import clip
from .settings import ServerSettings, is_loopback, url_host
from .telemetry import gpu_info

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ShotStream"].full_name  # "shotstream.v1.ShotStream"
HEALTH_SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name  # "grpc.health.v1.Health"
RENDER_STORY_CLIENT = "render-story"  # client name RenderStory sessions count against (per-client limit)
RENDER_STORY_CREDITS = 2


def server_version() -> str:
    try:
        return metadata.version("shotstream-bridge")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "0+unknown"


class ShotStreamServicer(pb_grpc.ShotStreamServicer):
    def __init__(self, registry: SessionRegistry, settings: ServerSettings):
        self.registry, self.settings = registry, settings
        self.engine: ShotStreamEngine = registry.engine

    # -- Direct -------------------------------------------------------------------------------

    async def Direct(self, request_iterator: AsyncIterator[pb.ClientMessage], context: grpc.aio.ServicerContext):
        fatal: list[pb.Error] = []

        async def send(msg: pb.ServerMessage) -> None:
            if msg.WhichOneof("kind") == "error" and msg.error.fatal:
                fatal.append(msg.error)
            await context.write(msg)

        try:
            unsent = await run_session(self.registry, request_iterator, send, context.peer())
            if unsent is not None:
                fatal.append(error_message(unsent).error)
        except DecodeError as exc:  # bytes that are no ClientMessage (e.g. a string field with bad UTF-8)
            await send(error_message(ProtocolError(
                grpc.StatusCode.INVALID_ARGUMENT, f"could not decode a client message: {exc}", fatal=True)))
        if fatal:
            await context.abort(status_code(fatal[-1].code), fatal[-1].message)

    # -- RenderStory --------------------------------------------------------------------------

    async def RenderStory(self, request: pb.RenderStoryRequest, context: grpc.aio.ServicerContext):
        try:
            request = replay_request(request)
            cues = self._story_cues(request)
            session = self.registry.open(pb.OpenSession(
                protocol_version=request.protocol_version, client_name=RENDER_STORY_CLIENT,
                global_caption=request.global_caption, seed=request.seed, frame_format=request.frame_format,
                transport=pb.TRANSPORT_INLINE, decoder=request.decoder,
                max_chunks_in_flight=min(RENDER_STORY_CREDITS, self.settings.max_chunks_in_flight)), context.peer())
        except ProtocolError as exc:
            await context.abort(exc.code, exc.message)
        cfg = self.engine.config
        shots_total = len(cues)
        frames_total = sum(cfg.pixel_frames(c.num_chunks or cfg.stream.chunks_per_shot) for c in cues)
        shots_done = frames_done = 0

        def progress() -> pb.RenderStoryEvent:
            return pb.RenderStoryEvent(progress=pb.RenderProgress(shots_done=shots_done, shots_total=shots_total,
                                                                  frames_done=frames_done, frames_total=frames_total))

        failure: tuple[grpc.StatusCode, str] | None = None
        take = request.HasField("take")  # recording: the story ends with the take's take_saved
        try:
            try:
                if take:
                    session.handle(pb.ClientMessage(start_take=request.take))
                for cue in cues:
                    session.handle(pb.ClientMessage(cue=cue))  # the session's own checks (e.g. caption + prompt)
            except ProtocolError as exc:
                where = f"shot {exc.event_id.removeprefix('shot')}" if exc.event_id else "take"
                failure = (exc.code, f"{where}: {exc.message}")
            self.registry.worker.notify()
            while failure is None and (shots_done < shots_total or take):
                msg = await session.outbox.get()
                kind = msg.WhichOneof("kind")
                if kind == "shot_started":
                    yield pb.RenderStoryEvent(shot_started=msg.shot_started)
                elif kind == "chunk":
                    session.delivered(msg.chunk.chunk_seq)
                    yield pb.RenderStoryEvent(chunk=msg.chunk)  # resumes once gRPC has taken the message
                    frames_done += msg.chunk.num_frames
                    session.handle(pb.ClientMessage(ack=pb.Ack(chunk_seq=msg.chunk.chunk_seq)))
                    self.registry.worker.notify()
                    if not msg.chunk.last_in_shot:
                        yield progress()
                elif kind == "shot_finished":
                    shots_done += 1
                    yield pb.RenderStoryEvent(shot_finished=msg.shot_finished)
                    yield progress()
                    if take and shots_done == shots_total:
                        session.handle(pb.ClientMessage(stop_take=pb.StopTake()))
                elif kind == "take_saved":
                    take = False
                    yield pb.RenderStoryEvent(take_saved=msg.take_saved)
                elif kind == "error":  # generation or the take failed (we only send valid input)
                    failure = (status_code(msg.error.code), msg.error.message)
                    break
                elif kind == "closed":
                    failure = (grpc.StatusCode.UNAVAILABLE,
                               f"the story was interrupted after {shots_done} of {shots_total} shots: "
                               f"{msg.closed.reason}")
                    break
                # cue_accepted and stats carry nothing a headless render needs
        finally:  # also on client cancel (the generator is closed at its pending yield)
            if session.takes.recording:  # cancelled mid-story: the take's file still finishes (in the background)
                session.takes.stop()
            self.registry.close(session)
        if failure is not None:
            await context.abort(*failure)

    def _story_cues(self, request: pb.RenderStoryRequest) -> list[pb.Cue]:
        """The request's shots as WAIT cues, checked before any session (GPU memory) is taken."""
        check_protocol_version(request.protocol_version)
        if not request.shots:
            raise ProtocolError(grpc.StatusCode.INVALID_ARGUMENT, "the story has no shots: add at least one StoryShot")
        if len(request.shots) > self.settings.max_story_shots:
            raise ProtocolError(grpc.StatusCode.INVALID_ARGUMENT,
                                f"the story has {len(request.shots)} shots; the limit is {self.settings.max_story_shots} "
                                "(max_story_shots): render it in parts, or play it through Direct")
        limit, max_chunks = self.settings.max_prompt_chars, self.engine.config.stream.chunks_per_shot
        cues = []
        for i, shot in enumerate(request.shots):
            try:
                check_prompt(shot.prompt, shot.num_chunks, limit, max_chunks)
            except ProtocolError as exc:
                raise ProtocolError(exc.code, f"shot {i}: {exc.message}") from None
            cues.append(pb.Cue(event_id=f"shot{i}", prompt=shot.prompt, num_chunks=shot.num_chunks,
                               mode=pb.CUE_MODE_WAIT))
        return cues

    # -- GetServerInfo ------------------------------------------------------------------------

    async def GetServerInfo(self, request: pb.GetServerInfoRequest, context: grpc.aio.ServicerContext):
        return server_info(self.registry, self.settings)


def replay_request(request: pb.RenderStoryRequest) -> pb.RenderStoryRequest:
    """A request with a cue log as the same request with the log's story: its caption, seed, decoder (unless
    the request names one) and finished shots, each with the chunks it made."""
    if not request.HasField("cue_log"):
        return request
    log_ = request.cue_log
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    if request.shots:
        raise ProtocolError(invalid, "the request has both shots and a cue_log: replay the log, or render the shots")
    if log_.next_shot:
        raise ProtocolError(invalid, f"the cue log is one page (more entries from shot {log_.next_shot}): fetch every "
                                     "page and merge them (the SDK's session.cue_log() does)")
    if log_.dropped_shots:
        raise ProtocolError(grpc.StatusCode.FAILED_PRECONDITION,
                            f"the cue log dropped its first {log_.dropped_shots} shots (max_cue_log_shots): it "
                            "cannot be replayed from the story's start; export logs more often, or keep a snapshot")
    if log_.first_shot_index:
        raise ProtocolError(grpc.StatusCode.FAILED_PRECONDITION,
                            f"the cue log starts at shot {log_.first_shot_index}: its session continued a snapshot, "
                            "which RenderStory cannot take; replay it with `shotstream story --from-snapshot "
                            "SNAPSHOT --cue-log LOG`")
    shots = [pb.StoryShot(prompt=prompt, num_chunks=chunks) for prompt, chunks in replay_shots(log_)]
    if not shots:
        raise ProtocolError(invalid, "the cue log has no finished shot to replay")
    replay = pb.RenderStoryRequest()
    replay.CopyFrom(request)
    replay.ClearField("cue_log")
    replay.global_caption, replay.seed = log_.global_caption, log_.seed
    replay.decoder = request.decoder or log_.decoder
    replay.shots.extend(shots)
    return replay


def server_info(registry: SessionRegistry, settings: ServerSettings) -> pb.ServerInfo:
    engine = registry.engine
    cfg = engine.config
    info = pb.ServerInfo(
        protocol_version=PROTOCOL_VERSION, server_version=server_version(), model=cfg.name,
        weights=engine.weights_label, random_weights=engine.random_weights, device=str(engine.device),
        width=cfg.stream.width, height=cfg.stream.height, fps=cfg.stream.fps, max_sessions=settings.max_sessions,
        max_sessions_per_client=settings.max_sessions_per_peer, open_sessions=len(registry.sessions),
        max_prompt_chars=settings.max_prompt_chars, max_chunks_per_shot=cfg.stream.chunks_per_shot,
        max_chunks_in_flight=settings.max_chunks_in_flight, limits=settings.limits(),
        attention=engine.attention.describe(), fast_path=engine.fast.describe(), fp8=engine.fp8,
        decoders=[decoder_enum(d) for d in engine.decoders], default_decoder=decoder_enum(settings.default_decoder),
        tae=engine.tae_label)
    gpu = gpu_info(engine.device)
    if gpu is not None:
        info.gpu.CopyFrom(pb.GpuInfo(**gpu))
    return info


# -- auth ---------------------------------------------------------------------------------------


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Requires ``authorization: Bearer <token>`` metadata on every call; health checks are open only on a
    loopback bind (local probes), behind the token like everything else on any other bind."""

    def __init__(self, token: str, open_health: bool):
        self._expected = f"Bearer {token}".encode()
        self.OPEN_PREFIXES = (f"/{HEALTH_SERVICE_NAME}/",) if open_health else ()

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable],
                                handler_call_details: grpc.HandlerCallDetails):
        method = handler_call_details.method or ""
        if method.startswith(self.OPEN_PREFIXES):
            return await continuation(handler_call_details)
        values = [v for k, v in (handler_call_details.invocation_metadata or ()) if k.lower() == "authorization"]
        if not values:
            message = ("missing bearer token: this server requires metadata `authorization: Bearer <token>` "
                       "(the token the server was started with)")
        elif not hmac.compare_digest((values[0] if isinstance(values[0], bytes) else values[0].encode()),
                                     self._expected):
            message = "invalid bearer token: `authorization` metadata does not match the server's token"
        else:
            return await continuation(handler_call_details)
        log.warning("rejected %s: %s", clip(method, 200), message.split(":")[0])
        handler = await continuation(handler_call_details)
        return _denying_handler(handler, message)


def _denying_handler(handler: grpc.RpcMethodHandler | None, message: str) -> grpc.RpcMethodHandler:
    async def deny(request_or_iterator, context: grpc.aio.ServicerContext):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if handler is None:  # unknown method: let it be UNAUTHENTICATED too (reveals nothing)
        return grpc.unary_unary_rpc_method_handler(deny)
    kwargs = dict(request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny, **kwargs)
    return grpc.unary_unary_rpc_method_handler(deny, **kwargs)


# -- assembly -----------------------------------------------------------------------------------


def server_options(settings: ServerSettings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.max_control_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 0),  # a busy port must fail loudly, not be shared with another server
    ]


def build_grpc_server(registry: SessionRegistry, settings: ServerSettings):
    """A configured, not yet started ``grpc.aio`` server; returns ``(server, health_servicer, port)``."""
    from grpc_health.v1 import health, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection

    interceptors = [BearerTokenInterceptor(settings.token, is_loopback(settings.host))] if settings.token else []
    interceptors.append(DecodeGuard())  # inside auth: an unauthenticated call is UNAUTHENTICATED, never decoded
    server = grpc.aio.server(interceptors=interceptors, options=server_options(settings))
    pb_grpc.add_ShotStreamServicer_to_server(ShotStreamServicer(registry, settings), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME), server)
    address = f"{url_host(settings.host)}:{settings.grpc_port}"
    try:
        if settings.tls_cert is not None:
            credentials = grpc.ssl_server_credentials([(settings.tls_key.read_bytes(),
                                                        settings.tls_cert.read_bytes())])
            port = server.add_secure_port(address, credentials)
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpc's "Failed to bind to address ..."
        raise OSError(f"could not bind the gRPC server to {address}: the port is in use or the address is not "
                      f"one of this machine's ({exc})") from None
    if port == 0:  # older grpc returns 0 instead of raising
        raise OSError(f"could not bind the gRPC server to {address}: the port is in use?")
    return server, health_servicer, port
