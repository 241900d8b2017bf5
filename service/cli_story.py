"""``shotstream story``: render a story file or replay a cue log, in-process or through a server, into an MP4
and a timing report; save or continue story snapshots."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .cli_common import REMOTE_RANDOM_NOTE, CliError, Progress, chunk_text, load_engine, load_spec, write_report
from .story_file import ShotSpec, StorySpec

# -- story --------------------------------------------------------------------------------------


def run_story(args: argparse.Namespace) -> int:
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
        spec = load_spec(args.file, args.shots)
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
    write_report(report, args.report)
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

    engine = load_engine(args)
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
            progress.update(len(chunk.frames), chunk_text(chunk.shot_index, chunk.chunk_index, len(chunk.frames),
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
        state["progress"].update(chunk.num_frames, chunk_text(chunk.shot_index, chunk.chunk_index,
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
