"""Every fast path equals its eager twin, on the tiny configuration.

CPU: compiled blocks (aot_eager, and inductor) against eager blocks, with a bound on dynamo's
recompiles; ``advance()`` against ``step()``; speculative next-shot setup (``prepare_next_shot``)
against on-demand setup, shot replacement included; a cut in the middle of a chunk's denoising.
CUDA (``cuda`` marker): CUDA graphs with the overlapped decoder against the eager CUDA path in
fp32, one capture per (chunk position, pass kind), interleaved stories, and the full
``FastPath.for_device`` (inductor + graphs + overlap) against eager in bf16.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

import reference_impl as ref
from engine_core.config import TINY
from engine_core.engine import ShotStreamEngine
from engine_core.fast_path import FastPath
from engine_core.story import ChunkResult, FrameSlice, ShotNoise, Story
from engine_core.transformer import CausalWanTransformer
from engine_core.vae import WanVAE
from fixtures_weights import seeded_wan_vae

CFG = TINY
N = CFG.stream.frames_per_chunk
C, LH, LW = CFG.dit.in_dim, CFG.latent_height, CFG.latent_width
STEPS = len(CFG.stream.denoising_steps)
CTX_TOKENS = CFG.stream.context_frames * CFG.tokens_per_frame
CAPTION = "A lighthouse keeper's long night."
# (planned, produced) per shot: shot 0 is cut after 3 chunks, shot 1 visits all 7 chunk positions.
SCRIPT = ((7, 3), (7, 7))

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return ref.random_state_dict(CFG.dit, seed=0)


def _dit(state: dict[str, torch.Tensor], device: str = "cpu", dtype: torch.dtype = torch.float32
         ) -> CausalWanTransformer:
    dit = CausalWanTransformer(CFG.dit)
    dit.load_state_dict(state, strict=True)
    return dit.to(device, dtype).eval()


def _vae(device: str = "cpu", dtype: torch.dtype = torch.float32) -> WanVAE:
    return seeded_wan_vae(CFG.vae, 1, device, dtype)


@pytest.fixture(scope="module")
def cpu_vae() -> WanVAE:
    return _vae()


@pytest.fixture(scope="module")
def eager(state, cpu_vae) -> ShotStreamEngine:
    return ShotStreamEngine(CFG, _dit(state), cpu_vae, None, "eager", fast=FastPath.eager())


def make_text(seed: int) -> torch.Tensor:
    return torch.randn(CFG.dit.text_len, CFG.dit.text_dim, generator=torch.Generator().manual_seed(seed))


def make_noise(seed: int, chunks: int) -> ShotNoise:
    gen = torch.Generator().manual_seed(seed)
    return ShotNoise(initial=torch.randn(N * chunks, C, LH, LW, generator=gen),
                     renoise=torch.randn(chunks, STEPS - 1, N, C, LH, LW, generator=gen))


def run_script(engine: ShotStreamEngine, script=SCRIPT, seed: int = 0) -> list[list[ChunkResult]]:
    """Step-driven story with caller-supplied text and noise; shot k makes ``script[k][1]`` chunks."""
    story = engine.open_story(CAPTION, seed=seed)
    shots = []
    for k, (planned, produced) in enumerate(script):
        story.start_shot("", planned, text_embedding=make_text(100 + k), noise=make_noise(200 + k, planned))
        shots.append([story.step() for _ in range(produced)])
    story.close()
    return shots


def cat(chunks: list[ChunkResult], what: str) -> torch.Tensor:
    return torch.cat([getattr(c, what) for c in chunks])


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def assert_frames_close(a: torch.Tensor, b: torch.Tensor, msg: str) -> None:
    """uint8 frames: at most one level apart, and only in a few pixels (float round-off at a boundary)."""
    assert a.shape == b.shape, msg
    diff = (a.int() - b.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 1e-2, f"{msg}: max {diff.max()}, " \
                                                                 f"{(diff > 0).float().mean():.2%} differ"


def count_forwards(monkeypatch, engine: ShotStreamEngine) -> list[tuple[int, bool, bool]]:
    """Record (frames, need_output, eager) of every DiT forward."""
    calls: list[tuple[int, bool, bool]] = []
    real = engine.dit.forward

    def forward(latents, timestep, run, cache, text, need_output=True, eager=False):
        calls.append((latents.shape[0], need_output, eager))
        return real(latents, timestep, run, cache, text, need_output, eager)

    monkeypatch.setattr(engine.dit, "forward", forward)
    return calls


def drive(story: Story, on_advance: Callable[[], None] | None = None) -> list[FrameSlice]:
    """Run the current shot with advance() (wait_frames() when only decoding is left); all slices in order."""
    out: list[FrameSlice] = []
    while story.has_work or story.frames_pending:
        if story.has_work:
            out += story.advance()
            if on_advance is not None:
                on_advance()
        else:
            out += story.wait_frames()
    return out


@pytest.fixture(scope="module")
def eager_script(eager) -> list[list[ChunkResult]]:
    return run_script(eager)


# -- 1. compiled blocks ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aot_compiled(state, cpu_vae):
    """The SCRIPT story on aot_eager-compiled blocks, and dynamo's counters for that run alone."""
    torch._dynamo.reset()
    counters.clear()
    engine = ShotStreamEngine(CFG, _dit(state), cpu_vae, None, "compiled",
                              fast=FastPath(compile=True, compile_backend="aot_eager"))
    shots = run_script(engine)
    stats = {"unique_graphs": counters["stats"]["unique_graphs"], "frames": counters["frames"]["total"],
             "calls_captured": counters["stats"]["calls_captured"],
             "graph_breaks": sum(counters["graph_break"].values())}
    return engine, shots, stats


