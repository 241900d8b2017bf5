"""Service benchmark: N stories at once through the real service, in-process; prints one JSON object.

    python bench/bench_service.py                                          # tiny config, CPU: seconds
    python bench/bench_service.py --config wan2.1-t2v-1.3b --device cuda --stories 2 --shots 10

A :class:`service.background.BackgroundServer` serves a random-weights engine; each story opens a
session through the Python SDK (shared-memory frames by default), cues every shot up front (WAIT
mode, prompts of a reference story under examples/stories/, cycled), and a consumer thread takes
frames as fast as they come (the SDK acknowledges each chunk as it hands it over).

Text: the service encodes each cue's prompt with ``engine.text``. A random UMT5-XXL (5.7 B
parameters) is not cheap to build, so outside the tiny config the engine gets a stand-in that maps
a prompt to a fixed random embedding (seeded by a hash of the prompt); the JSON says which. The
stand-in costs a few ms per new prompt where the real encoder costs ~32 ms on an H100.

Per story: delivered FPS, stalls (a gap between consecutive chunks longer than the playback time of
the earlier chunk at the stream's fps, from the second chunk on), a simulated player's total stall
time, first-frame latency per shot; and totals.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")  # as the CLI and the tests do
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine_core import ShotStreamEngine, get_config  # noqa: E402
from engine_core.fast_path import FastPath  # noqa: E402
from engine_core.text import PromptInfo  # noqa: E402
from service.background import BackgroundServer  # noqa: E402
from service.sdk import Chunk, ShotFinished, ShotStarted, ShotStreamClient  # noqa: E402
from service.settings import ServerSettings  # noqa: E402
from service.story_file import load_story  # noqa: E402


def log(msg: str) -> None:
    print(f"bench_service: {msg}", file=sys.stderr, flush=True)


class RandomTextStandIn:
    """``engine.text`` as Story and Session use it (``prompt_info``, ``encode``, ``max_prompt_chars``):
    each prompt maps to a fixed random ``[text_len, text_dim]`` embedding, cached on the device."""

    def __init__(self, text_len: int, text_dim: int, device: torch.device, dtype: torch.dtype, max_prompt_chars: int):
        self.text_len, self.text_dim = text_len, text_dim
        self.device, self.dtype = device, dtype
        self.max_prompt_chars = max_prompt_chars
        self._cache: dict[str, torch.Tensor] = {}
        self._lock = threading.Lock()

    def prompt_info(self, prompt: str) -> PromptInfo:
        tokens = len(prompt.encode("utf-8")) + 1  # byte-level, plus </s>
        return PromptInfo(num_tokens=min(tokens, self.text_len), truncated_tokens=max(0, tokens - self.text_len))

    def encode(self, prompts: list[str]) -> torch.Tensor:
        with self._lock:
            for p in prompts:
                if p not in self._cache:
                    seed = int.from_bytes(hashlib.blake2b(p.encode("utf-8"), digest_size=8).digest(), "little") >> 1
                    gen = torch.Generator().manual_seed(seed)
                    self._cache[p] = torch.randn(self.text_len, self.text_dim, generator=gen).to(self.device, self.dtype)
            return torch.stack([self._cache[p] for p in prompts])


def story_prompts(path: Path, shots: int) -> tuple[str, list[str]]:
    spec = load_story(path)
    return spec.global_caption, [spec.shots[i % len(spec.shots)].prompt for i in range(shots)]


class StoryRun:
    """One session: cue every shot, then take events until the last shot finishes."""

    def __init__(self, index: int, address: str, caption: str, prompts: list[str], chunks: int, transport: str):
        self.index, self.address, self.caption, self.prompts = index, address, caption, prompts
        self.chunks_per_cue, self.transport = chunks, transport
        self.cue_sent: float | None = None
        self.started: dict[int, float] = {}  # shot index -> ShotStarted received
        self.chunks: list[Chunk] = []
        self.finished = 0
        self.error: str | None = None
        self.session = None

    def run(self, barrier: threading.Barrier) -> None:
        try:
            with ShotStreamClient(self.address) as client:
                self.session = session = client.open_session(self.caption, seed=self.index, transport=self.transport,
                                                             client_name=f"bench-{self.index}")
                barrier.wait()
                self.cue_sent = time.perf_counter()
                for k, prompt in enumerate(self.prompts):
                    session.cue(prompt, num_chunks=self.chunks_per_cue, mode="wait", event_id=f"s{self.index}-{k}")
                for event in session:
                    if isinstance(event, Chunk):
                        self.chunks.append(event)
                    elif isinstance(event, ShotStarted):
                        self.started[event.shot_index] = event.received_at
                    elif isinstance(event, ShotFinished):
                        self.finished += 1
                        if self.finished == len(self.prompts):
                            break
                session.close()
        except Exception as exc:  # noqa: BLE001 - reported in the JSON
            self.error = f"{type(exc).__name__}: {exc}"
            barrier.abort()  # the other stories must not wait for this one

    def report(self, fps: int) -> dict:
        c = self.chunks
        out = {"story": self.index, "complete": self.finished == len(self.prompts) and self.error is None,
               "error": self.error, "shots_finished": self.finished, "chunks": len(c),
               "frames": sum(x.num_frames for x in c)}
        if not c:
            return out
        t_first, t_last = c[0].received_at, c[-1].received_at
        gaps = [(b.received_at - a.received_at, a.num_frames / fps) for a, b in zip(c, c[1:])]
        stalls = [g for g, play in gaps if g > play]
        clock, stalled = t_first, 0.0  # a player that starts on the first chunk and plays every frame at fps
        for x in c:
            stalled += max(0.0, x.received_at - clock)
            clock = max(clock, x.received_at) + x.num_frames / fps
        shots = []
        for shot in sorted({x.shot_index for x in c}):
            mine = [x for x in c if x.shot_index == shot]
            before = [x for x in c if x.shot_index < shot]
            shots.append({
                "shot": shot, "frames": sum(x.num_frames for x in mine),
                "first_frame_after_cue_s": mine[0].received_at - self.cue_sent if shot == 0 else None,
                "first_frame_after_shot_started_s": (mine[0].received_at - self.started[shot]
                                                     if shot in self.started else None),
                "gap_after_previous_shot_s": mine[0].received_at - before[-1].received_at if before else None,
            })
        timing = [x.timing for x in c if x.timing is not None]
        out.update({
            "delivered_fps": out["frames"] / (t_last - t_first) if t_last > t_first else None,
            "delivered_fps_incl_startup": out["frames"] / (t_last - self.cue_sent),
            "wall_s": t_last - self.cue_sent,
            "stalls": {"count": len(stalls), "max_gap_s": max((g for g, _ in gaps), default=None),
                       "gaps_s": stalls, "player_stall_s": stalled},
            "server_chunk_ms_mean": {k: statistics.mean(getattr(t, k) for t in timing) for k in
                                     ("commit_ms", "denoise_ms", "decode_ms", "queue_ms")} if timing else None,
            "client_copy_ms_mean": statistics.mean(x.copy_ms for x in c),
            "shots": shots,
        })
        return out


def build_engine(args: argparse.Namespace) -> tuple[ShotStreamEngine, str]:
    cfg = get_config(args.config)
    device = torch.device(args.device)
    fast = FastPath.for_device(device) if args.mode == "fast" else FastPath.eager()
    encoder = args.text_encoder if args.text_encoder != "auto" else ("umt5" if cfg.name == "tiny" else "stand-in")
    engine = ShotStreamEngine.random(cfg, device=device, seed=args.seed, with_text_encoder=encoder == "umt5",
                                     attention=args.attention, fp8=args.fp8, fast=fast)
    if encoder == "stand-in":
        engine.text = RandomTextStandIn(cfg.dit.text_len, cfg.dit.text_dim, engine.device, engine.dtype,
                                        cfg.stream.max_prompt_chars)
        return engine, "random stand-in"
    # The reference stories' prompts overflow the tiny text window: one truncation warning per prompt.
    logging.getLogger("engine_core.text").setLevel(logging.ERROR)
    return engine, f"random UMT5 ({cfg.name} size)"


def warm_engine(engine: ShotStreamEngine, shots: int) -> float:
    """Full shots on a throwaway story, so that compilation for every chunk position happens before serving."""
    t0 = time.perf_counter()
    story = engine.open_story("bench warm-up", seed=0)
    try:
        for i in range(shots):
            story.start_shot(f"warm-up {i}")
            while story.shot_in_progress:
                story.step()
    finally:
        story.close()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="tiny", help="tiny | wan2.1-t2v-1.3b")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mode", choices=["fast", "eager"], default="fast")
    parser.add_argument("--attention", default="auto")
    parser.add_argument("--fp8", action="store_true")
    parser.add_argument("--stories", type=int, default=2)
    parser.add_argument("--shots", type=int, default=10, help="shots cued per story")
    parser.add_argument("--chunks", type=int, default=0, help="chunks per shot (0: full shot)")
    parser.add_argument("--transport", choices=["shared_memory", "inline"], default="shared_memory")
    parser.add_argument("--text-encoder", choices=["auto", "umt5", "stand-in"], default="auto",
                        help="auto: the random UMT5 for tiny (cheap), the stand-in otherwise")
    parser.add_argument("--engine-warmup-shots", type=int, default=1,
                        help="full shots run on the engine before serving (the service's own warm-up is one chunk)")
    parser.add_argument("--story", type=Path, default=ROOT / "examples" / "stories" / "01.json")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the stories")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.stories < 1 or args.shots < 1:
        parser.error("need --stories >= 1 and --shots >= 1")

    t0 = time.perf_counter()
    engine, text_label = build_engine(args)
    build_s = time.perf_counter() - t0
    warm_s = warm_engine(engine, args.engine_warmup_shots)
    log(f"engine built in {build_s:.1f} s, warmed in {warm_s:.1f} s ({engine.fast.describe()}, "
        f"attention {engine.attention.name}, text {text_label})")
    cfg = engine.config
    caption, prompts = story_prompts(args.story, args.shots)
    if engine.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(engine.device)
    n = args.stories
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        settings = ServerSettings(grpc_port=0, gateway_port=-1, metrics_port=-1, max_sessions=max(4, n),
                                  max_sessions_per_peer=max(2, n), takes_dir=Path(tmp))
        with BackgroundServer(engine, settings) as server:
            runs = [StoryRun(i, server.address, caption, prompts, args.chunks, args.transport) for i in range(n)]
            barrier = threading.Barrier(n)
            threads = [threading.Thread(target=r.run, args=(barrier,), name=f"bench-story-{r.index}", daemon=True)
                       for r in runs]
            for t in threads:
                t.start()
            deadline = time.monotonic() + args.timeout
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            for r, t in zip(runs, threads):
                if t.is_alive():
                    r.error = r.error or f"timed out after {args.timeout:.0f} s"
                    if r.session is not None:
                        r.session.close(timeout=5.0)
    stories = [r.report(cfg.stream.fps) for r in runs]
    chunks = [c for r in runs for c in r.chunks]
    frames = sum(c.num_frames for c in chunks)
    span = (max(c.received_at for c in chunks) - min(c.received_at for c in chunks)) if chunks else 0.0
    first = [s["first_frame_after_shot_started_s"] for st in stories for s in st.get("shots", [])
             if s["shot"] > 0 and s["first_frame_after_shot_started_s"] is not None]
    result = {
        "date": datetime.date.today().isoformat(), "config": cfg.name, "random_weights": True,
        "mode": args.mode, "fast_path": engine.fast.describe(), "attention": engine.attention.name,
        "fp8": engine.fp8, "dtype": str(engine.dtype).removeprefix("torch."),
        "device": torch.cuda.get_device_name(engine.device) if engine.device.type == "cuda" else "cpu",
        "torch": torch.__version__, "text_encoder": text_label, "transport": args.transport,
        "stories": n, "shots_per_story": args.shots, "chunks_per_shot": args.chunks or cfg.stream.chunks_per_shot,
        "prompts_from": str(args.story.relative_to(ROOT) if args.story.is_relative_to(ROOT) else args.story),
        "build_s": build_s, "engine_warmup_s": warm_s, "playback_fps": cfg.stream.fps,
        "totals": {
            "complete": all(s["complete"] for s in stories), "frames": frames, "chunks": len(chunks),
            "delivered_fps": frames / span if span else None,
            "stalls": sum(s.get("stalls", {}).get("count", 0) for s in stories),
            "player_stall_s": sum(s.get("stalls", {}).get("player_stall_s", 0.0) for s in stories),
            "first_frame_after_shot_started_s_mean": statistics.mean(first) if first else None,
            "first_frame_after_shot_started_s_max": max(first, default=None),
            "peak_gpu_gib": (torch.cuda.max_memory_allocated(engine.device) / 2**30
                             if engine.device.type == "cuda" else None),
        },
        "per_story": stories,
    }
    print(json.dumps(result, indent=2))
    return 0 if result["totals"]["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
