"""Scale-out groundwork (issue 13): readiness, load in the health status, SIGTERM drain, and three
`shotstream serve` processes behind a real HAProxy running deploy/haproxy.cfg, on loopback.

In-process tests check the readiness endpoint, the health status and the drain on one server. The
HAProxy tests start three `shotstream serve` processes (tiny model, --max-sessions 3; forked from one
launcher after the heavy imports, tests/fork_servers.py, so three start-ups cost about one on a small
CPU; each runs the serve command line and gets its own signals) and HAProxy with the deploy config
(its server-template lines swapped for the three local servers by deploy/haproxy_local.py), and check
that sessions spread by least sessions, that a full server gets no new session while others have room,
and that a draining server (SIGTERM) finishes its sessions, takes no new ones, closes the rest with
"server draining" after its grace and exits 0. Every wait polls an observable condition (HAProxy's
stats socket, a server's GetServerInfo, a message) with a deadline. Without haproxy the HAProxy tests
skip, except under CI=true, where they fail (scripts/test.sh installs it). The Kubernetes manifests
in deploy/k8s are validated against the API's schemas offline (kubernetes-validate) and against the
server's own flags.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from websockets.asyncio.client import connect

from engine_core import TINY, ShotStreamEngine
from service.grpc_server import SERVICE_NAME
from service.protocol import PROTOCOL_VERSION, pb, pb_grpc
from service_helpers import Direct as BaseDirect
from service_helpers import serving
from system_tools import skip_or_fail

REPO = Path(__file__).resolve().parents[1]
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
MAX_SESSIONS = 3
DRAIN_GRACE_S = 6.0
DEADLINE_S = 20.0  # any one awaited condition


class Direct(BaseDirect):
    open_defaults = {"client_name": "scaleout", "global_caption": "A harbour at dawn.", "seed": 3,
                     "transport": pb.TRANSPORT_INLINE}
    close_skips_to_closed = True  # a closing session may still have a stats message on its way

    async def close(self):
        """As the base class, half-closing the request stream after `close`: through HAProxy a stream the
        server ends while the client's side is still open is reset (RST_STREAM CANCEL) after the trailers,
        which grpc reports as CANCELLED instead of the server's OK."""
        await self.send(close=pb.Close())
        await self.call.done_writing()
        msg = await self.recv()
        while msg is not None and msg.WhichOneof("kind") != "closed":
            msg = await self.recv()
        if msg is None:  # the last messages can be lost on the client side: to grpc.aio's INTERNAL "Internal error
            # from Core" when the stream ends while its half-close is still on its way (grpc/grpc#36066), or to
            # HAProxy's RST_STREAM(CANCEL) arriving before they were read; the callers check the server side
            # (every server idle again)
            code, details = await self.call.code(), await self.call.details()
            assert (code == grpc.StatusCode.INTERNAL and details == "Internal error from Core") or (
                code == grpc.StatusCode.CANCELLED and "RST_STREAM" in details), (code, details)
            return
        assert msg.closed.reason == "client", msg
        assert await self.recv() is None
        assert await self.call.code() == grpc.StatusCode.OK, await self.call.details()


@pytest.fixture(scope="module")
def engine():
    return ShotStreamEngine.random(TINY, device="cpu", seed=0)


def run(coro, timeout: float = 90):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def until(what: str, check, deadline_s: float = DEADLINE_S, every: float = 0.05):
    """Poll ``check()`` (sync or async) until it returns something truthy; fail with ``what`` at the deadline."""
    end = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < end:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {deadline_s:g} s waiting for {what} (last: {last!r})")


async def http_get(port: int, path: str, method: str = "GET", host: str = "127.0.0.1") -> tuple[int, str]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: probe\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body.strip()


async def health_of(channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME),
                                                            timeout=5)
    return reply.status


# -- one server: readiness, health, metrics, drain ------------------------------------------------


