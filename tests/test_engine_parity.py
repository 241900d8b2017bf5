"""Parity of the optimised engine with the naive reference algorithm (tests/reference_impl.py).

Same tiny random weights, same text embeddings, same noise: the engine's in-place dual cache,
lazy clean passes, streaming decode and history-latent reuse must give the latents and frames
the reference's concatenate-and-clone algorithm gives, shot after shot.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

import reference_impl as ref
from engine_core.config import TINY
from engine_core.engine import ShotStreamEngine
from engine_core.kv_cache import SelfAttentionCache
from engine_core.rope import RotaryEmbedding
from engine_core.story import ShotNoise, to_uint8
from engine_core.transformer import CausalWanTransformer, FrameRun
from engine_core.vae import WanVAE, build_vae

CFG = TINY
C, LH, LW = CFG.dit.in_dim, CFG.latent_height, CFG.latent_width
N_CTX, CHUNK, STEPS = CFG.stream.context_frames, CFG.stream.frames_per_chunk, len(CFG.stream.denoising_steps)
ATOL = 2e-5  # float32 round-off through 4 steps; wrong maths moves x0 by >1e-3 (see the sensitivity test)


@pytest.fixture(scope="module")
def state():
    return ref.random_state_dict(CFG.dit, seed=0)


def _dit(state) -> CausalWanTransformer:
    dit = CausalWanTransformer(CFG.dit)
    dit.load_state_dict(state, strict=True)
    return dit.eval()


@pytest.fixture(scope="module")
def engine(state):
    torch.manual_seed(1)
    vae = WanVAE(build_vae(CFG.vae))
    return ShotStreamEngine(CFG, _dit(state), vae, text=None, weights_label="parity")


def _noise(gen: torch.Generator, chunks: int) -> ShotNoise:
    return ShotNoise(initial=torch.randn(CHUNK * chunks, C, LH, LW, generator=gen),
                     renoise=torch.randn(chunks, STEPS - 1, CHUNK, C, LH, LW, generator=gen))


def _run_both(engine, state, planned: list[int], produced: list[int], seed: int = 0):
    """Engine: shot k is started with ``planned[k]`` chunks and cut after ``produced[k]``."""
    gen = torch.Generator().manual_seed(seed)
    texts = [torch.randn(CFG.dit.text_len, CFG.dit.text_dim, generator=gen) for _ in planned]
    noises = [_noise(gen, n) for n in planned]

    story = engine.open_story("parity", seed=123)
    ours = []
    for text, noise, n_plan, n_made in zip(texts, noises, planned, produced):
        info = story.start_shot("", n_plan, text_embedding=text, noise=noise)
        chunks = [story.step() for _ in range(n_made)]
        ours.append({"info": info, "latents": torch.cat([c.latents for c in chunks]),
                     "frames": torch.cat([c.frames for c in chunks])})
    story.close()

    vae = engine.vae
    theirs = ref.naive_story(state, CFG, texts, [{"initial": n.initial, "renoise": n.renoise} for n in noises],
                             produced, encode_frame=lambda f: vae.encode_frames(f[None])[0], decode_shot=vae.decode)
    return ours, theirs


def _assert_shots_match(ours, theirs):
    assert len(ours) == len(theirs)
    for k, (o, t) in enumerate(zip(ours, theirs)):
        assert list(o["info"].context_flags) == list(t["context_flags"]), f"shot {k} context flags"
        assert o["info"].shot_flag == t["gen_flag"], f"shot {k} generated-frame flag"
        assert [list(p) for p in o["info"].context_frames] == [list(p) for p in t["history"]], f"shot {k} history"
        torch.testing.assert_close(o["latents"], t["latents"], rtol=0, atol=ATOL, msg=f"shot {k} latents")
        expected = to_uint8(t["frames"])
        assert o["frames"].shape == expected.shape
        diff = (o["frames"].int() - expected.int()).abs()
        # uint8 truncation can flip a level where float round-off straddles a boundary
        assert diff.max() <= 1 and (diff > 0).float().mean() < 1e-3, f"shot {k} frames"


def test_three_shot_story_with_a_cut_matches_reference(engine, state):
    ours, theirs = _run_both(engine, state, planned=[7, 7, 3], produced=[7, 2, 3])
    _assert_shots_match(ours, theirs)
    assert [len(t["frames"]) for t in theirs] == [81, 21, 33]


def test_story_longer_than_seven_shots_matches_reference(engine, state):
    ours, theirs = _run_both(engine, state, planned=[1] * 9, produced=[1] * 9, seed=5)
    _assert_shots_match(ours, theirs)
    assert list(ours[8]["info"].context_flags) == [2, 3, 4, 5, 6, 7]


def _chunked_clean_outputs(dit: CausalWanTransformer, rope: RotaryEmbedding, ctx_flags, gen_flag, latents, text,
                           routes):
    """Context fill then chunk-by-chunk t=0 forwards through the engine's in-place cache."""
    hp, wp = LH // 2, LW // 2
    tpf = hp * wp
    cache = SelfAttentionCache(CFG.dit.num_layers, tpf * (N_CTX + len(latents) - N_CTX), CFG.dit.num_heads,
                               CFG.dit.head_dim, torch.float32, "cpu")
    text_cache = dit.encode_text(text)
    outs = [dit(latents[:N_CTX], 0.0, FrameRun(rope.cos_sin(0, ctx_flags, hp, wp, torch.device("cpu")), 0,
                                               tuple(routes[f] for f in ctx_flags)), cache, text_cache)]
    for start in range(N_CTX, len(latents), CHUNK):
        run = FrameRun(rope.cos_sin(start, (gen_flag,) * CHUNK, hp, wp, torch.device("cpu")), start * tpf,
                       (routes[gen_flag],) * CHUNK)
        outs.append(dit(latents[start:start + CHUNK], 0.0, run, cache, text_cache))
    return torch.cat(outs)


