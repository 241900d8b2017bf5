"""The interactive Story API on the tiny random engine (CPU, milliseconds per chunk).

Covers the chunk stream of a shot, determinism, cuts, shot replacement, the shot-flag quirk,
long stories with bounded memory, history-latent reuse, per-frame caption routing, caller-supplied
text embeddings and noise, input validation and close().
"""

from __future__ import annotations

import pytest
import torch

from engine_core.config import TINY
from engine_core.engine import ShotStreamEngine
from engine_core.history import plan_context
from engine_core.kv_cache import SelfAttentionCache
from engine_core.story import ShotNoise
from engine_core.transformer import CausalWanTransformer, FrameRun

CFG = TINY
N = CFG.stream.frames_per_chunk
C, LH, LW = CFG.dit.in_dim, CFG.latent_height, CFG.latent_width
STEPS = len(CFG.stream.denoising_steps)
TEXT_SHAPE = (CFG.dit.text_len, CFG.dit.text_dim)
CAPTION = "A rainy neon city at night."


@pytest.fixture(scope="module")
def engine() -> ShotStreamEngine:
    return ShotStreamEngine.random(CFG, device="cpu", seed=0)


def run_shot(story, prompt: str, num_chunks: int | None = None, **kw):
    info = story.start_shot(prompt, num_chunks, **kw)
    chunks = []
    while story.shot_in_progress:
        chunks.append(story.step())
    return info, chunks


def frames_of(chunks) -> torch.Tensor:
    return torch.cat([c.frames for c in chunks])


def latents_of(chunks) -> torch.Tensor:
    return torch.cat([c.latents for c in chunks])


def make_noise(seed: int, chunks: int) -> ShotNoise:
    gen = torch.Generator().manual_seed(seed)
    return ShotNoise(initial=torch.randn(N * chunks, C, LH, LW, generator=gen),
                     renoise=torch.randn(chunks, STEPS - 1, N, C, LH, LW, generator=gen))


def make_text(seed: int) -> torch.Tensor:
    return torch.randn(*TEXT_SHAPE, generator=torch.Generator().manual_seed(seed))


# -- the chunk stream of one shot ---------------------------------------------------------------


def test_full_shot_chunk_stream(engine):
    story = engine.open_story(CAPTION, seed=3)
    assert not story.shot_in_progress
    info = story.start_shot("A detective steps out of a taxi.")
    assert info.shot_index == 0
    assert info.num_chunks == 7
    assert info.num_frames == 81
    assert info.prompt_tokens is not None and info.prompt_tokens <= CFG.dit.text_len
    assert story.shot_in_progress

    chunks = []
    while story.shot_in_progress:
        chunks.append(story.step())
        if len(chunks) > 7:
            pytest.fail("shot_in_progress stayed True past 7 chunks")
    assert not story.shot_in_progress
    assert len(chunks) == 7
    assert [c.chunk_index for c in chunks] == list(range(7))
    assert all(c.shot_index == 0 for c in chunks)
    assert [len(c.frames) for c in chunks] == [9] + [12] * 6
    assert [c.first_frame for c in chunks] == [0, 9, 21, 33, 45, 57, 69]
    assert [c.last_in_shot for c in chunks] == [False] * 6 + [True]
    assert sum(len(c.frames) for c in chunks) == info.num_frames
    for c in chunks:
        assert c.frames.dtype == torch.uint8
        assert c.frames.device.type == "cpu"
        assert tuple(c.frames.shape) == (len(c.frames), 32, 48, 3)
        assert tuple(c.latents.shape) == (N, C, LH, LW)
        assert torch.isfinite(c.latents).all()
    # random weights still give a non-constant picture (a broken decode would give a flat one)
    assert frames_of(chunks).float().std() > 1.0
    with pytest.raises(RuntimeError, match="start_shot"):
        story.step()
    story.close()