def test_readiness_health_and_metrics_follow_the_load(engine):
    async def body():
        async with serving(engine, max_sessions=2, ready_port=0, metrics_port=0) as (server, stub, channel):
            port = server.ready_port
            assert await http_get(port, "/live") == (200, "live")
            assert await http_get(port, "/ready") == (200, "ready")
            assert await health_of(channel) == SERVING
            a, b = Direct(stub), Direct(stub)
            await a.open()
            assert await http_get(port, "/ready") == (200, "ready")  # one slot left
            await b.open()
            assert await http_get(port, "/ready") == (503, "not ready: full")
            await until("health NOT_SERVING while full", lambda: _is(health_of(channel), NOT_SERVING))
            metrics = await asyncio.to_thread(_scrape, server.metrics_port)
            assert "shotstream_sessions 2.0" in metrics and "shotstream_sessions_max 2.0" in metrics
            assert "shotstream_accepting_sessions 0.0" in metrics
            await a.close()
            await until("ready again", lambda: _is(http_get(port, "/ready"), (200, "ready")))
            await until("health SERVING again", lambda: _is(health_of(channel), SERVING))
            assert "shotstream_accepting_sessions 1.0" in await asyncio.to_thread(_scrape, server.metrics_port)
            assert (await http_get(port, "/live"))[0] == 200  # whatever the load
            # only the two paths, only GET/HEAD, nothing else said
            assert (await http_get(port, "/metrics"))[0] == 404
            assert (await http_get(port, "/ready", method="POST"))[0] == 405
            status, text = await http_get(port, "/ready", method="HEAD")
            assert status == 200 and text == ""
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"garbage\r\n\r\n")
            assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 400 ")
            writer.close()
            await b.close()

    run(body())


async def _is(awaitable, expected) -> bool:
    return (await awaitable) == expected


def _scrape(port: int) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def test_drain_finishes_open_sessions_refuses_new_ones_and_closes_the_rest_after_the_grace(engine):
    async def body():
        async with serving(engine, max_sessions=3, ready_port=0) as (server, stub, channel):
            stays, leaves = Direct(stub), Direct(stub)
            await stays.open()
            await leaves.open()
            t0 = time.monotonic()
            drain = asyncio.ensure_future(server.drain(grace=3.0))
            await until("readiness says draining", lambda: _is(http_get(server.ready_port, "/ready"),
                                                                  (503, "not ready: draining")))
            assert await health_of(channel) == NOT_SERVING
            refused = Direct(stub)
            await refused.send(open=pb.OpenSession(protocol_version=PROTOCOL_VERSION, client_name="late"))
            await refused.fails(UNAVAILABLE, "draining")
            # open sessions go on: a whole shot plays during the drain
            await stays.cue("s1", "boats leave the harbour", 1)
            assert len(await stays.play(1)) == 1
            await leaves.close()  # a session that ends on its own during the drain
            msg = await stays.recv()
            while msg is not None and msg.WhichOneof("kind") != "closed":
                msg = await stays.recv()
            assert msg is not None and msg.closed.reason == "server draining", msg
            assert time.monotonic() - t0 >= 3.0 - 0.05  # not before the grace
            assert await stays.recv() is None and await stays.call.code() == grpc.StatusCode.OK
            await asyncio.wait_for(drain, 10)
            assert not server.registry.sessions

    run(body())


def test_a_drain_ends_as_soon_as_the_last_session_does(engine):
    async def body():
        async with serving(engine, max_sessions=2) as (server, stub, _channel):
            d = Direct(stub)
            await d.open()
            t0 = time.monotonic()
            drain = asyncio.ensure_future(server.drain(grace=60.0))
            await until("draining", lambda: server.registry.draining)
            await d.close()
            await asyncio.wait_for(drain, 10)
            assert time.monotonic() - t0 < 10  # far from the 60 s grace
            assert server.registry.shutting_down

    run(body())


def test_serve_flags_reach_the_settings(monkeypatch):
    from service.cli import _serve, build_parser

    seen = {}
    monkeypatch.setattr("service.server.serve", lambda settings, engine: seen.update(settings=settings))
    monkeypatch.setattr("service.cli.load_engine", lambda args: None)
    assert _serve(build_parser().parse_args(["serve", "--ready-port", "8080", "--drain-grace", "12.5"])) == 0
    assert (seen["settings"].ready_port, seen["settings"].drain_grace_s) == (8080, 12.5)
    assert _serve(build_parser().parse_args(["serve"])) == 0
    assert (seen["settings"].ready_port, seen["settings"].drain_grace_s) == (-1, 30.0)


# -- three servers behind HAProxy -----------------------------------------------------------------


