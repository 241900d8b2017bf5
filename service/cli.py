"""``shotstream`` command line: run the service, play stories through it (or locally), benchmark the
transports, fetch weights.

    shotstream demo --out out/demo              # in-process service, 3 shots over gRPC + shared memory
    shotstream serve [--weights DIR --student PT] [--port 50051] [--gateway-port 50052] ...
    shotstream story FILE --out OUT.mp4 [--server ADDR [--transport shm|inline]] [--report R.json]
    shotstream story --cue-log LOG.json --out OUT.mp4 [--from-snapshot SNAP] [--server ADDR]  # replay a session
    shotstream bench [--server ADDR] [--frames N]
    shotstream soak [--minutes M] [--clients N]  # careless clients vs an in-process server; leak figures
    shotstream fetch-weights DEST [--decoder taew2_1|lighttaew2_1 [--decoder-only]]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

# The MP4 writer starts ffmpeg (fork + exec) while gRPC threads run; gRPC's fork handlers are for
# children that keep using gRPC, which ffmpeg never does, and only log noise here.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from .cli_common import CliError, load_engine, load_spec, write_report  # noqa: E402
from .cli_story import play_remote, run_story  # noqa: E402
from .logs import install as install_log_truncation  # noqa: E402
from .settings import read_token_file  # noqa: E402

EXAMPLE_STORY = Path(__file__).resolve().parents[1] / "examples" / "stories" / "01.json"


# -- demo ---------------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from .background import BackgroundServer
    from .settings import ServerSettings

    spec = load_spec(args.story, args.shots)
    seed = args.seed if args.seed is not None else (spec.seed or 0)
    out_dir = Path(args.out)
    engine = load_engine(args)
    settings = ServerSettings(grpc_port=0, gateway_port=0, metrics_port=-1, default_decoder=args.decoder or "wan")
    t0 = time.perf_counter()
    with BackgroundServer(engine, settings) as server:
        print(f"ShotStream service started in-process: gRPC {server.address}, WebSocket gateway "
              f"{server.gateway_url} ({time.perf_counter() - t0:.2f} s)", file=sys.stderr)
        print(f"playing {len(spec.shots)} shot(s) of {args.story} through it over gRPC with the shared-memory ring",
              file=sys.stderr)
        report = play_remote(server.address, spec, seed, out_dir / "story.mp4", transport=args.transport,
                             quiet=args.quiet, client_name="shotstream-cli/demo", announce_random=False)
    print("service stopped", file=sys.stderr)
    report["story_file"] = str(args.story)
    write_report(report, str(out_dir / "timings.json"))
    firsts = ", ".join(f"{s['first_frame_ms']:.0f}" for s in report["shots"])
    print(f"wrote {out_dir / 'story.mp4'} and {out_dir / 'timings.json'}: first frame per shot {firsts} ms, "
          f"transport {report['transport_ms_mean']:.1f} ms per chunk on average", file=sys.stderr)
    if report["random_weights"]:
        print(f"(random weights: the '{report['model']}' model had no checkpoint, so the video is noise-like)",
              file=sys.stderr)
    return 0


# -- serve --------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from .settings import ServerSettings

    try:
        token = _serve_token(args)
        settings = ServerSettings(
            host=args.host, grpc_port=args.port, gateway_port=args.gateway_port, metrics_port=args.metrics_port,
            ready_port=args.ready_port, drain_grace_s=args.drain_grace,
            token=token, tls_cert=Path(args.tls_cert) if args.tls_cert else None,
            tls_key=Path(args.tls_key) if args.tls_key else None, max_sessions=args.max_sessions,
            max_sessions_per_peer=args.max_sessions_per_peer, idle_timeout_s=args.idle_timeout,
            takes_dir=Path(args.takes_dir), take_file_mode=0o640 if args.takes_group_readable else 0o600,
            default_decoder=args.decoder or "wan")
    except ValueError as exc:
        raise CliError(str(exc)) from None
    for what, path in (("--tls-cert", settings.tls_cert), ("--tls-key", settings.tls_key)):
        if path is not None and not path.is_file():
            raise CliError(f"{what} {path}: no such file")
    logging.getLogger("service").setLevel(logging.INFO)
    engine = load_engine(args)
    from .server import serve

    try:
        serve(settings, engine)
    except OSError as exc:
        raise CliError(f"could not start the server: {exc}", code=1) from None
    return 0


def _serve_token(args: argparse.Namespace) -> str | None:
    """The token from --token-file, $SHOTSTREAM_TOKEN or (warned against) --token."""
    given = [n for n, v in (("--token-file", args.token_file), ("--token", args.token)) if v]
    if len(given) > 1:
        raise ValueError("give the token once: --token-file or --token, not both")
    if args.token_file:
        token, warning = read_token_file(args.token_file)
        if warning:
            logging.getLogger("service").warning("%s", warning)
        return token
    if args.token:
        logging.getLogger("service").warning(
            "the token was given with --token: every local user can read it from the process list; use "
            "--token-file FILE (mode 600) or the SHOTSTREAM_TOKEN environment variable")
        return args.token
    return os.environ.get("SHOTSTREAM_TOKEN") or None


# -- soak ---------------------------------------------------------------------------------------


def _soak(args: argparse.Namespace) -> int:
    import tempfile

    from engine_core import TINY, ShotStreamEngine

    from .soak import run_soak

    if args.minutes <= 0 or args.clients < 1:
        raise CliError("--minutes must be positive and --clients at least 1")
    for noisy in ("engine_core", "imageio_ffmpeg"):  # prompt truncation and empty takes are expected here
        logging.getLogger(noisy).setLevel(logging.ERROR)
    engine = ShotStreamEngine.random(TINY, device="cpu", seed=0)
    print(f"soak: {args.clients} clients for {args.minutes:g} min against an in-process server (tiny engine)",
          file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="shotstream-soak-") as work:
        report = run_soak(engine, 60 * args.minutes, args.clients, args.seed, Path(work))
    print(json.dumps(report, indent=2))
    leaked = report["sessions_open_after"] or report["after"]["ring_files"]
    return 1 if leaked else 0


# -- bench --------------------------------------------------------------------------------------


def _bench(args: argparse.Namespace) -> int:
    from .transport_bench import run_bench

    transports = tuple(t.replace("shm", "shared_memory") for t in args.transports.split(","))
    unknown = set(transports) - {"inline", "shared_memory", "websocket"}
    if unknown:
        raise CliError(f"unknown transport(s) {sorted(unknown)}: choose from inline, shm, websocket")
    if args.frames < 1:
        raise CliError("--frames must be at least 1")
    if not args.server:
        print("bench: starting a server with a synthetic engine (premade 480x832 frames) so that the transport, "
              "not the model, is measured", file=sys.stderr)
    result = run_bench(frames=args.frames, server=args.server, gateway=args.gateway, credits=args.credits,
                       token=args.token or os.environ.get("SHOTSTREAM_TOKEN"), in_process=args.in_process,
                       frame_format=args.format, transports=transports)
    print(json.dumps(result, indent=2))
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from engine_core.fetch import main as fetch_main

    argv = [str(args.dest)] + ([] if args.student else ["--no-student"])
    if args.decoder is not None:
        argv += ["--decoder", args.decoder] + (["--decoder-only"] if args.decoder_only else [])
    elif args.decoder_only:
        raise CliError("--decoder-only needs --decoder taew2_1 or --decoder lighttaew2_1")
    return fetch_main(argv)


# -- parser -------------------------------------------------------------------------------------


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", help="Wan2.1-T2V-1.3B folder (original or diffusers layout); omitted: the built-in "
                                     "tiny model with RANDOM weights (noise-like video, for trying the pipeline)")
    p.add_argument("--student", help="ShotStream student checkpoint (shotstream_merged.pt)")
    p.add_argument("--device", help="torch device (default: cuda if available)")
    p.add_argument("--dtype", choices=["auto", "bf16", "fp32"], default="auto")
    p.add_argument("--attention", choices=["auto", "fa3", "cudnn", "flash", "efficient", "math"], default="auto",
                   help="attention kernel (default: the fastest that works here, chosen at startup and logged)")
    p.add_argument("--fp8", action="store_true", help="fp8 GEMMs in the DiT's blocks (off by default; its error "
                                                      "is logged)")
    p.add_argument("--eager", action="store_true", help="no compiled blocks, CUDA graphs or overlapped decode "
                                                        "(the exact reference path; the default on a CPU)")
    p.add_argument("--decoder", choices=["wan", "tae"],
                   help="what decodes frames: the Wan VAE (exact; the default) or the tiny TAEHV preview decoder")
    p.add_argument("--tae", help="with --weights: the tiny decoder file (taew2_1.pth or lighttaew2_1.safetensors; "
                                 "`fetch-weights --decoder`); the built-in tiny model has a random one")
    p.add_argument("--tae-kind", choices=["taew2_1", "lighttaew2_1"],
                   help="which published tiny decoder --tae is (default: from its file name)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shotstream", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="start the service in-process, play 3 shots of a reference story through it "
                                       "(gRPC + shared memory), write DIR/story.mp4 and DIR/timings.json")
    demo.add_argument("--out", required=True, help="output folder")
    demo.add_argument("--story", default=str(EXAMPLE_STORY), help="story file (default: examples/stories/01.json)")
    demo.add_argument("--shots", type=int, default=3, help="play only the first N shots (default 3)")
    demo.add_argument("--seed", type=int, help="story seed (default: the file's, else 0)")
    demo.add_argument("--transport", choices=["shm", "inline"], default="shm")
    demo.add_argument("--quiet", action="store_true", help="no progress line")
    _model_args(demo)
    demo.set_defaults(func=_demo)

    serve = sub.add_parser("serve", help="run the service: gRPC (+ WebSocket gateway, metrics, readiness) until "
                                         "Ctrl-C, or SIGTERM (drain)")
    _model_args(serve)
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; any other needs a token)")
    serve.add_argument("--port", type=int, default=50051, help="gRPC port (0: any free port)")
    serve.add_argument("--gateway-port", type=int, default=50052, help="WebSocket gateway port (-1: off, 0: any)")
    serve.add_argument("--metrics-port", type=int, default=-1, help="Prometheus /metrics port (-1: off)")
    serve.add_argument("--ready-port", type=int, default=-1,
                       help="HTTP GET /ready and /live for probes and proxies, on --host (-1: off, 0: any)")
    serve.add_argument("--drain-grace", type=float, default=30.0,
                       help="on SIGTERM: seconds open sessions may go on before they are closed with "
                            "\"server draining\" (default 30); Ctrl-C stops at once")
    serve.add_argument("--token-file", help="file holding the bearer token clients must send (mode 600); or set "
                                            "$SHOTSTREAM_TOKEN")
    serve.add_argument("--token", help="the token itself (discouraged: other local users can read command lines)")
    serve.add_argument("--tls-cert", help="PEM certificate chain (with --tls-key: serve TLS)")
    serve.add_argument("--tls-key", help="PEM private key")
    serve.add_argument("--max-sessions", type=int, default=4, help="open sessions at most (default 4)")
    serve.add_argument("--max-sessions-per-peer", type=int, default=2,
                       help="open sessions per client IP address (default 2)")
    serve.add_argument("--idle-timeout", type=float, default=600.0,
                       help="close a session after this many seconds without a client message (default 600)")
    serve.add_argument("--takes-group-readable", action="store_true",
                       help="write takes 0640 instead of 0600 (the server's group may read them)")
    serve.add_argument("--takes-dir", default="takes",
                       help="folder for takes that clients record (StartTake), created on the first one "
                            "(default: ./takes)")
    serve.set_defaults(func=_serve)

    story = sub.add_parser("story", help="render a story file to an MP4 and a timing report, locally or through a "
                                         "server (--server)")
    story.add_argument("file", nargs="?",
                       help="story JSON: {'global_caption', 'shot1'..} or {'global_caption', 'shots': [...]} "
                            "(or --cue-log instead)")
    story.add_argument("--cue-log", metavar="LOG.json",
                       help="replay a session's cue log (the SDK's session.cue_log(), saved with save_cue_log) "
                            "instead of a story file: its finished shots with the chunks each made, its caption and "
                            "seed, so the frames are the session's; a log that began from a snapshot needs "
                            "--from-snapshot")
    story.add_argument("--out", required=True, help="output .mp4 path")
    story.add_argument("--report", help="write the JSON timing report here (default: stdout)")
    story.add_argument("--shots", type=int, help="render only the first N shots")
    story.add_argument("--seed", type=int, help="story seed (default: the file's, else 0)")
    story.add_argument("--server", help="HOST:PORT of a running `shotstream serve`: play the story through it")
    story.add_argument("--transport", choices=["shm", "inline"],
                       help="with --server: frames via the shared-memory ring (same host; default) or inline gRPC")
    story.add_argument("--token", help="with --server: bearer token (default: $SHOTSTREAM_TOKEN)")
    story.add_argument("--ca-cert", help="with --server: PEM root certificate of a TLS server")
    story.add_argument("--quiet", action="store_true", help="no progress line")
    story.add_argument("--save-snapshot", metavar="PATH",
                       help="after the last shot, save the story's state to PATH (a game-save sized file; also "
                            "with --server)")
    story.add_argument("--from-snapshot", metavar="PATH",
                       help="continue the story saved in PATH: the file's shots come next (same caption; also "
                            "with --server)")
    story.add_argument("--quality", choices=["live", "full"], default="live",
                       help="full: with --decoder tae, the MP4 is the story's latents re-decoded with the Wan VAE "
                            "after the render (the preview decoder only paces the run)")
    _model_args(story)
    story.set_defaults(func=run_story)

    bench = sub.add_parser("bench", help="frames/s delivered to a client per transport (inline gRPC, shared memory, "
                                         "WebSocket) vs a numpy memcpy; JSON on stdout")
    bench.add_argument("--server", help="HOST:PORT of a running server (default: start one with a synthetic "
                                        "480x832 engine in a separate process)")
    bench.add_argument("--gateway", help="with --server: ws://HOST:PORT/v1/direct of its WebSocket gateway")
    bench.add_argument("--frames", type=int, default=480, help="frames per transport (default 480)")
    bench.add_argument("--credits", type=int, default=2, help="chunks in flight (default 2)")
    bench.add_argument("--format", choices=["rgba8", "rgb8"], default="rgba8")
    bench.add_argument("--transports", default="inline,shm,websocket", help="comma-separated subset")
    bench.add_argument("--token", help="bearer token (default: $SHOTSTREAM_TOKEN)")
    bench.add_argument("--in-process", action="store_true",
                       help="run the synthetic server in this process (faster start, shares the GIL)")
    bench.set_defaults(func=_bench)

    soak = sub.add_parser("soak", help="many careless clients (random cues, pauses, cuts, acks, kills) against an "
                                       "in-process tiny server for a fixed time; JSON report with leak figures")
    soak.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    soak.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    soak.add_argument("--seed", type=int, default=0)
    soak.set_defaults(func=_soak)

    fetch = sub.add_parser("fetch-weights", help="download Wan2.1-T2V-1.3B and the ShotStream student, with --decoder "
                                                 "also a tiny preview decoder (needs internet)")
    fetch.add_argument("dest", type=Path)
    fetch.add_argument("--no-student", dest="student", action="store_false")
    fetch.add_argument("--decoder", choices=["taew2_1", "lighttaew2_1"],
                       help="also a tiny preview decoder, into DEST/tae/: taew2_1 (madebyollin/taehv, MIT) or "
                            "lighttaew2_1 (lightx2v/Autoencoders, Apache-2.0)")
    fetch.add_argument("--decoder-only", action="store_true", help="only the tiny decoder named by --decoder")
    fetch.set_defaults(func=_fetch)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    install_log_truncation()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