def test_short_shot_frame_counts(engine):
    story = engine.open_story(CAPTION, seed=0)
    info, chunks = run_shot(story, "short", 2)
    assert info.num_frames == 21 == sum(len(c.frames) for c in chunks)
    assert [c.last_in_shot for c in chunks] == [False, True]
    info2 = story.start_shot("next", 1)
    assert story.shot_lengths == [21]
    assert info2.shot_index == 1 and info2.num_frames == 9
    story.close()


# -- determinism --------------------------------------------------------------------------------


def _two_shots(engine, seed):
    story = engine.open_story(CAPTION, seed=seed)
    _, a = run_shot(story, "first shot", 2)
    _, b = run_shot(story, "second shot", 1)
    story.close()
    return a + b


def test_same_seed_same_output(engine):
    one, two = _two_shots(engine, 5), _two_shots(engine, 5)
    assert torch.equal(frames_of(one), frames_of(two))
    assert torch.equal(latents_of(one), latents_of(two))

    other_engine = ShotStreamEngine.random(CFG, device="cpu", seed=0)
    three = _two_shots(other_engine, 5)
    assert torch.equal(frames_of(one), frames_of(three))
    assert torch.equal(latents_of(one), latents_of(three))


def test_different_story_seed_different_output(engine):
    a, b = _two_shots(engine, 5), _two_shots(engine, 6)
    assert not torch.equal(latents_of(a[:2]), latents_of(b[:2]))
    assert not torch.equal(frames_of(a[:2]), frames_of(b[:2]))
    assert not torch.equal(frames_of(a[2:]), frames_of(b[2:]))


def test_interleaved_stories_do_not_interfere(engine):
    ref = _two_shots(engine, 5)
    s1, s2 = engine.open_story(CAPTION, seed=5), engine.open_story(CAPTION, seed=9)
    s1.start_shot("first shot", 2)
    s2.start_shot("something else", 7)
    got = [s1.step(), s2.step(), s2.step(), s1.step()]
    assert torch.equal(frames_of([got[0], got[3]]), frames_of(ref[:2]))
    s1.close()
    s2.close()


# -- cuts and replacement -----------------------------------------------------------------------


def _count_cache_only_passes(monkeypatch, engine) -> list[int]:
    calls: list[int] = []
    real = engine.dit.forward

    def forward(latents, timestep, run, cache, text, need_output=True, eager=False):
        if not need_output:
            calls.append(latents.shape[0])
        return real(latents, timestep, run, cache, text, need_output, eager)

    monkeypatch.setattr(engine.dit, "forward", forward)
    return calls


def test_clean_pass_of_each_chunk_runs_lazily_at_the_next_step(engine, monkeypatch):
    passes: list[tuple[torch.Tensor, float, int]] = []
    real = engine.dit.forward

    def forward(latents, timestep, run, cache, text, need_output=True, eager=False):
        if not need_output:
            passes.append((latents.clone(), timestep, run.write_start))
        return real(latents, timestep, run, cache, text, need_output, eager)

    monkeypatch.setattr(engine.dit, "forward", forward)
    story = engine.open_story(CAPTION, seed=0)
    story.start_shot("three chunks", 3)
    clean = engine.time_cond(0.0)
    assert len(passes) == 1 and passes[0][1] is clean and passes[0][2] == 0  # the history fill
    tpf = CFG.tokens_per_frame
    chunks = [story.step()]
    assert len(passes) == 1  # chunk 0 leaves before its clean pass
    for b in (1, 2):
        chunks.append(story.step())
        assert len(passes) == 1 + b
        latents, t, write_start = passes[-1]
        assert t is clean
        assert torch.equal(latents, chunks[b - 1].latents)  # the previous chunk's clean x0
        assert write_start == (CFG.stream.context_frames + N * (b - 1)) * tpf
    assert chunks[-1].last_in_shot
    story.start_shot("next", 1)
    assert len(passes) == 4  # only the next shot's history fill: the last chunk needs no clean pass
    story.close()


