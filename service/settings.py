"""Server settings and limits, with the defaults a local game-dev setup wants.

Every bound on what a client can make the server hold is a field here; :meth:`ServerSettings.limits`
lists them (ServerInfo.limits and the README's table of limits show the same names).
"""

from __future__ import annotations

import ipaddress
import os
import stat
from dataclasses import dataclass, fields
from pathlib import Path

# The settings that bound what clients can make the server hold (reported in ServerInfo.limits).
LIMIT_NAMES = (
    "max_sessions", "max_sessions_per_peer", "max_chunks_in_flight", "max_queued_cues", "max_outbox_messages",
    "max_outbox_bytes", "max_refusals", "max_prompt_chars", "max_caption_chars", "max_client_name_chars",
    "max_event_id_chars", "max_tags", "max_tag_chars", "max_story_shots", "max_control_message_bytes",
    "max_message_bytes", "open_timeout_s", "idle_timeout_s", "take_file_mode", "max_log_chars",
    "max_take_full_shots", "max_full_renders", "max_snapshot_bytes", "snapshot_part_bytes", "max_cue_log_shots",
)
DECODER_NAMES = ("wan", "tae")


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"  # loopback by default; anything else requires a token
    grpc_port: int = 50051
    gateway_port: int = 50052  # WebSocket engine gateway; 0 = pick a free port, -1 = off
    metrics_port: int = -1  # Prometheus endpoint, always on 127.0.0.1 (never exposed); -1 = off
    # HTTP readiness/liveness for probes and proxies (GET /ready, /live; status only), on `host`; 0 = any, -1 = off
    ready_port: int = -1
    drain_grace_s: float = 30.0  # SIGTERM: how long open sessions may go on before `closed{"server draining"}`
    token: str | None = None  # bearer token clients must send
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_sessions: int = 4
    max_sessions_per_peer: int = 2  # per client IP address (not the client-chosen name)
    max_prompt_chars: int = 2000
    max_caption_chars: int = 10_000
    max_client_name_chars: int = 128
    max_event_id_chars: int = 128
    max_tags: int = 16
    max_tag_chars: int = 64
    max_queued_cues: int = 16  # cues waiting for their shot, per session
    max_outbox_messages: int = 256  # server messages (chunks aside) waiting for a client that is not reading
    max_outbox_bytes: int = 1 << 20  # their bytes
    max_refusals: int = 8  # limit refusals in a row before the session ends (fatal RESOURCE_EXHAUSTED)
    max_story_shots: int = 128  # shots in one RenderStory request
    open_timeout_s: float = 10.0  # a Direct stream / WebSocket must send `open` within this
    idle_timeout_s: float = 600.0  # a session with no client message for this long is closed
    default_chunks_in_flight: int = 2
    max_chunks_in_flight: int = 8
    max_message_bytes: int = 64 * 1024 * 1024  # one RGBA chunk at 480x832 is 19 MB
    max_control_message_bytes: int = 64 * 1024  # client -> server messages carry text only
    max_log_chars: int = 500  # client-supplied text in one log line is cut to this
    ring_dir: Path | None = None  # None: /dev/shm where it exists, else the temp folder
    takes_dir: Path = Path("takes")  # where StartTake writes MP4s (relative: to the server's working folder)
    take_file_mode: int = 0o600  # 0o600 (server's user only) or 0o640 (its group may read takes too)
    gpu_memory_reserve_bytes: int = 1 << 30  # keep this much free when admitting a session
    stats_every_chunks: int = 7
    warm_up: bool = True  # run one throwaway 1-chunk shot at start so the first session pays no cold start
    # Refuse a session the GPU cannot keep at playback speed (measured frames/s, not only memory);
    # None = on for a CUDA engine, off on the CPU (the tiny test engine is no measure of a GPU).
    realtime_admission: bool | None = None
    max_queued_units: int = 2  # DiT forwards launched ahead of the GPU; more only delays a fresh cue's shot
    default_decoder: str = "wan"  # what a session decodes with unless its OpenSession asks ("tae": needs one loaded)
    max_take_full_shots: int = 64  # shots one full-quality take keeps latents of (~4 MB each at 480p); then it stops
    max_full_renders: int = 4  # full-quality takes recording or waiting for their Wan re-decode, server-wide
    # A story snapshot, either way: one arriving at OpenSession, or one a session asked for (a 1.3B story's
    # is under 40 MiB). Held in memory only, one per session at a time; never written to disk.
    max_snapshot_bytes: int = 64 * 1024 * 1024
    snapshot_part_bytes: int = 1024 * 1024  # the size of the ServerMessage.snapshot parts a snapshot is sent in
    max_cue_log_shots: int = 1024  # shots a session's cue log keeps (the oldest entries go first)

    def __post_init__(self) -> None:
        object.__setattr__(self, "takes_dir", Path(self.takes_dir))  # a str from config files works too
        if not is_loopback(self.host) and not self.token:
            raise ValueError(f"binding to {self.host} exposes the service beyond this machine: "
                             "set a bearer token (--token-file or SHOTSTREAM_TOKEN), or bind to 127.0.0.1")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both a certificate and its private key")
        if not 1 <= self.default_chunks_in_flight <= self.max_chunks_in_flight:
            raise ValueError("default_chunks_in_flight must be between 1 and max_chunks_in_flight")
        if self.take_file_mode not in (0o600, 0o640):
            raise ValueError(f"take_file_mode must be 0o600 or 0o640, not {self.take_file_mode:#o}")
        if self.default_decoder not in DECODER_NAMES:
            raise ValueError(f"default_decoder must be one of {DECODER_NAMES}, not {self.default_decoder!r}")
        if self.drain_grace_s < 0:
            raise ValueError(f"drain_grace_s must be 0 or more, not {self.drain_grace_s}")
        for name in LIMIT_NAMES:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")

    def limits(self) -> dict[str, float]:
        """Every client-facing bound by its setting name (ServerInfo.limits)."""
        return {name: float(getattr(self, name)) for name in LIMIT_NAMES}


assert set(LIMIT_NAMES) <= {f.name for f in fields(ServerSettings)}


def read_token_file(path: str | Path) -> tuple[str, str | None]:
    """The token in ``path`` (surrounding whitespace stripped) and a warning if other users may read the file."""
    p = Path(path)
    try:
        token = p.read_text(encoding="utf-8").strip()
        mode = p.stat().st_mode
    except OSError as exc:
        raise ValueError(f"cannot read the token file {p}: {exc.strerror or exc}") from None
    if not token:
        raise ValueError(f"the token file {p} is empty")
    warning = None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        warning = f"the token file {p} is readable by other users (mode {stat.S_IMODE(mode):o}): chmod 600 it"
    return token, warning


def url_host(host: str) -> str:
    """``host`` as it goes before ``:port`` in an address or URL (IPv6 literals in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
