"""Server settings and limits, with the defaults a local game-dev setup wants."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"  # loopback by default; anything else requires a token
    grpc_port: int = 50051
    gateway_port: int = 50052  # WebSocket engine gateway; 0 = pick a free port, -1 = off
    metrics_port: int = -1  # Prometheus endpoint; -1 = off
    token: str | None = None  # bearer token clients must send
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_sessions: int = 4
    max_sessions_per_client: int = 2
    max_prompt_chars: int = 2000
    max_caption_chars: int = 10_000
    default_chunks_in_flight: int = 2
    max_chunks_in_flight: int = 8
    max_message_bytes: int = 64 * 1024 * 1024  # one RGBA chunk at 480x832 is 19 MB
    max_control_message_bytes: int = 64 * 1024  # client -> server messages carry text only
    ring_dir: Path | None = None  # None: /dev/shm where it exists, else the temp folder
    takes_dir: Path = Path("takes")  # where StartTake writes MP4s (relative: to the server's working folder)
    gpu_memory_reserve_bytes: int = 1 << 30  # keep this much free when admitting a session
    stats_every_chunks: int = 7

    def __post_init__(self) -> None:
        object.__setattr__(self, "takes_dir", Path(self.takes_dir))  # a str from config files works too
        if not is_loopback(self.host) and not self.token:
            raise ValueError(f"binding to {self.host} exposes the service beyond this machine: "
                             "set a bearer token (--token or SHOTSTREAM_TOKEN), or bind to 127.0.0.1")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both a certificate and its private key")
        if not 1 <= self.default_chunks_in_flight <= self.max_chunks_in_flight:
            raise ValueError("default_chunks_in_flight must be between 1 and max_chunks_in_flight")


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