def test_cut_mid_shot(engine, monkeypatch):
    story = engine.open_story(CAPTION, seed=2)
    info0 = story.start_shot("a long shot", 7)
    first = [story.step(), story.step()]
    assert story.shot_in_progress  # 5 chunks still to go

    passes = _count_cache_only_passes(monkeypatch, engine)
    info1 = story.start_shot("the cut")
    # the history fill is the only cache-only pass: the cut chunk's clean pass is not run
    assert passes == [CFG.stream.context_frames]
    assert story.shot_lengths == [21]
    assert info0.shot_index == 0 and info1.shot_index == 1
    expected = ((0, 0), (0, 4), (0, 8), (0, 12), (0, 16), (0, 20))
    assert info1.context_frames == expected
    assert info1.context_frames == plan_context([21]).frames
    assert info1.context_flags == (0,) * 6 and info1.shot_flag == 1

    second = story.step()
    assert passes == [CFG.stream.context_frames]  # no pending pass at a shot's first chunk
    assert second.shot_index == 1 and second.chunk_index == 0 and second.first_frame == 0
    monkeypatch.undo()
    story.close()

    # Cutting after 2 chunks is the same story as a 2-chunk shot (same noise stream, frames, context).
    planned = engine.open_story(CAPTION, seed=2)
    _, short = run_shot(planned, "a long shot", 2)
    info_b = planned.start_shot("the cut")
    assert torch.equal(frames_of(first), frames_of(short))
    assert info_b.context_frames == info1.context_frames
    assert torch.equal(planned.step().frames, second.frames)
    planned.close()


def test_replacing_a_shot_without_chunks(engine):
    story = engine.open_story(CAPTION, seed=4)
    a = story.start_shot("first idea", 3)
    b = story.start_shot("second idea", 1)
    assert a.shot_index == 0 and b.shot_index == 0
    assert len(story.captions) == 1
    assert story.shot_lengths == []
    got = story.step()
    assert got.shot_index == 0 and got.last_in_shot
    c = story.start_shot("next shot", 1)
    assert c.shot_index == 1 and len(story.captions) == 2
    story.close()

    direct = engine.open_story(CAPTION, seed=4)
    direct.start_shot("second idea", 1)
    assert torch.equal(direct.step().frames, got.frames)
    direct.close()


def test_replacing_a_later_shot(engine):
    story = engine.open_story(CAPTION, seed=4)
    run_shot(story, "zero", 1)
    story.start_shot("one, first try", 2)
    info = story.start_shot("one, second try", 1)
    assert info.shot_index == 1
    assert len(story.captions) == 2
    assert story.shot_lengths == [9]
    story.close()


# -- shot flags, long stories, history reuse ---------------------------------------------------


def test_shot_flag_quirk(engine):
    story = engine.open_story(CAPTION, seed=0)
    infos = [run_shot(story, f"shot {k}", 1)[0] for k in range(3)]
    story.close()
    assert infos[0].context_frames == ()
    assert infos[0].context_flags == (0,) * 6 and infos[0].shot_flag == 1
    assert infos[1].context_flags == (0,) * 6 and infos[1].shot_flag == 1
    assert infos[2].context_flags == (0, 0, 0, 1, 1, 1) and infos[2].shot_flag == 2
    assert [i.shot_index for i in infos] == [0, 1, 2]