def test_compiled_blocks_equal_eager(aot_compiled, eager_script):
    engine, shots, _ = aot_compiled
    assert all(getattr(b, "_compiled_call_impl", None) is not None for b in engine.dit.blocks)
    assert [len(s) for s in shots] == [3, 7]
    for k, (ours, theirs) in enumerate(zip(shots, eager_script)):
        assert [(c.shot_index, c.chunk_index, c.first_frame) for c in ours] == \
               [(c.shot_index, c.chunk_index, c.first_frame) for c in theirs]
        lat, ref_lat = cat(ours, "latents"), cat(theirs, "latents")
        assert torch.equal(lat, ref_lat), f"shot {k} latents differ by {max_diff(lat, ref_lat):.3g}"
        assert torch.equal(cat(ours, "frames"), cat(theirs, "frames")), f"shot {k} frames"


def test_compiled_blocks_do_not_recompile_per_layer_or_chunk_position(aot_compiled):
    """One graph per (kv-only last layer, static/dynamic key length): not one per layer x position."""
    _, _, stats = aot_compiled
    positions, layers = CFG.stream.chunks_per_shot, CFG.dit.num_layers
    assert stats["calls_captured"] > 0, "nothing went through dynamo: the blocks were not compiled"
    assert stats["graph_breaks"] == 0, stats
    # kv_only True and False are different Python branches, so at least two graphs
    assert 2 <= stats["unique_graphs"] <= 4, stats
    assert stats["frames"] <= 4 < positions * layers, stats


def _inductor_works() -> bool:
    try:
        out = torch.compile(lambda x: x.sin() + 1, backend="inductor")(torch.ones(3))
        return torch.allclose(out, torch.ones(3).sin() + 1)
    except Exception:  # no C++ toolchain: skip rather than fail
        return False


def test_inductor_compiled_blocks_match_eager(state, cpu_vae, eager_script):
    """Inductor fuses and reorders float ops, so it is close (fp32 round-off), not bit-exact."""
    if not _inductor_works():
        pytest.skip("inductor cannot compile on this machine")
    torch._dynamo.reset()
    counters.clear()
    engine = ShotStreamEngine(CFG, _dit(state), cpu_vae, None, "inductor",
                              fast=FastPath(compile=True, compile_backend="inductor"))
    shots = run_script(engine)
    assert counters["stats"]["unique_graphs"] <= 4, dict(counters["stats"])
    assert counters["inductor"], "inductor did not compile anything"
    for k, (ours, theirs) in enumerate(zip(shots, eager_script)):
        lat, ref_lat = cat(ours, "latents"), cat(theirs, "latents")
        torch.testing.assert_close(lat, ref_lat, rtol=0, atol=1e-5, msg=f"shot {k} latents")
        assert_frames_close(cat(ours, "frames"), cat(theirs, "frames"), f"shot {k} frames")
    torch._dynamo.reset()


