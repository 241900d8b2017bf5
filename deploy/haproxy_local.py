"""deploy/haproxy.cfg for servers at known addresses (one machine, or hosts without DNS discovery).

The only change: each backend's ``server-template`` line (servers found through Kubernetes DNS) becomes
one ``server`` line per server, with that server's own ports; the frontends, balancing, health checks
and timeouts are the file's, unchanged. tests/test_scaleout.py runs HAProxy with this.

    python deploy/haproxy_local.py 127.0.0.1:50051:50052:8080 127.0.0.1:50061:50062:8081 > haproxy.local.cfg
    SHOTSTREAM_MAX_SESSIONS=4 HAPROXY_STATS_SOCKET=/tmp/haproxy.sock haproxy -f haproxy.local.cfg

Each argument is ``HOST:GRPC_PORT:GATEWAY_PORT:READY_PORT`` (the servers' --port, --gateway-port and
--ready-port; GATEWAY_PORT -1 leaves the server out of the WebSocket backend).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

CONFIG = Path(__file__).resolve().parent / "haproxy.cfg"
_TEMPLATE = re.compile(r"^(\s*)server-template\s+\S+\s+\S+\s+\"\$\{SHOTSTREAM_SERVERS\}:(\d+)\"(.*)$", re.M)
_DNS_ONLY = re.compile(r"\s+(resolvers\s+\S+|init-addr\s+\S+)")
_DOOR_PORTS = {"50051": "grpc_port", "50052": "gateway_port"}  # the ports the template lines name


@dataclass(frozen=True)
class Server:
    host: str
    grpc_port: int
    gateway_port: int
    ready_port: int

    @classmethod
    def parse(cls, text: str) -> Server:
        host, grpc, gateway, ready = text.rsplit(":", 3)
        return cls(host.strip("[]"), int(grpc), int(gateway), int(ready))


def local_config(servers: list[Server], text: str | None = None) -> str:
    """deploy/haproxy.cfg (or ``text``) with one ``server`` line per server in each backend."""
    text = CONFIG.read_text(encoding="utf-8") if text is None else text
    if not servers:
        raise ValueError("no servers")

    def expand(match: re.Match) -> str:
        indent, port, rest = match.groups()
        door = _DOOR_PORTS[port]
        options = _DNS_ONLY.sub("", rest).strip()
        lines = []
        for i, server in enumerate(servers):
            door_port = getattr(server, door)
            if door_port < 0:
                continue
            address = f"[{server.host}]" if ":" in server.host else server.host
            lines.append(f"{indent}server gpu{i} {address}:{door_port} port {server.ready_port} {options}".rstrip())
        return "\n".join(lines) or f"{indent}# no server has this door"

    out, n = _TEMPLATE.subn(expand, text)
    if n != 2:
        raise ValueError(f"expected the 2 server-template lines of deploy/haproxy.cfg, found {n}")
    return out


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 2
    sys.stdout.write(local_config([Server.parse(a) for a in argv]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