def test_long_story_keeps_working_and_memory_stays_bounded(engine, monkeypatch):
    captions_encoded: list[int] = []
    real = engine.dit.encode_text

    def encode_text(text):
        captions_encoded.append(text.shape[0])
        return real(text)

    monkeypatch.setattr(engine.dit, "encode_text", encode_text)
    story = engine.open_story(CAPTION, seed=1)
    infos, outs = [], []
    for k in range(9):
        info, chunks = run_shot(story, f"shot number {k}", 1)
        infos.append(info)
        outs.append(chunks[0])
        horizon = k - CFG.stream.context_frames
        for store in (story._history_latents, story._kept_frames):
            assert all(key[0] >= horizon for key in store), (k, sorted(store))
            assert len(store) <= CFG.stream.context_frames * 9  # a few frames per reachable shot
    assert [i.shot_index for i in infos] == list(range(9))
    assert [o.shot_index for o in outs] == list(range(9))
    assert all(torch.isfinite(o.latents).all() for o in outs)
    assert story.shot_lengths == [9] * 8

    last = infos[8]
    assert last.context_frames == tuple((s, 0) for s in range(2, 8))
    assert last.context_flags == tuple(range(2, 8))
    assert last.shot_flag == 8
    assert infos[7].context_frames == tuple((s, 0) for s in range(1, 7))
    # every shot encodes its own caption alone (the chunks' caption); the context fill of shot k >= 1
    # encodes the captions its frames route to: 0..k-1 up to shot 6, then a sliding 6
    assert captions_encoded == [1] + [n for k in range(1, 9) for n in (1, min(k, 6))]

    assert {k[0] for k in story._history_latents} == set(range(2, 8))
    assert min(k[0] for k in story._kept_frames) >= 2
    # embeddings of captions no later shot can use are released too
    assert story.captions[0] is None and story.captions[1] is None
    assert all(isinstance(c, torch.Tensor) for c in story.captions[2:])
    assert len(story.captions) == 9

    info9, chunks9 = run_shot(story, "shot number 9", 1)
    assert info9.context_frames == tuple((s, 0) for s in range(3, 9))
    assert chunks9[0].shot_index == 9
    story.close()


def test_history_latents_are_encoded_once(engine, monkeypatch):
    encoded: list[int] = []
    real = engine.vae.encode_frames

    def encode_frames(frames):
        encoded.append(frames.shape[0])
        return real(frames)

    monkeypatch.setattr(engine.vae, "encode_frames", encode_frames)
    story = engine.open_story(CAPTION, seed=0)
    seen: set = set()
    expected: list[int] = []
    for k in range(4):
        plan = plan_context([9] * k)  # shot k's history: the k earlier 1-chunk (9-frame) shots
        expected.append(len(set(plan.frames) - seen))
        seen |= set(plan.frames)
        before = sum(encoded)
        info, _ = run_shot(story, f"shot {k}", 1)
        assert info.context_frames == plan.frames
        assert sum(encoded) - before == expected[-1], (k, encoded)
    # shot 0: all-zero history, nothing encoded; shot 1: 6 frames of shot 0; shot 2 reuses (0,0), (0,8)
    # and encodes (0,4) and 3 frames of shot 1; shot 3 needs only (2,0), (2,8)
    assert expected == [0, 6, 4, 2]

    # a reused latent is exactly what encoding the kept frame alone gives
    key = (0, 0)
    torch.testing.assert_close(story._history_latents[key], real(story._kept_frames[key][None])[0], rtol=0, atol=0)
    story.close()


# -- caption routing ---------------------------------------------------------------------------


def test_shot_one_context_cross_attends_to_caption_zero(engine):
    text0, text1, other = make_text(10), make_text(11), make_text(12)

    def story_with(shot0_text, caption0_for_shot1):
        story = engine.open_story(CAPTION, seed=0)
        _, c0 = run_shot(story, "", 1, text_embedding=shot0_text)
        story.captions[0] = caption0_for_shot1  # what shot 1's context frames attend to
        _, c1 = run_shot(story, "", 1, text_embedding=text1)
        story.close()
        return c0[0], c1[0]

    base0, base1 = story_with(text0, text0)
    again0, again1 = story_with(text0, text0)
    assert torch.equal(base1.latents, again1.latents)

    # Public API: a different shot-0 caption changes shot 0 and, through it, shot 1.
    diff0, diff1 = story_with(other, other)
    assert not torch.equal(diff0.latents, base0.latents)
    assert not torch.equal(diff1.latents, base1.latents)

    # Same shot-0 frames, only caption 0 swapped before shot 1: shot 1 still changes, so its
    # context frames (flag 0) cross-attend to caption 0 and not to shot 1's own caption.
    swap0, swap1 = story_with(text0, other)
    assert torch.equal(swap0.frames, base0.frames)
    assert not torch.equal(swap1.latents, base1.latents)