def _load_haproxy_local():
    spec = importlib.util.spec_from_file_location("haproxy_local", REPO / "deploy" / "haproxy_local.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def require_haproxy() -> str:
    path = shutil.which("haproxy")
    if path is None:
        skip_or_fail("haproxy not installed (apt-get install -y --no-install-recommends haproxy)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A child process whose merged stdout/stderr is collected line by line (for bounded waits on a line)."""

    def __init__(self, args: list[str], cwd: Path, env: dict | None = None):
        self.proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)
        self.lines: list[str] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def find(self, pattern: str) -> re.Match | None:
        with self._lock:
            lines = list(self.lines)
        for line in lines:
            if m := re.search(pattern, line):
                return m
        return None

    def wait_for(self, pattern: str, deadline_s: float = 90.0) -> re.Match:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if m := self.find(pattern):
                return m
            if self.proc.poll() is not None:
                time.sleep(0.2)  # the last lines
                raise AssertionError(f"{self.proc.args[:4]} exited ({self.proc.returncode}):\n" + self.tail())
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} within {deadline_s:g} s:\n" + self.tail())

    def tail(self, n: int = 40) -> str:
        with self._lock:
            return "\n".join(self.lines[-n:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


SERVE_OPTIONS = ["--device", "cpu", "--port", "0", "--gateway-port", "0", "--ready-port", "0",
                 "--max-sessions", str(MAX_SESSIONS),
                 "--max-sessions-per-peer", str(MAX_SESSIONS),  # behind a proxy every client is the proxy
                 "--drain-grace", str(DRAIN_GRACE_S)]


class Fleet(Process):
    """N `shotstream serve` processes (tiny model, CPU) from tests/fork_servers.py: one interpreter start-up
    forked N times, each child running the `serve` command line; their exit codes come on its stdout."""

    def __init__(self, n: int, work: Path):
        super().__init__([sys.executable, str(REPO / "tests" / "fork_servers.py"), str(n), str(work), *SERVE_OPTIONS],
                         cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1",
                                        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})
        pids = json.loads(self.wait_for(r'^\{"pids": .*\}$')[0])["pids"]
        self.servers = [GpuServer(self, i, pid, work / f"gpu{i}.log") for i, pid in enumerate(pids)]

    def exit_code(self, pid: int) -> int | None:
        m = self.find(rf'^\{{"pid": {pid}, "rc": (-?\d+)\}}$')
        return None if m is None else int(m[1])

    def stop(self) -> None:
        super().stop()  # SIGINT, passed on to the servers still running
        for server in self.servers:  # the launcher died first: end its children by their pid
            if self.exit_code(server.pid) is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(server.pid, signal.SIGKILL)


class GpuServer:
    """One server of a Fleet: every port picked by the server and read from its log."""

    def __init__(self, fleet: Fleet, index: int, pid: int, log: Path):
        self.fleet, self.index, self.pid, self.log = fleet, index, pid, log
        self.grpc_port = self.gateway_port = self.ready_port = None

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines() if self.log.exists() else []

    def find(self, pattern: str) -> re.Match | None:
        return next((m for line in self.lines() if (m := re.search(pattern, line))), None)

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.lines()[-n:])

    def wait_for(self, pattern: str, deadline_s: float = 90.0) -> re.Match:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if m := self.find(pattern):
                return m
            if (rc := self.fleet.exit_code(self.pid)) is not None:
                raise AssertionError(f"gpu{self.index} exited ({rc}):\n{self.tail()}")
            time.sleep(0.05)
        raise AssertionError(f"gpu{self.index}: no line matching {pattern!r} within {deadline_s:g} s:\n{self.tail()}")

    def started(self) -> GpuServer:
        self.grpc_port = int(self.wait_for(r"gRPC listening on 127\.0\.0\.1:(\d+)")[1])
        self.gateway_port = int(self.wait_for(r"gateway \(WebSocket\) on ws://127\.0\.0\.1:(\d+)")[1])
        self.ready_port = int(self.wait_for(r"readiness on http://127\.0\.0\.1:(\d+)/ready")[1])
        return self

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait(self, deadline_s: float) -> int:
        """The exit code, once the process has exited (fails after ``deadline_s``)."""
        end = time.monotonic() + deadline_s
        while (rc := self.fleet.exit_code(self.pid)) is None:
            assert time.monotonic() < end, f"gpu{self.index} still running after {deadline_s:g} s:\n{self.tail()}"
            time.sleep(0.05)
        return rc