# -- 2. advance() equals step() ----------------------------------------------------------------


def test_advance_driven_story_equals_step_driven(eager, monkeypatch):
    script = [(3, 3), (2, 2)]
    stepped = run_script(eager, script, seed=7)

    calls = count_forwards(monkeypatch, eager)
    story = eager.open_story(CAPTION, seed=7)
    for k, (planned, _) in enumerate(script):
        story.start_shot("", planned, text_embedding=make_text(100 + k), noise=make_noise(200 + k, planned))
        assert story.has_work
        before = len(calls)
        per_call: list[int] = []

        def after_advance() -> None:
            per_call.append(len(calls) - before - sum(per_call))

        slices = drive(story, after_advance)
        # exactly one DiT forward per advance(): 4 steps per chunk, plus the lazy clean pass of each earlier chunk
        assert per_call == [1] * (STEPS * planned + planned - 1)
        assert all(need for _, need, _ in calls[before:before + STEPS]), "a shot's first chunk has no clean pass"
        assert story.advance() == [] and len(calls) == before + len(per_call)  # no work: no forward

        chunks = stepped[k]
        assert [len(s.frames) for s in slices] == [1, 4, 4] + [4, 4, 4] * (planned - 1)
        assert all(s.shot_index == k for s in slices)
        assert [s.chunk_index for s in slices] == [b for b in range(planned) for _ in range(N)]
        assert [s.last_in_chunk for s in slices] == [False, False, True] * planned
        assert [s.last_in_shot for s in slices] == [False] * (N * planned - 1) + [True]
        starts = [sum(len(p.frames) for p in slices[:i]) for i in range(len(slices))]
        assert [s.first_frame for s in slices] == starts
        got = [s.chunk for s in slices if s.chunk is not None]
        assert all((s.chunk is None) != s.last_in_chunk for s in slices)
        assert len(got) == len(chunks) == planned
        for b, (mine, theirs) in enumerate(zip(got, chunks)):
            pieces = slices[N * b:N * (b + 1)]
            assert torch.equal(torch.cat([p.frames for p in pieces]), mine.frames)  # slices make up the chunk
            assert (mine.shot_index, mine.chunk_index, mine.first_frame, mine.last_in_shot) == \
                   (theirs.shot_index, theirs.chunk_index, theirs.first_frame, theirs.last_in_shot)
            assert mine.first_frame == pieces[0].first_frame
            assert torch.equal(mine.frames, theirs.frames)
            assert torch.equal(mine.latents, theirs.latents)
        assert torch.equal(torch.cat([s.frames for s in slices]), cat(chunks, "frames"))
    story.close()


# -- 3. speculative next-shot setup ------------------------------------------------------------


def _context(story: Story) -> tuple[torch.Tensor, torch.Tensor]:
    return story.cache.k[:, :, :CTX_TOKENS].clone(), story.cache.v[:, :, :CTX_TOKENS].clone()


def _shots_with_setup(engine: ShotStreamEngine, prepare: bool, calls: list, planned=(2, 1, 2)):
    """Three shots; with ``prepare`` the story calls prepare_next_shot() before each (shot 0 included)."""
    story = engine.open_story(CAPTION, seed=3)
    infos, chunks, contexts, fills_in_start = [], [], [], []
    for k, n in enumerate(planned):
        if prepare:
            assert story.prepare_next_shot() is True
        before = len(calls)
        infos.append(story.start_shot("", n, text_embedding=make_text(300 + k)))
        fills_in_start.append(sum(1 for _, _, eager_fill in calls[before:] if eager_fill))
        contexts.append(_context(story))
        made = []
        for b in range(n):
            if prepare:
                cache = _context(story)
                assert story.prepare_next_shot() is False  # chunks still to make: nothing happens
                assert all(torch.equal(x, y) for x, y in zip(cache, _context(story)))
            made.append(story.step())
        chunks.append(made)
    story.close()
    return infos, chunks, contexts, fills_in_start


