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
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path

# The MP4 writer starts ffmpeg (fork + exec) while gRPC threads run; gRPC's fork handlers are for
# children that keep using gRPC, which ffmpeg never does, and only log noise here.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from .settings import read_token_file  # noqa: E402
from .story_file import ShotSpec, StoryFileError, StorySpec, load_story  # noqa: E402

from .logs import install as install_log_truncation  # noqa: E402

EXAMPLE_STORY = Path(__file__).resolve().parents[1] / "examples" / "stories" / "01.json"
RANDOM_NOTE = ("NOTE: no weights given, so this runs the built-in '{model}' model with random weights: the video is "
               "noise-like and only shows the pipeline works. Pass --weights DIR (see `shotstream fetch-weights`) "
               "for real output.")
REMOTE_RANDOM_NOTE = ("NOTE: the server runs the '{model}' model with random weights: the video is noise-like and "
                      "only shows the pipeline works.")


class CliError(Exception):
    """A user-facing error: printed as ``error: ...``, exit status ``code``."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


# -- helpers ------------------------------------------------------------------------------------


class Progress:
    """One progress line on stderr: rewritten in place (``\\r``) on a terminal, one line per update
    otherwise (logs and CI stay readable). No dependency."""

    def __init__(self, total: int, stream=None, enabled: bool = True, width: int = 24):
        self.total, self.done, self.width, self.enabled = max(total, 1), 0, width, enabled
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._t0 = time.perf_counter()
        self._last_len = 0

    def update(self, frames: int, text: str) -> None:
        self.done += frames
        if not self.enabled:
            return
        frac = min(self.done / self.total, 1.0)
        filled = round(frac * self.width)
        elapsed = time.perf_counter() - self._t0
        fps = self.done / elapsed if elapsed > 0 else 0.0
        line = (f"[{'#' * filled}{'-' * (self.width - filled)}] {100 * frac:3.0f}% {self.done}/{self.total} frames "
                f"{fps:6.1f} fps | {text}")
        if self.tty:
            pad = max(0, self._last_len - len(line))
            self.stream.write("\r" + line + " " * pad)
            self._last_len = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty and self._last_len:
            self.stream.write("\n")
            self.stream.flush()


def _load_spec(path: str | Path, shots: int | None) -> StorySpec:
    try:
        spec = load_story(path)
    except StoryFileError as exc:
        raise CliError(str(exc)) from None
    if shots is not None:
        if shots < 1:
            raise CliError("--shots must be at least 1")
        spec = dataclasses.replace(spec, shots=spec.shots[:shots])
    return spec


def _dtype(name: str):
    import torch

    return {"auto": None, "bf16": torch.bfloat16, "fp32": torch.float32}[name]


def _load_engine(args: argparse.Namespace):
    from engine_core import ShotStreamEngine

    if args.student and not args.weights:
        raise CliError("--student needs --weights too (the Wan2.1-T2V-1.3B folder: VAE, UMT5 and tokenizer)")
    from engine_core.fast_path import FastPath

    if args.tae and not args.weights:
        raise CliError("--tae needs --weights too (a tiny decoder decodes the Wan model's latents); without "
                       "weights the built-in tiny model has its own random tiny decoder")
    if args.decoder == "tae" and args.weights and not args.tae:
        raise CliError("--decoder tae needs the tiny decoder's file: --tae taew2_1.pth (`shotstream fetch-weights "
                       "DEST --decoder taew2_1` downloads it)")
    try:
        engine = ShotStreamEngine.load(args.weights, args.student, device=args.device, dtype=_dtype(args.dtype),
                                       attention=args.attention, fp8=args.fp8,
                                       fast=FastPath.eager() if args.eager else None,
                                       tae=args.tae or not args.weights, tae_kind=args.tae_kind)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if engine.random_weights:
        print(RANDOM_NOTE.format(model=engine.config.name), file=sys.stderr)
    return engine


def _write_report(report: dict, path: str | None) -> None:
    text = json.dumps(report, indent=2)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")
    else:
        print(text)


def _chunk_text(shot: int, chunk: int, n: int, detail: str) -> str:
    return f"shot {shot} chunk {chunk}: {n} frames ({detail})"


# -- story --------------------------------------------------------------------------------------


def _story(args: argparse.Namespace) -> int:
    if args.file and args.cue_log:
        raise CliError("give a story file or --cue-log, not both (a cue log is the whole story: caption, seed, shots)")
    if not args.file and not args.cue_log:
        raise CliError("give a story file, or --cue-log LOG.json to replay a session's cue log")
    snapshot = _snapshot_header(args.from_snapshot) if args.from_snapshot else None
    decoder = args.decoder
    if args.cue_log:
        spec, decoder = _cue_log_spec(args, snapshot)
        seed = spec.seed
    else:
        spec = _load_spec(args.file, args.shots)
        seed = args.seed if args.seed is not None else (spec.seed or 0)
    if snapshot is not None:
        _check_snapshot_fits(args, snapshot[1], spec)
    if args.server:
        if args.weights or args.student or args.tae:
            raise CliError("--weights/--student/--tae apply to local rendering; with --server the server's own model "
                           "is used")
        if args.quality == "full":
            raise CliError("--quality full re-decodes the story locally; through a server, record a full-quality "
                           "take instead (RenderStory's take, or the SDK's start_take(quality='full'))")
        report = play_remote(args.server, spec, seed, Path(args.out), transport=args.transport,
                             token=args.token or os.environ.get("SHOTSTREAM_TOKEN"), ca_cert=args.ca_cert,
                             quiet=args.quiet, decoder=decoder, snapshot=snapshot[0] if snapshot else None,
                             save_snapshot=args.save_snapshot)
    else:
        if args.transport:
            raise CliError("--transport applies to --server only (local rendering has no transport)")
        report = _render_local(args, spec, seed, Path(args.out), decoder)
    _write_report(report, args.report)
    return 0


def _cue_log_spec(args: argparse.Namespace, snapshot: tuple[bytes, object] | None) -> tuple[StorySpec, str | None]:
    """The story a cue log replays (each finished shot with the chunks it made, the log's caption and seed) and
    the decoder to replay it with (--decoder, else the log's)."""
    from .sdk import load_cue_log
    from .sdk.codec import _decoder_name
    from .sdk.story_state import cue_log_shots

    path = args.cue_log
    try:
        log = load_cue_log(path)
        shots = cue_log_shots(log)
    except FileNotFoundError:
        raise CliError(f"{path}: no such cue log") from None
    except OSError as exc:
        raise CliError(f"cannot read the cue log {path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: {exc}" if not str(exc).startswith(str(path)) else str(exc)) from None
    if not shots:
        raise CliError(f"{path} has no finished shot to replay")
    if args.seed is not None and args.seed != log.seed:
        raise CliError(f"{path} was played with seed {log.seed}; drop --seed (a replay uses the log's seed)")
    if args.shots is not None:
        if args.shots < 1:
            raise CliError("--shots must be at least 1")
        shots = shots[:args.shots]
    first = log.first_shot_index
    if first and snapshot is None:
        raise CliError(f"{path} starts at shot {first}: its session continued a snapshot, so the replay needs it "
                       "too: add --from-snapshot SNAPSHOT (the snapshot that session began from)")
    if snapshot is not None and first != snapshot[1].next_shot_index:
        raise CliError(f"{path} starts at shot {first}, but {args.from_snapshot} continues a story at shot "
                       f"{snapshot[1].next_shot_index}: give the snapshot the logged session began from")
    decoder = args.decoder or (_decoder_name(log.decoder) if log.decoder else None)
    spec = StorySpec(log.global_caption, tuple(ShotSpec(prompt, chunks) for prompt, chunks in shots), log.seed)
    return spec, decoder


def _snapshot_header(path: str):
    """``(bytes, SnapshotInfo)`` of a snapshot file (its header read without the engine)."""
    from .sdk import ShotStreamError, snapshot_info

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read the snapshot {path}: {exc.strerror or exc}") from None
    try:
        return data, snapshot_info(data)
    except ShotStreamError as exc:
        raise CliError(f"{path}: {exc.message}") from None


def _check_snapshot_fits(args: argparse.Namespace, info, spec: StorySpec) -> None:
    """The snapshot continues the story being rendered: same caption; --seed and --decoder not against it."""
    source = args.file or args.cue_log
    if info.global_caption != spec.global_caption:
        raise CliError(f"{args.from_snapshot} continues a story whose global caption differs from {source}'s: use "
                       "the same story's later shots (the caption is part of every shot's prompt)")
    if args.cue_log and spec.seed != info.seed:
        raise CliError(f"{args.cue_log} was played with seed {spec.seed}, {args.from_snapshot} has seed {info.seed}: "
                       "give the snapshot the logged session began from")
    if args.seed is not None and args.seed != info.seed:
        raise CliError(f"{args.from_snapshot} has seed {info.seed}; drop --seed (a snapshot keeps its story's seed)")
    if args.decoder and args.decoder != info.decoder:
        raise CliError(f"{args.from_snapshot} was made with decoder {info.decoder!r}; drop --decoder or use that one")


def _render_local(args: argparse.Namespace, spec: StorySpec, seed: int, out: Path, decoder: str | None) -> dict:
    from .render import full_quality_frames, render_story, story_frames
    from .video_io import Mp4Writer

    engine = _load_engine(args)
    snapshot = _read_snapshot(engine, args.from_snapshot, spec, args) if args.from_snapshot else None
    decoder = snapshot.identity.decoder if snapshot is not None else decoder or "wan"
    rerender = args.quality == "full" and decoder != "wan"  # a Wan story's frames are full quality already
    cfg = engine.config
    first = cfg.pixel_frames(1)
    progress = Progress(story_frames(spec, first, cfg.pixel_frames(2) - first, cfg.stream.chunks_per_shot),
                        enabled=not args.quiet)
    shot_latents: dict[int, list] = {}
    with Mp4Writer(out, cfg.stream.width, cfg.stream.height, cfg.stream.fps) as writer:
        def on_chunk(chunk):
            if rerender:
                shot_latents.setdefault(chunk.shot_index, []).append(chunk.latents)
            else:
                writer.write(chunk.frames.numpy())
            t = chunk.timings_ms
            progress.update(len(chunk.frames), _chunk_text(chunk.shot_index, chunk.chunk_index, len(chunk.frames),
                                                           f"denoise {t['denoise']:.0f} ms, decode {t['decode']:.0f} ms"))

        def on_end(story) -> None:
            if args.save_snapshot:
                data = story.snapshot().to_bytes()
                _write_atomically(Path(args.save_snapshot), data)
                print(f"saved a snapshot after shot {story.next_shot_index - 1} to {args.save_snapshot} "
                      f"({len(data) / 2**20:.1f} MiB); continue with --from-snapshot", file=sys.stderr)

        try:
            report = render_story(engine, spec, seed, on_chunk, decoder=decoder, snapshot=snapshot, on_end=on_end)
        finally:
            progress.close()
        if rerender:
            t0 = time.perf_counter()
            for index in sorted(shot_latents):  # the story's own latents, decoded whole with the Wan VAE
                writer.write(full_quality_frames(engine, shot_latents[index]))
            report["full_decode_s"] = time.perf_counter() - t0
    report["video"] = str(out)
    report["quality"] = args.quality
    print(f"wrote {out} ({report['frames']} frames, {len(spec.shots)} shots, {report['wall_s']:.1f} s, "
          f"{report['delivered_fps']:.1f} fps on {report['device']}; weights: {report['weights']})",
          file=sys.stderr)
    return report


def _read_snapshot(engine, path: str, spec: StorySpec, args: argparse.Namespace):
    """The snapshot to continue, checked against the engine and the story file."""
    from engine_core import SnapshotError, StorySnapshot

    try:
        snapshot = StorySnapshot.from_bytes(Path(path).read_bytes())
    except OSError as exc:
        raise CliError(f"cannot read the snapshot {path}: {exc.strerror or exc}") from None
    except (SnapshotError, ValueError) as exc:
        raise CliError(f"{path}: {exc}") from None
    if snapshot.global_caption != spec.global_caption:
        raise CliError(f"{path} continues a story whose global caption differs from {args.file or args.cue_log}'s: "
                       "use the same story's later shots (the caption is part of every shot's prompt)")
    if args.decoder and args.decoder != snapshot.identity.decoder:
        raise CliError(f"{path} was made with decoder {snapshot.identity.decoder!r}; drop --decoder or use that one")
    if args.seed is not None and args.seed != snapshot.seed:
        raise CliError(f"{path} has seed {snapshot.seed}; drop --seed (a snapshot keeps its story's seed)")
    try:
        engine.restore_story(snapshot).close()  # refuses another model with the mismatch named
    except (SnapshotError, ValueError) as exc:
        raise CliError(f"{path}: {exc}") from None
    return snapshot


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a private temporary file in the same folder and one rename."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def play_remote(server: str, spec: StorySpec, seed: int, out: Path, *, transport: str | None = "shm",
                token: str | None = None, ca_cert: str | None = None, quiet: bool = False,
                client_name: str = "shotstream-cli/story", announce_random: bool = True,
                decoder: str | None = None, snapshot: bytes | None = None, save_snapshot: str | None = None) -> dict:
    """Play ``spec`` through the server at ``server`` with the SDK, writing frames to ``out`` as they arrive.
    ``snapshot``: continue that story (its caption, seed and decoder); ``save_snapshot``: after the last shot,
    write the story's snapshot to that path."""
    from .render import render_story_remote, story_frames
    from .sdk import ShotStreamClient, ShotStreamError
    from .video_io import Mp4Writer

    state: dict = {}

    def on_open(info) -> None:
        if info.random_weights and announce_random:
            print(REMOTE_RANDOM_NOTE.format(model=info.model), file=sys.stderr)
        state["writer"] = Mp4Writer(out, info.width, info.height, info.fps)
        state["progress"] = Progress(story_frames(spec, info.frames_first_chunk, info.frames_per_chunk,
                                                  info.max_chunks_per_shot), enabled=not quiet)

    def on_chunk(chunk) -> None:
        state["writer"].write(chunk.frames)
        t = chunk.timing
        detail = f"server {t.denoise_ms + t.decode_ms + t.commit_ms:.0f} ms, copy {chunk.copy_ms:.1f} ms" if t else ""
        state["progress"].update(chunk.num_frames, _chunk_text(chunk.shot_index, chunk.chunk_index,
                                                               chunk.num_frames, detail))

    def on_end(session) -> None:
        data = session.snapshot(timeout=120)
        _write_atomically(Path(save_snapshot), data)
        print(f"saved a snapshot after shot {state['last_shot']} to {save_snapshot} ({len(data) / 2**20:.1f} MiB); "
              "continue with --from-snapshot", file=sys.stderr)

    def on_chunk_seen(chunk) -> None:
        state["last_shot"] = chunk.shot_index
        on_chunk(chunk)

    try:
        with ShotStreamClient(server, token=token, root_certificates=ca_cert) as client:
            report = render_story_remote(client, spec, seed, on_chunk_seen, transport=transport or "shared_memory",
                                         on_open=on_open, client_name=client_name, decoder=decoder,
                                         snapshot=snapshot, on_end=on_end if save_snapshot else None)
    except ShotStreamError as exc:
        raise CliError(f"{exc.code.name} from {server}: {exc.message}", code=1) from None
    finally:
        if "progress" in state:
            state["progress"].close()
        if "writer" in state:
            state["writer"].close()
    report["video"] = str(out)
    print(f"wrote {out} ({report['frames']} frames, {len(spec.shots)} shots, {report['wall_s']:.1f} s, "
          f"{report['delivered_fps']:.1f} fps delivered over {report['transport']} from {server}; "
          f"model {report['model']} on {report['device']}; weights: {report['weights']})", file=sys.stderr)
    return report


# -- demo ---------------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from .background import BackgroundServer
    from .settings import ServerSettings

    spec = _load_spec(args.story, args.shots)
    seed = args.seed if args.seed is not None else (spec.seed or 0)
    out_dir = Path(args.out)
    engine = _load_engine(args)
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
    _write_report(report, str(out_dir / "timings.json"))
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
    engine = _load_engine(args)
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
    story.set_defaults(func=_story)

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