class Haproxy(Process):
    def __init__(self, binary: str, servers: list[GpuServer], work: Path):
        local = _load_haproxy_local()
        self.config = work / "haproxy.cfg"
        self.config.write_text(local.local_config([local.Server("127.0.0.1", s.grpc_port, s.gateway_port,
                                                                s.ready_port) for s in servers]))
        self.socket_path = work / "haproxy.sock"
        self.grpc_port, self.gateway_port = free_port(), free_port()
        env = {**os.environ, "SHOTSTREAM_MAX_SESSIONS": str(MAX_SESSIONS),
               "HAPROXY_STATS_SOCKET": str(self.socket_path),
               "SHOTSTREAM_GRPC_BIND": f"127.0.0.1:{self.grpc_port}",
               "SHOTSTREAM_GATEWAY_BIND": f"127.0.0.1:{self.gateway_port}",
               # fast checks for the test (deploy/haproxy.cfg: 1 s); the logic is the file's
               "SHOTSTREAM_CHECK_INTER": "100ms", "SHOTSTREAM_CHECK_FALL": "1", "SHOTSTREAM_CHECK_RISE": "1"}
        super().__init__([binary, "-db", "-f", str(self.config)], cwd=work, env=env)

    def stats(self) -> dict[tuple[str, str], dict]:
        """``show stat`` by (backend, server): status (UP/DOWN/...), scur (open streams), qcur (queued)."""
        if not self.socket_path.exists():
            return {}
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.socket_path))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
        return {(r["pxname"], r["svname"]): r for r in rows if r["svname"] not in ("FRONTEND", "BACKEND")}

    def status(self, server: int) -> tuple[str, str]:
        """The server's check status in the (gRPC, gateway) backends, e.g. ("UP", "UP")."""
        stats = self.stats()
        return tuple(stats.get((b, f"gpu{server}"), {}).get("status", "?").split()[0]
                     for b in ("shotstream_grpc", "shotstream_gateway"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    binary = require_haproxy()
    work = tmp_path_factory.mktemp("scaleout")
    t0 = time.monotonic()
    fleet = Fleet(3, work)
    servers = fleet.servers
    proxy = None
    try:
        for s in servers:
            s.started()
        proxy = Haproxy(binary, servers, work)

        def all_up() -> bool:
            assert proxy.proc.poll() is None, f"haproxy exited ({proxy.proc.returncode}):\n{proxy.tail()}"
            return all(proxy.status(i) == ("UP", "UP") for i in range(3))

        run(until("every server UP in HAProxy", all_up))
        print(f"3 servers and HAProxy up in {time.monotonic() - t0:.1f} s")
        yield proxy, servers
    finally:
        if proxy is not None:
            proxy.stop()
        fleet.stop()


async def open_sessions(server: GpuServer) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        info = await pb_grpc.ShotStreamStub(channel).GetServerInfo(pb.GetServerInfoRequest(), timeout=5)
        return info.open_sessions


async def loads(servers: list[GpuServer]) -> list[int]:
    return [await open_sessions(s) for s in servers]


async def idle_and_up(proxy: Haproxy, servers: list[GpuServer], alive=(0, 1, 2)) -> None:
    """Wait until the servers in ``alive`` have no session and HAProxy has them UP in both backends."""
    await until("servers idle", lambda: _is(loads([servers[i] for i in alive]), [0] * len(alive)))
    await until("servers UP", lambda: all(proxy.status(i) == ("UP", "UP") for i in alive))


def test_haproxy_config_is_valid_as_shipped(tmp_path):
    """deploy/haproxy.cfg as Kubernetes runs it (DNS server-template), plain and with TLS."""
    binary = require_haproxy()
    env = {**os.environ, "HAPROXY_STATS_SOCKET": str(tmp_path / "s.sock")}
    check = subprocess.run([binary, "-c", "-f", str(REPO / "deploy" / "haproxy.cfg")], env=env,
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    if shutil.which("openssl"):
        pem = tmp_path / "tls.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                        "/CN=shotstream", "-keyout", str(pem), "-out", str(tmp_path / "cert.pem")],
                       check=True, capture_output=True, timeout=60)
        pem.write_text(pem.read_text() + (tmp_path / "cert.pem").read_text())
        check = subprocess.run([binary, "-c", "-f", str(REPO / "deploy" / "haproxy.cfg")],
                               env={**env, "SHOTSTREAM_TLS_PEM": str(pem)}, capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr


def test_sessions_spread_by_least_sessions(cluster):
    proxy, servers = cluster

    async def body():
        await idle_and_up(proxy, servers)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{proxy.grpc_port}") as channel:
            stub = pb_grpc.ShotStreamStub(channel)
            sessions = []
            for _ in range(9):  # one client connection: placement is per session (HTTP/2 stream), not per client
                d = Direct(stub)
                await d.open()
                sessions.append(d)
            assert await loads(servers) == [3, 3, 3]
            stats = proxy.stats()
            assert [int(stats[("shotstream_grpc", f"gpu{i}")]["scur"]) for i in range(3)] == [3, 3, 3]
            # a session is a live stream through the proxy: it plays on its server
            await sessions[4].cue("c", "gulls over the pier", 1)
            assert len(await sessions[4].play(1)) == 1
            # every server full: all are out of HAProxy's rotation, and a new session is refused at once
            await until("all full servers DOWN", lambda: all(proxy.status(i)[0] == "DOWN" for i in range(3)))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=5)
            assert refused.value.code() == UNAVAILABLE and "no ShotStream server can take" in refused.value.details()
            story = stub.RenderStory(pb.RenderStoryRequest(protocol_version=PROTOCOL_VERSION, global_caption="g",
                                                           shots=[pb.StoryShot(prompt="a pier", num_chunks=1)]))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in story:
                    pass
            assert refused.value.code() == UNAVAILABLE and "no ShotStream server can take" in refused.value.details()
            extra = Direct(stub)  # a Direct stream: HAProxy answers the same, then resets the open stream
            with contextlib.suppress(grpc.aio.AioRpcError):
                await extra.send(open=pb.OpenSession(protocol_version=PROTOCOL_VERSION, client_name="tenth"))
            assert await extra.recv() is None
            code, details = await extra.call.code(), await extra.call.details()
            # grpc.aio reports INTERNAL "Internal error from Core" instead when its write of `open` is still
            # pending as the stream is reset (grpc/grpc#36066, as in test_hardening's flood test)
            assert code in (UNAVAILABLE, grpc.StatusCode.CANCELLED) or (
                code == grpc.StatusCode.INTERNAL and details == "Internal error from Core"), (code, details)
            assert await loads(servers) == [3, 3, 3]
            for d in sessions:
                await d.close()
        await idle_and_up(proxy, servers)

    run(body())


def test_a_full_server_gets_no_new_session_while_others_have_room(cluster):
    proxy, servers = cluster

    async def body():
        await idle_and_up(proxy, servers)
        # fill gpu0 behind HAProxy's back: HAProxy counts no session there, only its readiness says "full"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{servers[0].grpc_port}") as direct, \
                grpc.aio.insecure_channel(f"127.0.0.1:{proxy.grpc_port}") as proxied:
            local = [Direct(pb_grpc.ShotStreamStub(direct)) for _ in range(MAX_SESSIONS)]
            for d in local:
                await d.open()
            await until("gpu0 DOWN (full)", lambda: proxy.status(0) == ("DOWN", "DOWN"))
            through = [Direct(pb_grpc.ShotStreamStub(proxied)) for _ in range(4)]
            for d in through:
                await d.open()  # least sessions alone would send two of these to gpu0, which would refuse them
            assert await loads(servers) == [3, 2, 2]
            # the WebSocket door skips it too
            ws_url = f"ws://127.0.0.1:{proxy.gateway_port}/v1/direct"
            async with connect(ws_url) as ws:
                await ws.send(json.dumps({"open": {"protocolVersion": PROTOCOL_VERSION, "clientName": "ws",
                                                   "globalCaption": "A harbour at dawn."}}))
                opened = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert "opened" in opened, opened
                assert (await loads(servers))[0] == 3 and sum(await loads(servers)) == 8
                await ws.send(json.dumps({"close": {}}))
                while "closed" not in json.loads(await asyncio.wait_for(ws.recv(), 10)):
                    pass
            for d in local[:1]:
                await d.close()
            await until("gpu0 UP again (a slot is free)", lambda: proxy.status(0) == ("UP", "UP"))
            for d in local[1:] + through:
                await d.close()
        await idle_and_up(proxy, servers)

    run(body())


def test_plugin_style_websocket_sessions_play_through_the_proxy(cluster):
    """What the Unity and Godot plugins do, through HAProxy's WebSocket door: three sessions (proto3 JSON text
    frames, binary SSC1 chunk frames, acks) spread over the three servers, each plays a two-chunk shot to its
    end and closes; the same caption, seed and cue give the same frames on every server."""
    from google.protobuf import json_format

    from service.gateway import decode_chunk_frame

    proxy, servers = cluster

    async def open_session(ws) -> None:
        await ws.send(json.dumps({"open": {"protocolVersion": PROTOCOL_VERSION, "clientName": "plugin-style",
                                           "globalCaption": "A harbour at dawn.", "seed": "3",
                                           "frameFormat": "FRAME_FORMAT_RGBA8"}}))
        assert "opened" in json.loads(await asyncio.wait_for(ws.recv(), 10))

    async def play(ws) -> list[bytes]:
        await ws.send(json.dumps({"cue": {"eventId": "pier", "prompt": "Gulls over the pier.", "numChunks": 2}}))
        frames = []
        while True:
            data = await asyncio.wait_for(ws.recv(), DEADLINE_S)
            if isinstance(data, bytes):
                chunk, pixels = decode_chunk_frame(data)
                frames.append(pixels)
                await ws.send(json.dumps({"ack": {"chunkSeq": str(chunk.chunk_seq)}}))
                continue
            msg = json_format.Parse(data, pb.ServerMessage(), ignore_unknown_fields=True)
            assert msg.WhichOneof("kind") != "error", msg
            if msg.WhichOneof("kind") == "shot_finished":
                assert msg.shot_finished.chunks == 2 and not msg.shot_finished.cut
                return frames

    async def body():
        await idle_and_up(proxy, servers)
        url = f"ws://127.0.0.1:{proxy.gateway_port}/v1/direct"
        async with connect(url, max_size=None) as a, connect(url, max_size=None) as b, \
                connect(url, max_size=None) as c:
            for ws in (a, b, c):
                await open_session(ws)
            assert await loads(servers) == [1, 1, 1]  # least sessions, on the WebSocket door too
            played = [await play(ws) for ws in (a, b, c)]
            assert len(played[0]) == 2 and played[0] == played[1] == played[2]
            for ws in (a, b, c):
                await ws.send(json.dumps({"close": {}}))
                while True:
                    data = await asyncio.wait_for(ws.recv(), 10)
                    if isinstance(data, str) and "closed" in json.loads(data):
                        break
        await idle_and_up(proxy, servers)

    run(body())


def test_a_draining_server_finishes_its_sessions_and_takes_no_new_ones(cluster):
    """Runs last: it stops gpu2."""
    proxy, servers = cluster
    target = servers[2]

    async def body():
        await idle_and_up(proxy, servers)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{proxy.grpc_port}") as proxied, \
                grpc.aio.insecure_channel(f"127.0.0.1:{target.grpc_port}") as direct:
            through, placed = [], []
            for _ in range(3):  # where each lands: the server whose count went up
                before = await loads(servers)
                d = Direct(pb_grpc.ShotStreamStub(proxied))
                await d.open()
                after = await loads(servers)
                placed += [i for i in range(3) if after[i] > before[i]]
                through.append(d)
            assert sorted(placed) == [0, 1, 2], placed
            stays = through[placed.index(2)]
            leaves = Direct(pb_grpc.ShotStreamStub(direct))  # a second session on gpu2, ended by its client
            await leaves.open()
            assert await loads(servers) == [1, 1, 2]
            t0 = time.monotonic()
            target.send_signal(signal.SIGTERM)
            await until("gpu2 readiness: draining",
                        lambda: _is(http_get(target.ready_port, "/ready"), (503, "not ready: draining")))
            assert await health_of(direct) == NOT_SERVING
            await until("gpu2 DOWN in HAProxy", lambda: proxy.status(2) == ("DOWN", "DOWN"))
            refused = Direct(pb_grpc.ShotStreamStub(direct))
            await refused.send(open=pb.OpenSession(protocol_version=PROTOCOL_VERSION, client_name="late"))
            await refused.fails(UNAVAILABLE, "draining")
            late = [Direct(pb_grpc.ShotStreamStub(proxied)) for _ in range(2)]
            for d in late:
                await d.open()
            assert await loads(servers) == [2, 2, 2]  # gpu2 got none of them
            # gpu2's sessions go on during the drain: each plays a shot; one then ends on its own
            for d in (stays, leaves):
                await d.cue("s", "a ferry crosses", 1)
                assert len(await d.play(1)) == 1
            await leaves.close()
            # the one still open is closed with "server draining" once the grace is over; the process exits 0
            msg = await stays.recv()
            while msg is not None and msg.WhichOneof("kind") != "closed":
                msg = await stays.recv()
            elapsed = time.monotonic() - t0
            assert msg is not None and msg.closed.reason == "server draining", msg
            assert elapsed >= DRAIN_GRACE_S - 0.1, elapsed
            # the stream then ends: OK from the server, which HAProxy 2.6 turns into CANCELLED (it resets a
            # stream the client has not half-closed): a client acts on `closed`, which came first
            assert await stays.recv() is None
            assert await stays.call.code() in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED)
            rc = await asyncio.to_thread(target.wait, DEADLINE_S)
            assert rc == 0, target.tail()
            assert target.find(r"drain grace over: closing 1 session")
            assert await loads(servers[:2]) == [2, 2]  # the others' sessions are untouched
            for d in through + late:
                if d is not stays:
                    await d.close()
        await idle_and_up(proxy, servers, alive=(0, 1))
        assert proxy.status(2) == ("DOWN", "DOWN")

    run(body())



# -- Kubernetes manifests (validated offline) -----------------------------------------------------

K8S = REPO / "deploy" / "k8s"


def _story_frames(events) -> tuple[dict[int, list[bytes]], list]:
    """Each shot's frames as last played (a shot played again after a move replaces its earlier frames)."""
    from service.sdk import Chunk, ShotStarted

    shots: dict[int, list[bytes]] = {}
    for ev in events:
        if isinstance(ev, ShotStarted):
            shots[ev.shot_index] = []
        elif isinstance(ev, Chunk):
            shots[ev.shot_index].append(ev.frames.tobytes())
    return shots


FAILOVER_SHOTS = [("Gulls over the pier.", 1), ("A ferry leaves the harbour.", 3), ("Rain on the water.", 2)]


def test_a_killed_servers_story_moves_to_another_from_its_snapshot(cluster):
    """Runs after the drain test (gpu2 is gone): a resuming SDK session through HAProxy, its server killed
    (SIGKILL) in the middle of shot 1, continues on the other server from the snapshot taken at the end of
    shot 0; shot 1 plays again from its start and every shot's frames equal an uninterrupted session's."""
    from service.sdk import Chunk, Resumed, ShotFinished, ShotStreamClient, SnapshotReady

    proxy, servers = cluster
    alive = [i for i in range(3) if servers[i].fleet.exit_code(servers[i].pid) is None]
    assert len(alive) >= 2, "the failover test needs two servers left"
    run(idle_and_up(proxy, servers, alive=tuple(alive)))

    times: list[float] = []  # when each event of the last play() arrived

    def play(session, kill_at=None) -> list:
        for prompt, n in FAILOVER_SHOTS:
            session.cue(prompt, n)
        events, finished = [], 0
        times.clear()
        for ev in session:
            events.append(ev)
            times.append(time.monotonic())
            if kill_at is not None and kill_at(events):
                kill_at = None
            if isinstance(ev, ShotFinished):
                finished += 1
                if finished == len(FAILOVER_SHOTS):
                    return events
        raise AssertionError(f"the session ended early: {events[-3:]}")

    with ShotStreamClient(f"127.0.0.1:{proxy.grpc_port}") as client:
        with client.open_resuming_session("A harbour at dawn.", seed=5, chunks_in_flight=1) as whole:
            reference = _story_frames(play(whole))
            assert whole.resumes == 0
        run(idle_and_up(proxy, servers, alive=tuple(alive)))

        t_kill: list[float] = []

        def kill_mid_shot_1(events) -> bool:
            ev = events[-1]
            if not (isinstance(ev, Chunk) and ev.shot_index == 1 and ev.chunk_index == 0):
                return False
            assert any(isinstance(e, SnapshotReady) and e.next_shot_index == 1 for e in events)
            loads_now = run(loads([servers[i] for i in alive]))
            (host,) = [alive[k] for k, n in enumerate(loads_now) if n == 1]
            servers[host].send_signal(signal.SIGKILL)
            t_kill.append(time.monotonic())
            return True

        with client.open_resuming_session("A harbour at dawn.", seed=5, chunks_in_flight=1) as moved:
            events = play(moved, kill_mid_shot_1)
            resumed = [e for e in events if isinstance(e, Resumed)]
            assert len(resumed) == 1 and resumed[0].from_snapshot and resumed[0].next_shot_index == 1, resumed
            assert len(resumed[0].recued) == 2  # the shot in progress and the one still queued
            after = events.index(resumed[0])
            moved_s = times[after] - t_kill[0]
            first_chunk = next(i for i in range(after, len(events)) if isinstance(events[i], Chunk))
            first_frames_s = times[first_chunk] - t_kill[0]
            assert moved.resumes == 1
    got = _story_frames(events)
    assert sorted(got) == sorted(reference) == [0, 1, 2]
    for shot in reference:
        assert got[shot] == reference[shot], f"shot {shot} differs after the move"
    # shot 1 started over on the new server: its first chunk came twice, once on each side of the move
    firsts = [i for i, e in enumerate(events) if isinstance(e, Chunk) and e.shot_index == 1 and e.chunk_index == 0]
    assert len(firsts) == 2 and firsts[0] < after < firsts[1]
    print(f"FAILOVER kill -> Resumed {moved_s:.2f} s, kill -> first frames on the new server {first_frames_s:.2f} s")


def _manifests() -> list[dict]:
    import yaml

    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return docs


@pytest.mark.parametrize("version", ["1.30.0", "1.37.0"])
def test_kubernetes_manifests_validate_against_the_api_schemas(version):
    """Strict schema validation (unknown fields are errors) with kubernetes-validate's bundled schemas: no
    cluster, no network."""
    from kubernetes_validate import utils as kv

    docs = _manifests()
    assert {d["kind"] for d in docs} >= {"Namespace", "Service", "Deployment", "PodDisruptionBudget", "ConfigMap"}
    for doc in docs:
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as exc:
            raise AssertionError(f"{doc['kind']} {doc['metadata']['name']}: {exc.message} at "
                                 f"{'.'.join(map(str, exc.path))}") from None


def test_kubernetes_manifests_fit_the_server_and_the_proxy():
    docs = _manifests()
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    gpu = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].startswith("shotstream-gpu-")]
    assert len(gpu) >= 2  # one per GPU class
    from service.cli import build_parser

    for dep in gpu:
        pod = dep["spec"]["template"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        (c,) = pod["spec"]["containers"]
        assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
        args = build_parser().parse_args(c["command"][1:] + c["args"])  # what `shotstream serve` would get
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert (args.port, args.gateway_port, args.ready_port) == (ports["grpc"], ports["gateway"], ports["ready"])
        assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "ready"}
        assert c["livenessProbe"]["httpGet"] == {"path": "/live", "port": "ready"}
        assert "kill -TERM 1" in " ".join(c["lifecycle"]["preStop"]["exec"]["command"])
        assert pod["spec"]["terminationGracePeriodSeconds"] > args.drain_grace + 5  # + the final stop's grace
        assert args.max_sessions_per_peer >= args.max_sessions  # behind the proxy every client is one peer
        assert not args.token  # the token comes from the Secret, not the command line
        env = {e["name"]: e for e in c["env"]}
        assert env["SHOTSTREAM_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "shotstream-token"
        labels = pod["metadata"]["labels"]
        assert by[("Service", "shotstream-gpu")]["spec"]["selector"].items() <= labels.items()
        budget = by[("PodDisruptionBudget", "shotstream-gpu")]["spec"]
        assert budget["selector"]["matchLabels"].items() <= labels.items()
        # HAProxy's checks and traffic use these same ports
        config = (REPO / "deploy" / "haproxy.cfg").read_text()
        assert f"port {args.ready_port} " in config
        assert f'"${{SHOTSTREAM_SERVERS}}:{args.port}" proto h2' in config
        assert f'"${{SHOTSTREAM_SERVERS}}:{args.gateway_port}"' in config
    assert by[("Service", "shotstream-gpu")]["spec"]["clusterIP"] == "None"
    assert by[("Service", "shotstream-gpu")]["spec"]["publishNotReadyAddresses"] is True
    # the proxy: the ConfigMap holds deploy/haproxy.cfg as it is; TLS from the Secret
    config = (REPO / "deploy" / "haproxy.cfg").read_text()
    assert by[("ConfigMap", "shotstream-haproxy")]["data"]["haproxy.cfg"] == config
    proxy = by[("Deployment", "shotstream-haproxy")]["spec"]["template"]["spec"]
    (c,) = proxy["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["SHOTSTREAM_SERVERS"].startswith("shotstream-gpu.shotstream.svc")
    assert int(env["SHOTSTREAM_MAX_SESSIONS"]) == max(
        build_parser().parse_args(d["spec"]["template"]["spec"]["containers"][0]["command"][1:]
                                  + d["spec"]["template"]["spec"]["containers"][0]["args"]).max_sessions for d in gpu)
    tls = next(v for v in proxy["volumes"] if v["name"] == "tls")
    assert tls["secret"]["secretName"] == "shotstream-tls"
    assert by[("Service", "shotstream")]["spec"]["selector"] == by[("Deployment", "shotstream-haproxy")]["spec"][
        "selector"]["matchLabels"]