def test_speculative_setup_equals_on_demand(eager, monkeypatch):
    calls = count_forwards(monkeypatch, eager)
    a_infos, a_chunks, a_ctx, a_fills = _shots_with_setup(eager, True, calls)
    b_infos, b_chunks, b_ctx, b_fills = _shots_with_setup(eager, False, calls)
    # shot 0's context fill reads its own caption, so it always runs in start_shot
    assert [i.prepared_ahead for i in a_infos] == [False, True, True]
    assert [i.prepared_ahead for i in b_infos] == [False, False, False]
    assert a_fills == [1, 0, 0] and b_fills == [1, 1, 1]
    assert all(i.timings_ms["context"] == 0.0 and i.timings_ms["history"] == 0.0 for i in a_infos[1:])
    for k in range(3):
        assert a_infos[k].context_frames == b_infos[k].context_frames
        assert a_infos[k].context_flags == b_infos[k].context_flags and a_infos[k].shot_flag == b_infos[k].shot_flag
        assert a_ctx[k][0].abs().sum() > 0
        assert torch.equal(a_ctx[k][0], b_ctx[k][0]) and torch.equal(a_ctx[k][1], b_ctx[k][1]), f"shot {k} context"
        assert torch.equal(cat(a_chunks[k], "latents"), cat(b_chunks[k], "latents")), f"shot {k} latents"
        assert torch.equal(cat(a_chunks[k], "frames"), cat(b_chunks[k], "frames")), f"shot {k} frames"
    # the contexts really differ between shots (a stale fill would not be caught otherwise)
    assert not torch.equal(a_ctx[1][0], a_ctx[2][0])


@pytest.mark.parametrize("advances", [0, 2])
def test_replacing_a_prepared_shot_equals_never_having_it(eager, advances):
    """Shot 1 is prepared ahead, started with one caption (and partly denoised), then replaced."""
    story = eager.open_story(CAPTION, seed=5)
    story.start_shot("", 1, text_embedding=make_text(400))
    first = story.step()
    assert story.prepare_next_shot() is True
    replaced = story.start_shot("", 2, text_embedding=make_text(401))
    assert replaced.prepared_ahead and replaced.shot_index == 1
    for _ in range(advances):
        assert story.advance() == []  # mid-chunk: nothing finished
    info = story.start_shot("", 1, text_embedding=make_text(402))
    assert info.shot_index == 1 and info.prepared_ahead
    assert len(story.captions) == 2 and torch.equal(story.captions[1], make_text(402))
    ours = [story.step()]
    story.start_shot("", 1, text_embedding=make_text(403))  # shot 2 routes shot 1's frames to caption 1
    ours.append(story.step())
    story.close()

    direct = eager.open_story(CAPTION, seed=5)
    direct.start_shot("", 1, text_embedding=make_text(400))
    assert torch.equal(direct.step().frames, first.frames)
    theirs = []
    for seed in (402, 403):
        direct.start_shot("", 1, text_embedding=make_text(seed))
        theirs.append(direct.step())
    direct.close()
    for k, (o, t) in enumerate(zip(ours, theirs), start=1):
        assert o.shot_index == t.shot_index == k
        assert torch.equal(o.latents, t.latents), f"shot {k} latents"
        assert torch.equal(o.frames, t.frames), f"shot {k} frames"


# -- 4. a cut in the middle of a chunk ---------------------------------------------------------


