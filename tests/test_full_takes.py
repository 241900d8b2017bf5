"""Issue 10: the tiny preview decoder through the service, and full-quality takes re-decoded with the Wan VAE.

The tiny engine carries a random tiny decoder (``tae=True``); real in-process servers on 127.0.0.1,
every wait bounded. Exactness is checked where no MP4 codec sits in between (the re-decode's frames
against an offline Wan decode); the files are checked for their frames and modes.
"""

from __future__ import annotations

import asyncio
import stat
import threading
from pathlib import Path

import grpc
import imageio_ffmpeg
import numpy as np
import pytest
import torch

from engine_core import TINY, ShotStreamEngine
from engine_core.decode_lane import to_uint8
from service.full_takes import FullRender, KeptLatents
from service.protocol import pb
from service.render import full_quality_frames
from service.scheduler import Unit
from service.worker import GpuWorker
from service_helpers import Direct as BaseDirect
from service_helpers import serving

CAPTION, SEED = "A lighthouse on a stormy coast.", 3
SHOTS = [("The keeper climbs the stairs.", 2), ("A wave hits the rocks.", 2)]


@pytest.fixture(scope="module")
def engine():
    return ShotStreamEngine.random(TINY, device="cpu", seed=0, tae=True)


class Direct(BaseDirect):
    open_defaults = {"client_name": "full-takes", "global_caption": CAPTION, "seed": SEED}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def mp4_frames(path: Path) -> int:
    reader = imageio_ffmpeg.read_frames(str(path))
    next(reader)
    return sum(1 for _ in reader)


def story_chunks(engine, decoder: str, shots=SHOTS) -> list[list]:
    story = engine.open_story(CAPTION, SEED, decoder)
    out = []
    try:
        for prompt, n in shots:
            story.start_shot(prompt, n)
            out.append([story.step() for _ in range(n)])
    finally:
        story.close()
    return out


# -- the engine's choice of decoder ---------------------------------------------------------------


def test_tae_story_gives_the_wan_paths_frame_counts_and_shot0_latents(engine):
    wan, tae = story_chunks(engine, "wan"), story_chunks(engine, "tae")
    assert [[len(c.frames) for c in s] for s in tae] == [[len(c.frames) for c in s] for s in wan] == [[9, 12]] * 2
    for a, b in zip(wan[0], tae[0]):  # shot 0 has no history: the decoder cannot reach its latents
        assert torch.equal(a.latents, b.latents)
        assert not torch.equal(a.frames, b.frames)  # but its pictures are the tiny decoder's
    # later shots re-encode history from the preview frames: their latents drift (measured by the bench)
    assert not torch.equal(wan[1][0].latents, tae[1][0].latents)


def test_unknown_or_unloaded_decoder_is_a_clear_error(engine):
    with pytest.raises(ValueError, match="'vqgan' is not available here; this engine has \\['wan', 'tae'\\]"):
        engine.open_story(CAPTION, SEED, "vqgan")
    plain = ShotStreamEngine.random(TINY, device="cpu", seed=0)
    with pytest.raises(ValueError, match="load a tiny decoder"):
        plain.open_story(CAPTION, SEED, "tae")


# -- the re-decode itself (no codec in between: exact) -----------------------------------------------


def render_all(engine, kept: KeptLatents) -> np.ndarray:
    frames, result = [], []
    job = FullRender(engine, kept.take_recorded(), frames.append, result.append)
    steps = 0
    while not job.step():
        steps += 1
        assert steps < 100
    assert result == [None] and job.finished
    return np.concatenate(frames)


def test_full_render_equals_an_offline_wan_decode_of_the_kept_latents(engine):
    shots = story_chunks(engine, "tae")
    kept = KeptLatents(max_shots=8)
    for shot in shots:
        for chunk in shot:
            kept.add(chunk)
            kept.record(chunk)
    offline = [full_quality_frames(engine, [c.latents for c in shot]) for shot in shots]
    np.testing.assert_array_equal(render_all(engine, kept), np.concatenate(offline))
    # shot 0's latents are the Wan story's, so its full-quality frames are exactly what decoder="wan" shows
    wan0 = torch.cat([c.frames for c in story_chunks(engine, "wan", SHOTS[:1])[0]]).numpy()
    np.testing.assert_array_equal(offline[0], wan0)