@pytest.mark.parametrize("shot_phase", [1 / 6, 0.0])
def test_chunked_cached_forward_equals_full_sequence_block_causal_forward(state, shot_phase):
    """The in-place cache path equals one masked full-sequence forward (reference maths)."""
    dit = _dit(state)
    gen = torch.Generator().manual_seed(3)
    frames = N_CTX + 3 * CHUNK
    latents = torch.randn(frames, C, LH, LW, generator=gen)
    text = torch.randn(3, CFG.dit.text_len, CFG.dit.text_dim, generator=gen)
    ctx_flags, gen_flag = (0, 0, 0, 1, 1, 1), 2
    routes = {0: 0, 1: 1, 2: 2}
    ours = _chunked_clean_outputs(dit, RotaryEmbedding(CFG.dit.head_dim, shot_phase), ctx_flags, gen_flag,
                                  latents, text, routes)
    flags = list(ctx_flags) + [gen_flag] * (frames - N_CTX)
    full = ref.naive_dit_forward(state, CFG.dit, latents, [0.0] * frames, list(range(frames)), flags, text,
                                 caption_of_frame=flags, attn_mask=ref.block_causal_mask(N_CTX, CHUNK, 3))
    if shot_phase:
        torch.testing.assert_close(ours, full, rtol=0, atol=ATOL)
    else:  # sensitivity: dropping the RoPE shot phase is caught by a wide margin
        assert (ours - full).abs().max() > 100 * ATOL


def test_cache_only_pass_writes_the_same_cache_as_a_full_pass(state):
    dit = _dit(state)
    rope = RotaryEmbedding(CFG.dit.head_dim, CFG.stream.rope_shot_phase)
    hp, wp = LH // 2, LW // 2
    latents = torch.randn(N_CTX, C, LH, LW)
    text = dit.encode_text(torch.randn(1, CFG.dit.text_len, CFG.dit.text_dim))
    run = FrameRun(rope.cos_sin(0, (0,) * N_CTX, hp, wp, torch.device("cpu")), 0, (0,) * N_CTX)
    caches = [SelfAttentionCache(CFG.dit.num_layers, N_CTX * hp * wp, CFG.dit.num_heads, CFG.dit.head_dim,
                                 torch.float32, "cpu") for _ in range(2)]
    assert dit(latents, 0.0, run, caches[0], text, need_output=False) is None
    assert dit(latents, 0.0, run, caches[1], text) is not None
    assert torch.equal(caches[0].k, caches[1].k) and torch.equal(caches[0].v, caches[1].v)
    assert caches[0].k.abs().sum() > 0


def test_engine_config_phase_is_used(engine, state):
    """The engine builds its RoPE from the config; a zero phase changes later shots' latents."""
    base, _ = _run_both(engine, state, planned=[1, 1], produced=[1, 1], seed=9)
    cfg0 = dataclasses.replace(CFG, stream=dataclasses.replace(CFG.stream, rope_shot_phase=0.0))
    other = ShotStreamEngine(cfg0, engine.dit, engine.vae, None, "phase 0")
    changed, _ = _run_both(other, state, planned=[1, 1], produced=[1, 1], seed=9)
    assert (base[1]["latents"] - changed[1]["latents"]).abs().max() > 20 * ATOL