@pytest.mark.parametrize("mid_chunk_advances", [1, 3])
def test_cut_during_denoising_drops_only_the_partial_chunk(eager, mid_chunk_advances):
    """1 advance: only chunk 1's clean pass ran; 3: it and two denoising steps of chunk 2."""
    story = eager.open_story(CAPTION, seed=9)
    story.start_shot("", 7, text_embedding=make_text(500))
    slices: list[FrameSlice] = []
    while sum(s.last_in_chunk for s in slices) < 2:
        slices += story.advance()
    for _ in range(mid_chunk_advances):
        slices += story.advance()
    assert story.denoising and sum(s.last_in_chunk for s in slices) == 2  # chunk 2 is mid-denoising
    info = story.start_shot("", 2, text_embedding=make_text(501))
    assert info.shot_index == 1 and not info.prepared_ahead
    slices += drive(story)
    story.close()

    shot0 = [s for s in slices if s.shot_index == 0]
    shot1 = [s for s in slices if s.shot_index == 1]
    assert [s.chunk_index for s in shot0] == [0, 0, 0, 1, 1, 1]  # the partial chunk 2 never comes out
    assert shot0[-1].last_in_chunk
    delivered = sum(len(s.frames) for s in shot0)
    assert story.shot_lengths == [delivered] == [CFG.pixel_frames(2)]
    assert [s.chunk_index for s in shot1] == [0, 0, 0, 1, 1, 1] and shot1[-1].last_in_shot

    planned = eager.open_story(CAPTION, seed=9)
    planned.start_shot("", 2, text_embedding=make_text(500))
    short = [planned.step(), planned.step()]
    info_p = planned.start_shot("", 2, text_embedding=make_text(501))
    after = [planned.step(), planned.step()]
    planned.close()
    assert info_p.context_frames == info.context_frames
    assert torch.equal(torch.cat([s.frames for s in shot0]), cat(short, "frames"))
    assert torch.equal(torch.cat([s.frames for s in shot1]), cat(after, "frames"))
    assert torch.equal(torch.cat([s.chunk.latents for s in shot1 if s.chunk]), cat(after, "latents"))


# -- 5. CUDA: graphs, overlapped decode, the full fast path ------------------------------------