def test_a_take_that_starts_mid_shot_decodes_the_shot_from_its_start(engine):
    (shot,) = story_chunks(engine, "tae", [("A wave hits the rocks.", 3)])
    kept = KeptLatents(max_shots=8)
    kept.add(shot[0])  # before the take: kept, not recorded
    for chunk in shot[1:]:
        kept.add(chunk)
        kept.record(chunk)
    whole = to_uint8(engine.vae.decode(torch.cat([c.latents for c in shot]))).numpy()
    np.testing.assert_array_equal(render_all(engine, kept), whole[len(shot[0].frames):])


# -- the worker: renders only fill idle time --------------------------------------------------------


class _BusySession:
    """Stands in for a session with ``units`` forwards to run (the first waits for ``gate``)."""

    closing = False
    frames_pending = False

    def __init__(self, units: int, log: list, gate: threading.Event):
        self.id, self.units, self.log, self.gate = "busy", units, log, gate

    def next_unit(self):
        return (Unit.FORWARD, 0.0) if self.units else None

    def run(self, unit) -> int:
        self.gate.wait(10)
        self.units -= 1
        self.log.append("forward")
        return 0

    def poll_frames(self) -> int:
        return 0

    def release(self) -> None:
        pass


class _CountingRender:
    name = "counting"

    def __init__(self, steps: int, log: list):
        self.steps, self.log, self.done = steps, log, threading.Event()

    def step(self) -> bool:
        self.log.append("render")
        self.steps -= 1
        if not self.steps:
            self.done.set()
        return not self.steps

    def fail(self, exc: BaseException) -> None:
        self.done.set()


def test_worker_runs_a_render_only_when_no_session_has_work():
    log: list[str] = []
    gate = threading.Event()
    worker = GpuWorker("cpu")
    try:
        worker.add(_BusySession(4, log, gate))
        job = _CountingRender(3, log)
        assert worker.reserve_render(1) and not worker.reserve_render(1)
        worker.render(job)
        gate.set()
        assert job.done.wait(10)
        assert log == ["forward"] * 4 + ["render"] * 3
        assert worker.reserve_render(1)  # the finished render gave its slot back
    finally:
        worker.stop()


def test_stopping_the_worker_fails_renders_it_did_not_run():
    worker = GpuWorker("cpu")
    gate = threading.Event()
    worker.add(_BusySession(1, [], gate))  # keeps the worker busy until the gate opens
    failed = []
    job = _CountingRender(5, [])
    job.fail = failed.append
    assert worker.reserve_render(1)
    worker.render(job)
    threading.Timer(0.5, gate.set).start()
    worker.stop()
    assert len(failed) <= 1 and (failed or job.steps == 0)  # either ran to the end or was failed, never lost


# -- through the service --------------------------------------------------------------------------


async def play(d: Direct, shots=SHOTS) -> list[pb.FrameChunk]:
    chunks = []
    for i, (prompt, n) in enumerate(shots):
        await d.cue(f"s{i}", prompt, n)
    finished = 0
    while finished < len(shots):
        msg = await d.recv()
        kind = msg.WhichOneof("kind")
        if kind == "chunk":
            chunks.append(msg.chunk)
            await d.ack(msg.chunk)
        finished += kind == "shot_finished"
    return chunks


async def next_of(d: Direct, kind: str):
    while (msg := await d.recv()) is not None:
        if msg.WhichOneof("kind") == kind:
            return getattr(msg, kind)
        assert msg.WhichOneof("kind") not in ("error",), msg
    raise AssertionError(f"the stream ended before a {kind}")


def test_session_negotiates_its_decoder(engine):
    async def body():
        async with serving(engine) as (server, stub, _c):
            info = await stub.GetServerInfo(pb.GetServerInfoRequest())
            assert list(info.decoders) == [pb.DECODER_WAN, pb.DECODER_TAE] and info.default_decoder == pb.DECODER_WAN
            assert "tiny-tae" in info.tae and "max_full_renders" in info.limits
            d = Direct(stub)
            assert (await d.open()).decoder == pb.DECODER_WAN  # unspecified: the server's default
            await d.close()
            d = Direct(stub)
            assert (await d.open(decoder=pb.DECODER_TAE)).decoder == pb.DECODER_TAE
            chunks = await play(d, SHOTS[:1])
            assert [c.num_frames for c in chunks] == [9, 12]
            await d.close()

    run(body())