def test_shot_zero_uses_a_single_caption(engine, monkeypatch):
    stacked: list[torch.Tensor] = []
    real = engine.dit.encode_text

    def encode_text(text):
        stacked.append(text.clone())
        return real(text)

    monkeypatch.setattr(engine.dit, "encode_text", encode_text)
    text0, text1 = make_text(20), make_text(21)
    story = engine.open_story(CAPTION, seed=0)
    run_shot(story, "", 1, text_embedding=text0)
    run_shot(story, "", 1, text_embedding=text1)
    story.close()
    # shot 0: its own caption only, for its chunks and its context fill alike
    assert len(stacked) == 3 and stacked[0].shape[0] == 1 and torch.equal(stacked[0][0], text0)
    # shot 1: its own caption for its chunks, caption 0 for the context frames (all from shot 0)
    assert stacked[1].shape[0] == 1 and torch.equal(stacked[1][0], text1)
    assert stacked[2].shape[0] == 1 and torch.equal(stacked[2][0], text0)


def test_block_cross_attention_routes_rows_per_frame():
    torch.manual_seed(0)
    dit = CausalWanTransformer(CFG.dit).eval()
    for p in dit.parameters():  # default init leaves biases/modulations at zero; make everything matter
        p.data.normal_(0, 0.2)
    gen = torch.Generator().manual_seed(1)
    text = dit.encode_text(torch.randn(2, *TEXT_SHAPE, generator=gen))
    tpf = CFG.tokens_per_frame
    x = torch.randn(1, 3 * tpf, CFG.dit.dim, generator=gen)
    block = dit.blocks[1]
    dummy_rope = (torch.ones(1), torch.zeros(1))  # cross-attention does not use RoPE

    def cross(xs, rows):
        with torch.no_grad():
            return block.cross_attention(xs, FrameRun(rope=dummy_rope, write_start=0, caption_rows=rows),
                                         (text.k[1], text.v[1]))

    mixed = cross(x, (0, 0, 1))
    first = cross(x[:, : 2 * tpf], (0, 0))
    last = cross(x[:, 2 * tpf:], (1,))
    torch.testing.assert_close(mixed, torch.cat([first, last], dim=1), rtol=1e-5, atol=1e-6)
    # and the rows matter: frame 2 with caption 0 is something else
    all_zero = cross(x, (0, 0, 0))
    torch.testing.assert_close(all_zero[:, : 2 * tpf], mixed[:, : 2 * tpf], rtol=1e-5, atol=1e-6)
    assert (all_zero[:, 2 * tpf:] - mixed[:, 2 * tpf:]).abs().max() > 1e-3
    # a non-contiguous pattern (1, 0, 1) is routed per frame too
    alt = cross(x, (1, 0, 1))
    torch.testing.assert_close(alt[:, :tpf], cross(x[:, :tpf], (1,)), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(alt[:, tpf: 2 * tpf], cross(x[:, tpf: 2 * tpf], (0,)), rtol=1e-5, atol=1e-6)


def test_forward_rejects_caption_rows_of_wrong_length(engine):
    dit = engine.dit
    cache = SelfAttentionCache(CFG.dit.num_layers, CFG.tokens_per_frame * 9, CFG.dit.num_heads,
                               CFG.dit.head_dim, dit.dtype, "cpu")
    hp, wp = LH // 2, LW // 2
    run = FrameRun(rope=engine.rope.cos_sin(0, (0, 0, 0), hp, wp, engine.device), write_start=0, caption_rows=(0, 0))
    text = dit.encode_text(make_text(0)[None])
    with pytest.raises(ValueError, match="caption rows"):
        dit(torch.zeros(3, C, LH, LW), 0.0, run, cache, text)


# -- caller-supplied text embeddings and noise --------------------------------------------------


def test_supplied_noise_and_text_make_the_seed_irrelevant(engine):
    text, noise = make_text(30), make_noise(31, 2)

    def run(seed, noise):
        story = engine.open_story(CAPTION, seed=seed)
        info, chunks = run_shot(story, "ignored when text_embedding is given", 2, text_embedding=text, noise=noise)
        story.close()
        return info, chunks

    info_a, a = run(0, noise)
    _, b = run(12345, noise)
    assert info_a.prompt_tokens is None and info_a.truncated_tokens == 0
    assert torch.equal(frames_of(a), frames_of(b))
    assert torch.equal(latents_of(a), latents_of(b))
    _, c = run(0, make_noise(32, 2))  # the noise is really used
    assert not torch.equal(latents_of(a), latents_of(c))
    _, d = run(0, None)  # and seeded noise is something else
    assert not torch.equal(latents_of(a), latents_of(d))


def test_supplied_text_embedding_matches_encoded_prompt(engine):
    from engine_core.text import format_prompt

    prompt = "A detective steps out of a taxi."
    embedding = engine.text.encode([format_prompt(CAPTION, 0, prompt)])[0]
    s1, s2 = engine.open_story(CAPTION, seed=8), engine.open_story(CAPTION, seed=8)
    _, a = run_shot(s1, prompt, 1)
    _, b = run_shot(s2, "", 1, text_embedding=embedding)
    assert torch.equal(a[0].latents, b[0].latents)
    s1.close()
    s2.close()


@pytest.mark.parametrize("which", ["initial", "renoise"])
def test_wrong_noise_shape_is_rejected(engine, which):
    story = engine.open_story(CAPTION, seed=0)
    good = make_noise(0, 2)
    bad = ShotNoise(initial=good.initial[:-1], renoise=good.renoise) if which == "initial" else \
        ShotNoise(initial=good.initial, renoise=good.renoise[:, :1])
    with pytest.raises(ValueError) as exc:
        story.start_shot("x", 2, noise=bad)
    msg = str(exc.value)
    assert f"[{2 * N}, {C}, {LH}, {LW}]" in msg
    assert f"[2, {STEPS - 1}, {N}, {C}, {LH}, {LW}]" in msg
    # noise sized for 2 chunks does not fit a 1-chunk shot either
    with pytest.raises(ValueError, match=rf"\[{N}, {C}, {LH}, {LW}\]"):
        story.start_shot("x", 1, noise=good)
    assert story.captions == [] and not story.shot_in_progress
    story.close()


@pytest.mark.parametrize("shape", [(CFG.dit.text_len - 1, CFG.dit.text_dim), (1, *TEXT_SHAPE), (CFG.dit.text_dim,)])
def test_wrong_text_embedding_shape_is_rejected(engine, shape):
    story = engine.open_story(CAPTION, seed=0)
    with pytest.raises(ValueError, match=rf"\[{CFG.dit.text_len}, {CFG.dit.text_dim}\]"):
        story.start_shot("x", 1, text_embedding=torch.zeros(shape))
    assert story.captions == []
    story.close()


# -- validation and lifecycle ------------------------------------------------------------------


def test_step_before_start_shot(engine):
    story = engine.open_story(CAPTION)
    with pytest.raises(RuntimeError):
        story.step()
    story.close()


def test_bad_requests_do_not_disturb_the_current_shot(engine):
    ref = engine.open_story(CAPTION, seed=7)
    _, expected = run_shot(ref, "the real shot", 3)
    ref.close()

    story = engine.open_story(CAPTION, seed=7)
    story.start_shot("the real shot", 3)
    got = [story.step()]
    too_long = "x" * (CFG.stream.max_prompt_chars + 1)
    bad_calls = [
        dict(prompt="fine", num_chunks=0), dict(prompt="fine", num_chunks=8), dict(prompt="fine", num_chunks=2.5),
        dict(prompt="fine", num_chunks=True), dict(prompt="fine", num_chunks="3"),
        dict(prompt=""), dict(prompt="   \n\t "), dict(prompt=too_long), dict(prompt=None), dict(prompt=42),
        dict(prompt=b"bytes"),
    ]
    for i, kw in enumerate(bad_calls):
        with pytest.raises(ValueError):
            story.start_shot(kw["prompt"], kw.get("num_chunks", 1))
        assert story.shot_in_progress, kw
        assert len(story.captions) == 1 and story.shot_lengths == [], kw
        if i == 4:  # step once between the bad calls, too
            got.append(story.step())
    while story.shot_in_progress:
        got.append(story.step())
    assert [c.chunk_index for c in got] == [0, 1, 2]
    assert all(c.shot_index == 0 for c in got)
    assert torch.equal(frames_of(got), frames_of(expected))
    info = story.start_shot("after the errors", 1)
    assert info.shot_index == 1
    story.close()


def test_error_messages_say_what_is_wrong(engine):
    story = engine.open_story(CAPTION)
    with pytest.raises(ValueError, match="1..7"):
        story.start_shot("x", 0)
    with pytest.raises(ValueError, match="empty"):
        story.start_shot("  ")
    with pytest.raises(ValueError, match="str"):
        story.start_shot(3)
    with pytest.raises(ValueError, match="max_prompt_chars"):
        story.start_shot("y" * (CFG.stream.max_prompt_chars + 1))
    story.close()


def test_long_prompt_is_truncated_not_rejected(engine):
    story = engine.open_story(CAPTION)
    info = story.start_shot("a very long shot description " * 20, 1)
    assert info.prompt_tokens == CFG.dit.text_len
    assert info.truncated_tokens > 0
    story.close()


def test_global_caption_must_be_a_string(engine):
    for bad in (None, 5, b"bytes", ["a"]):
        with pytest.raises(TypeError):
            engine.open_story(bad)


def test_close_frees_and_forbids_further_use(engine):
    story = engine.open_story(CAPTION, seed=0)
    run_shot(story, "zero", 1)
    story.start_shot("one", 2)
    story.step()
    assert story.cache.nbytes > 0
    story.close()
    assert story.closed
    assert not hasattr(story, "cache")
    assert story._history_latents == {} and story._kept_frames == {} and story.captions == []
    assert not story.shot_in_progress
    with pytest.raises(RuntimeError, match="closed"):
        story.step()
    with pytest.raises(RuntimeError, match="closed"):
        story.start_shot("more", 1)
    story.close()  # closing twice is harmless
    assert story.closed


def test_a_failed_shot_start_leaves_the_story_consistent(engine, monkeypatch):
    """An engine failure inside start_shot (e.g. GPU out of memory) must not misalign captions and shots."""
    story = engine.open_story("A harbour at dawn.", seed=3)
    story.start_shot("Boats leave the harbour.", 1)
    story.step()

    def boom(frames):
        raise RuntimeError("CUDA out of memory (simulated)")

    with monkeypatch.context() as m:
        m.setattr(engine.vae, "encode_frames", boom)
        with pytest.raises(RuntimeError, match="out of memory"):
            story.start_shot("A storm gathers.", 1)
    assert len(story.captions) == len(story.shot_lengths) == 1
    info = story.start_shot("A storm gathers.", 1)
    assert info.shot_index == 1 and len(story.captions) == 2
    assert story.step().shot_index == 1
    story.close()