@pytest.fixture(scope="module")
def exact_fp32_cuda():
    """fp32 without TF32, so 'tight' means round-off, not TF32's 10-bit mantissa."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope="module")
def cuda_fp32(state, exact_fp32_cuda):
    """(eager, graphs) engines on CUDA in fp32 over the same weights and VAE."""
    vae = _vae("cuda", torch.float32)
    eager_cuda = ShotStreamEngine(CFG, _dit(state, "cuda"), vae, None, "eager cuda", fast=FastPath.eager())
    graphs = ShotStreamEngine(CFG, _dit(state, "cuda"), vae, None, "graphs cuda",
                              fast=FastPath(compile=False, cuda_graphs=True, overlap_decode=True))
    return eager_cuda, graphs


def _advance_story(engine: ShotStreamEngine, script, seed: int) -> tuple[list[list[ChunkResult]], Story]:
    """advance()-driven ``script``: shot k denoises exactly ``produced`` chunks (no timing-dependent
    run-ahead before a cut), then waits for their frames. Returns chunk results and the open story."""
    story = engine.open_story(CAPTION, seed=seed)
    shots = []
    for k, (planned, produced) in enumerate(script):
        story.start_shot("", planned, text_embedding=make_text(100 + k), noise=make_noise(200 + k, planned))
        chunks: list[ChunkResult] = []
        while len(chunks) < produced:
            run = story.has_work and story._shot.started < produced
            got = story.advance() if run else story.wait_frames()
            chunks += [s.chunk for s in got if s.chunk is not None]
        shots.append(chunks)
    return shots, story


@pytest.mark.cuda
@needs_cuda
def test_cuda_graphs_with_overlapped_decode_equal_eager(cuda_fp32):
    eager_cuda, graphs = cuda_fp32
    script = ((7, 7), (3, 3))
    expected = run_script(eager_cuda, script)
    shots, story = _advance_story(graphs, script, seed=0)
    # one graph per (chunk position, pass kind): 7 denoising positions + 6 clean passes, all made in shot 0
    positions = CFG.stream.chunks_per_shot
    assert len(story._graphs) == positions + (positions - 1)
    story.close()
    for k, (ours, theirs) in enumerate(zip(shots, expected)):
        assert [c.chunk_index for c in ours] == [c.chunk_index for c in theirs]
        lat, ref_lat = cat(ours, "latents").cpu(), cat(theirs, "latents").cpu()
        torch.testing.assert_close(lat, ref_lat, rtol=0, atol=1e-5,
                                   msg=lambda m: f"shot {k} latents (max diff {max_diff(lat, ref_lat):.3g}): {m}")
        assert_frames_close(cat(ours, "frames"), cat(theirs, "frames"), f"shot {k} frames")


@pytest.mark.cuda
@needs_cuda
def test_cuda_graphs_capture_once_per_position_and_pass(cuda_fp32):
    _, graphs = cuda_fp32
    story = graphs.open_story(CAPTION, seed=1)
    counts = []
    for k, planned in enumerate((1, 2, 3, 3)):  # each shot runs to its end (step() may run ahead within it)
        story.start_shot("", planned, text_embedding=make_text(600 + k))
        for _ in range(planned):
            story.step()
        counts.append(len(story._graphs))
    story.close()
    # 1 chunk: its 4 steps share one graph; 2: + clean pass 0 + denoise 1; 3: + clean pass 1 + denoise 2;
    # a later shot at the same positions refills the story's buffers in place and captures nothing new
    assert counts == [1, 3, 5, 5]


@pytest.mark.cuda
@needs_cuda
def test_cuda_graphs_interleaved_stories_equal_each_alone(cuda_fp32):
    _, graphs = cuda_fp32
    script = ((3, 3), (2, 2))
    stories = [graphs.open_story(CAPTION, seed=s) for s in (0, 1)]
    both: list[list[list[ChunkResult]]] = [[], []]
    for k, (planned, _) in enumerate(script):
        for i, story in enumerate(stories):  # different captions and noise per story
            story.start_shot("", planned, text_embedding=make_text(100 + k + 50 * i),
                             noise=make_noise(200 + k + 50 * i, planned))
            both[i].append([])
        for _ in range(planned):
            for i, story in enumerate(stories):
                both[i][k].append(story.step())
    for story in stories:
        story.close()
    alone = [_run_alone(graphs, script, i) for i in (0, 1)]
    for i in (0, 1):
        for k in range(len(script)):
            lat, ref_lat = cat(both[i][k], "latents").cpu(), cat(alone[i][k], "latents").cpu()
            assert torch.equal(lat, ref_lat), f"story {i} shot {k}: max diff {max_diff(lat, ref_lat):.3g}"
            assert torch.equal(cat(both[i][k], "frames"), cat(alone[i][k], "frames")), f"story {i} shot {k}"
    assert not torch.equal(cat(both[0][0], "latents"), cat(both[1][0], "latents"))


def _run_alone(engine: ShotStreamEngine, script, i: int) -> list[list[ChunkResult]]:
    story = engine.open_story(CAPTION, seed=i)
    shots = []
    for k, (planned, _) in enumerate(script):
        story.start_shot("", planned, text_embedding=make_text(100 + k + 50 * i),
                         noise=make_noise(200 + k + 50 * i, planned))
        shots.append([story.step() for _ in range(planned)])
    story.close()
    return shots


@pytest.mark.cuda
@needs_cuda
def test_cuda_full_fast_path_bf16_stays_close_to_eager(state):
    device = torch.device("cuda")
    torch._dynamo.reset()
    vae = _vae("cuda", torch.bfloat16)
    fast = FastPath.for_device(device)
    assert fast.compile and fast.cuda_graphs and fast.overlap_decode and fast.compile_backend == "inductor"
    eager_bf16 = ShotStreamEngine(CFG, _dit(state, "cuda", torch.bfloat16), vae, None, "eager bf16",
                                  fast=FastPath.eager())
    full = ShotStreamEngine(CFG, _dit(state, "cuda", torch.bfloat16), vae, None, "full bf16", fast=fast)
    expected = run_script(eager_bf16, SCRIPT)
    shots, story = _advance_story(full, SCRIPT, seed=0)
    story.close()
    for k, (ours, theirs) in enumerate(zip(shots, expected)):
        assert [c.chunk_index for c in ours] == [c.chunk_index for c in theirs]
        lat, ref_lat = cat(ours, "latents").float().cpu(), cat(theirs, "latents").float().cpu()
        diff = max_diff(lat, ref_lat)
        assert diff < 0.05, f"shot {k}: bf16 full fast path vs eager, max abs latent diff {diff:.4f}"
        frame_diff = (cat(ours, "frames").float() - cat(theirs, "frames").float()).abs().mean().item()
        assert frame_diff < 2.0, f"shot {k}: mean abs frame diff {frame_diff:.2f} levels"
    torch._dynamo.reset()