def test_a_tae_session_on_a_server_without_one_is_refused():
    plain = ShotStreamEngine.random(TINY, device="cpu", seed=0)

    async def body():
        async with serving(plain) as (server, stub, _c):
            d = Direct(stub)
            await d.send(open=pb.OpenSession(protocol_version=1, global_caption=CAPTION, decoder=pb.DECODER_TAE))
            await d.fails(grpc.StatusCode.FAILED_PRECONDITION, "no 'tae' decoder")

    run(body())


def test_full_take_of_a_tae_session_writes_both_files(engine, tmp_path):
    async def body():
        async with serving(engine, takes_dir=tmp_path) as (server, stub, _c):
            d = Direct(stub)
            await d.open(decoder=pb.DECODER_TAE)
            await d.send(start_take=pb.StartTake(name="storm", quality=pb.TAKE_QUALITY_FULL))
            started = await next_of(d, "take_started")
            assert (started.quality, Path(started.full_path).name) == (pb.TAKE_QUALITY_FULL, "storm.full.mp4")
            chunks = await play(d)
            await d.send(stop_take=pb.StopTake())
            saved = await next_of(d, "take_saved")
            await d.close()
            return chunks, saved

    chunks, saved = run(body())
    frames = sum(c.num_frames for c in chunks)
    assert saved.frames == frames and saved.full_path == str(tmp_path.resolve() / "storm.full.mp4")
    for path, size in ((saved.path, saved.bytes), (saved.full_path, saved.full_bytes)):
        assert Path(path).stat().st_size == size > 0
        assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600
        assert mp4_frames(Path(path)) == frames
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".partial")]


def test_full_take_of_a_wan_session_is_the_live_file(engine, tmp_path):
    async def body():
        async with serving(engine, takes_dir=tmp_path) as (server, stub, _c):
            d = Direct(stub)
            await d.open()
            await d.send(start_take=pb.StartTake(name="wan", quality=pb.TAKE_QUALITY_FULL))
            assert (await next_of(d, "take_started")).full_path.endswith("wan.mp4")
            await play(d, SHOTS[:1])
            await d.send(stop_take=pb.StopTake())
            saved = await next_of(d, "take_saved")
            await d.close()
            return saved

    saved = run(body())
    assert saved.full_path == saved.path and saved.full_bytes == saved.bytes > 0
    assert not (tmp_path / "wan.full.mp4").exists()


def test_full_take_stops_at_max_take_full_shots(engine, tmp_path):
    async def body():
        async with serving(engine, takes_dir=tmp_path, max_take_full_shots=1) as (server, stub, _c):
            d = Direct(stub)
            await d.open(decoder=pb.DECODER_TAE)
            await d.send(start_take=pb.StartTake(name="one", quality=pb.TAKE_QUALITY_FULL))
            await next_of(d, "take_started")
            for i, (prompt, n) in enumerate(SHOTS):
                await d.cue(f"s{i}", prompt, n)
            saved, error, finished = None, None, 0
            while saved is None or finished < len(SHOTS):
                msg = await d.recv()
                kind = msg.WhichOneof("kind")
                if kind == "chunk":
                    await d.ack(msg.chunk)
                elif kind == "error":
                    error = msg.error
                elif kind == "take_saved":
                    saved = msg.take_saved
                finished += kind == "shot_finished"
            await d.close()
            return error, saved

    error, saved = run(body())
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0] and not error.fatal
    assert "max_take_full_shots" in error.message
    assert saved.frames == TINY.pixel_frames(2) and mp4_frames(Path(saved.full_path)) == saved.frames


def test_full_takes_waiting_for_a_render_are_bounded(engine, tmp_path):
    async def body():
        async with serving(engine, takes_dir=tmp_path, max_full_renders=1) as (server, stub, _c):
            gate = threading.Event()
            assert server.worker.reserve_render(1)
            server.worker.render(_GatedRender(gate))  # holds the one render slot
            try:
                d = Direct(stub)
                await d.open(decoder=pb.DECODER_TAE)
                await d.send(start_take=pb.StartTake(name="x", quality=pb.TAKE_QUALITY_FULL))
                error = await d.expect("error")
                assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0] and not error.fatal
                assert "(max_full_renders=1)" in error.message
                assert not list(tmp_path.glob("x*"))  # nothing reserved
                await d.send(start_take=pb.StartTake(name="x"))  # a live take is still fine
                assert (await d.expect("take_started")).quality == pb.TAKE_QUALITY_LIVE
                await d.send(stop_take=pb.StopTake())
                assert (await d.expect("take_saved")).frames == 0  # nothing recorded: no file
                await d.close()
            finally:
                gate.set()

    run(body())


class _GatedRender:
    name = "gated"

    def __init__(self, gate: threading.Event):
        self.gate = gate

    def step(self) -> bool:
        return self.gate.is_set()

    def fail(self, exc: BaseException) -> None:
        pass


def test_live_chunks_keep_flowing_while_a_full_take_renders(engine, tmp_path):
    """A second session plays a whole shot while the first one's full-quality take waits for idle time."""
    async def body():
        async with serving(engine, takes_dir=tmp_path) as (server, stub, _c):
            a, b = Direct(stub), Direct(stub)
            await a.open(decoder=pb.DECODER_TAE)
            await b.open()
            await a.send(start_take=pb.StartTake(name="bg", quality=pb.TAKE_QUALITY_FULL))
            await next_of(a, "take_started")
            await play(a, SHOTS[:1])
            await a.send(stop_take=pb.StopTake())
            chunks = await play(b, [("A gull over the sea.", 3)])
            saved = await next_of(a, "take_saved")
            await a.close()
            await b.close()
            return chunks, saved

    chunks, saved = run(body())
    assert [c.num_frames for c in chunks] == [9, 12, 12]
    assert mp4_frames(Path(saved.full_path)) == saved.frames == 21


def test_render_story_with_a_full_take(engine, tmp_path):
    async def body():
        async with serving(engine, takes_dir=tmp_path) as (server, stub, _c):
            request = pb.RenderStoryRequest(
                protocol_version=1, global_caption=CAPTION, seed=SEED, decoder=pb.DECODER_TAE,
                shots=[pb.StoryShot(prompt=p, num_chunks=n) for p, n in SHOTS],
                take=pb.StartTake(name="story", quality=pb.TAKE_QUALITY_FULL))
            return [ev async for ev in stub.RenderStory(request)]

    events = run(body())
    kinds = [ev.WhichOneof("kind") for ev in events]
    assert kinds[-1] == "take_saved" and kinds.count("chunk") == 4
    saved = events[-1].take_saved
    assert saved.frames == 2 * TINY.pixel_frames(2) and Path(saved.full_path).name == "story.full.mp4"
    assert mp4_frames(Path(saved.full_path)) == saved.frames


# -- the headless story CLI --------------------------------------------------------------------------


def test_story_cli_full_quality_writes_the_wan_re_decode(tmp_path, capsys):
    import json

    from service.cli import main

    story = tmp_path / "story.json"
    story.write_text(json.dumps({"global_caption": CAPTION, "seed": SEED,
                                 "shots": [{"prompt": p, "chunks": n} for p, n in SHOTS]}))
    report = tmp_path / "r.json"
    assert main(["story", str(story), "--out", str(tmp_path / "full.mp4"), "--report", str(report), "--device", "cpu",
                 "--decoder", "tae", "--quality", "full", "--quiet"]) == 0, capsys.readouterr().err
    got = json.loads(report.read_text())
    assert (got["decoder"], got["quality"]) == ("tae", "full") and got["full_decode_s"] > 0
    assert mp4_frames(tmp_path / "full.mp4") == got["frames"] == 2 * TINY.pixel_frames(2)
    assert main(["story", str(story), "--out", str(tmp_path / "x.mp4"), "--server", "127.0.0.1:1",
                 "--quality", "full"]) == 2
    assert "record a full-quality take instead" in capsys.readouterr().err


def test_a_recording_full_take_holds_its_render_slot(engine, tmp_path):
    async def body():
        async with serving(engine, takes_dir=tmp_path, max_full_renders=1) as (server, stub, _c):
            a, b = Direct(stub), Direct(stub)
            await a.open(decoder=pb.DECODER_TAE)
            await b.open(decoder=pb.DECODER_TAE)
            await a.send(start_take=pb.StartTake(name="a", quality=pb.TAKE_QUALITY_FULL))
            await a.expect("take_started")
            await b.send(start_take=pb.StartTake(name="b", quality=pb.TAKE_QUALITY_FULL))
            assert "(max_full_renders=1)" in (await b.expect("error")).message
            await a.send(stop_take=pb.StopTake())
            assert (await a.expect("take_saved")).frames == 0  # empty: rendered at once, slot given back
            await b.send(start_take=pb.StartTake(name="b", quality=pb.TAKE_QUALITY_FULL))
            assert (await b.expect("take_started")).full_path.endswith("b.full.mp4")
            await b.send(stop_take=pb.StopTake())
            await b.expect("take_saved")
            await a.close()
            await b.close()

    run(body())
