"""Self-checks of the naive reference implementation (tests/reference_impl.py) on its own.

The key test proves that the reference's two transformer paths agree: the cached streaming path of
``naive_story`` (context cache + local cache, keys built by concatenation) and one full-sequence
``naive_dit_forward`` with a block-causal frame mask, for every denoising step of every chunk.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import reference_impl as ref
from engine_core.config import TINY, WAN_1_3B



DIT = TINY.dit
N_CTX = TINY.stream.context_frames
CHUNK = TINY.stream.frames_per_chunk
LH, LW = TINY.latent_height, TINY.latent_width
H, W = TINY.stream.height, TINY.stream.width


# ---------------------------------------------------------------------------------------------
# Scheduler and history selection
# ---------------------------------------------------------------------------------------------

def test_warped_timesteps_match_the_spec():
    t, sigma = ref.warped_timesteps(8.0, (1000, 740, 500, 260), 1000)
    assert t.dtype == torch.float32 and t.shape == (4,)
    assert torch.allclose(t, torch.tensor([1000.0, 957.929, 888.889, 737.589]), atol=1e-3)
    assert torch.allclose(sigma, torch.tensor([1.0, 0.95793, 0.88889, 0.73759]), atol=1e-5)
    assert torch.allclose(sigma * 1000, t)
    for ti, si in zip(t, sigma):  # the nearest-timestep lookup returns the same sigma
        assert ref.sigma_at(ti) == si
    sigmas, timesteps = ref.scheduler_tables()
    assert sigmas.shape == timesteps.shape == (1000,) and sigmas[0] == 1.0


# (counts per previous shot, frames per shot) for 81-frame shots, from the table in spec section 2.1.
_TABLE = {
    1: [[0, 16, 32, 48, 64, 80]],
    2: [[0, 40, 80], [0, 40, 80]],
    3: [[0, 80], [0, 80], [0, 80]],
    4: [[0], [0], [0, 80], [0, 80]],
    5: [[0], [0], [0], [0], [0, 80]],
    6: [[0]] * 6,
    7: [[]] + [[0]] * 6,
    8: [[], []] + [[0]] * 6,
}


@pytest.mark.parametrize("k", sorted(_TABLE))
def test_history_plan_reproduces_the_spec_table(k):
    picks, flags = ref.history_plan([81] * k)
    expected = [(shot, frame) for shot, frames in enumerate(_TABLE[k]) for frame in frames]
    assert picks == expected
    assert flags == [shot for shot, _ in expected]
    assert len(flags) == 6


def test_history_plan_first_shot_and_cut_shots():
    assert ref.history_plan([]) == ([], [0] * 6)
    # A cut shot (one chunk -> 9 frames) is sampled over its own frames.
    picks, flags = ref.history_plan([81, 9])
    assert picks == [(0, 0), (0, 40), (0, 80), (1, 0), (1, 4), (1, 8)] and flags == [0, 0, 0, 1, 1, 1]
    picks, _ = ref.history_plan([9])
    assert picks == [(0, 0), (0, 2), (0, 3), (0, 5), (0, 6), (0, 8)]  # round(linspace(0, 8, 6))


def test_block_causal_mask():
    m = ref.block_causal_mask(2, 1, 2)
    assert m.tolist() == [[True, True, False, False],
                          [True, True, False, False],
                          [True, True, True, False],
                          [True, True, True, True]]


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------

def test_full_model_shapes_count():
    shapes = ref.state_dict_shapes(WAN_1_3B.dit)
    assert len(shapes) == 825
    assert sum(math.prod(s) for s in shapes.values()) == 1_418_996_800


def test_rope_split_and_explicit_rotation():
    assert ref.rope_axis_dims(128) == (44, 42, 42)
    assert ref.rope_axis_dims(DIT.head_dim) == (8, 8, 8)
    d = DIT.head_dim
    gen = torch.Generator().manual_seed(1)
    positions, flags, gh, gw = [7, 9], [2, 3], 2, 3
    angles = ref.rope_angles(d, positions, flags, gh, gw)
    x = torch.randn(len(positions) * gh * gw, DIT.num_heads, d, generator=gen, dtype=torch.float64)
    y = ref.apply_rope(x, angles)

    # Token (frame 1, row 1, col 2): rotate each adjacent pair by its angle, written out by hand.
    token, (pos, flag, row, col) = 1 * gh * gw + 1 * gw + 2, (9, 3, 1, 2)
    dt, dh, dw = ref.rope_axis_dims(d)
    expected_angles = (
        [pos * 10000 ** (-2 * j / dt) + flag / 6 for j in range(dt // 2)]
        + [row * 10000 ** (-2 * j / dh) for j in range(dh // 2)]
        + [col * 10000 ** (-2 * j / dw) for j in range(dw // 2)]
    )
    for j, a in enumerate(expected_angles):
        x0, x1 = x[token, :, 2 * j], x[token, :, 2 * j + 1]
        assert torch.allclose(y[token, :, 2 * j], x0 * math.cos(a) - x1 * math.sin(a), atol=1e-12)
        assert torch.allclose(y[token, :, 2 * j + 1], x0 * math.sin(a) + x1 * math.cos(a), atol=1e-12)


def test_rope_scores_depend_only_on_relative_position_and_flag():
    d = DIT.head_dim
    gen = torch.Generator().manual_seed(2)
    q = torch.randn(2 * 6, 1, d, generator=gen, dtype=torch.float64)
    k = torch.randn(2 * 6, 1, d, generator=gen, dtype=torch.float64)

    def scores(positions, flags):
        a = ref.rope_angles(d, positions, flags, 2, 3)
        return torch.einsum("qhd,khd->qk", ref.apply_rope(q, a), ref.apply_rope(k, a))

    base = scores([3, 5], [0, 1])
    assert torch.allclose(base, scores([10, 12], [4, 5]), atol=1e-10)  # shift positions and flags together
    assert not torch.allclose(base, scores([3, 5], [0, 2]), atol=1e-3)  # the flag gap is visible


def test_patch_embedding_equals_conv3d():
    sd = ref.random_state_dict(DIT, seed=3, dtype=torch.float64)
    latents = torch.randn(5, DIT.in_dim, LH, LW, dtype=torch.float64)
    tokens, gh, gw = ref.patch_embed(sd, DIT, latents)
    conv = F.conv3d(latents.permute(1, 0, 2, 3)[None], sd["patch_embedding.weight"],
                    sd["patch_embedding.bias"], stride=DIT.patch_size)  # [1, dim, F, gh, gw]
    assert (gh, gw) == (LH // 2, LW // 2)
    assert torch.allclose(tokens, conv[0].flatten(2).permute(1, 2, 0), atol=1e-12)


def test_sinusoid_and_gelu():
    t = torch.tensor([0.0, 1000.0])
    s = ref.sinusoidal_embedding(8, t)
    assert s.dtype == torch.float64 and torch.equal(s[0], torch.tensor([1.0] * 4 + [0.0] * 4, dtype=torch.float64))
    x = torch.linspace(-4, 4, 101, dtype=torch.float64)
    assert torch.allclose(ref._gelu_tanh(x), F.gelu(x, approximate="tanh"), atol=1e-12)
    assert torch.allclose(ref._layer_norm(x[None], 1e-6), F.layer_norm(x[None], (101,), eps=1e-6), atol=1e-12)


# ---------------------------------------------------------------------------------------------
# The two inference paths agree
# ---------------------------------------------------------------------------------------------

def _codec(dtype):
    """Deterministic stand-ins for the VAE: pixels [3, H, W] <-> latents [C, h, w] by fixed linear maps."""
    gen = torch.Generator().manual_seed(11)
    enc = torch.randn(DIT.in_dim, 3, generator=gen, dtype=torch.float64).to(dtype)
    dec = torch.randn(3, DIT.in_dim, generator=gen, dtype=torch.float64).to(dtype) * 0.5

    def encode_frame(frame):
        assert frame.shape == (3, H, W)
        pooled = F.avg_pool2d(frame[None], 8)[0]  # [3, h, w]
        return torch.einsum("cd,dhw->chw", enc, pooled)

    def decode_shot(latents):
        pixels = torch.tanh(torch.einsum("dc,fchw->fdhw", dec, latents))
        pixels = pixels.repeat_interleave(8, dim=2).repeat_interleave(8, dim=3)
        repeats = torch.tensor([1] + [4] * (latents.shape[0] - 1))  # 1 + 4*(F-1) frames, like the VAE
        return pixels.repeat_interleave(repeats, dim=0)

    return encode_frame, decode_shot


def _story_inputs(chunks_per_shot, dtype, seed=5):
    gen = torch.Generator().manual_seed(seed)
    steps = len(TINY.stream.denoising_steps)
    prompts = [torch.randn(DIT.text_len - 7, DIT.text_dim, generator=gen, dtype=torch.float64).to(dtype)
               for _ in chunks_per_shot]
    noises = [{
        "initial": torch.randn(CHUNK * n, DIT.in_dim, LH, LW, generator=gen, dtype=torch.float64).to(dtype),
        "renoise": torch.randn(n, steps - 1, CHUNK, DIT.in_dim, LH, LW, generator=gen,
                               dtype=torch.float64).to(dtype),
    } for n in chunks_per_shot]
    return prompts, noises


CHUNKS = [7, 2, 3]
PARITY_ATOL = {torch.float32: 3e-6, torch.float64: 1e-12}  # observed worst: ~3e-7 and ~5e-16  # a full shot, a cut shot, then a shot whose history mixes both


@pytest.fixture(scope="module", params=[torch.float32, torch.float64], ids=["fp32", "fp64"])
def story(request):
    dtype = request.param
    sd = ref.random_state_dict(DIT, seed=0, dtype=dtype)
    prompts, noises = _story_inputs(CHUNKS, dtype)
    encode_frame, decode_shot = _codec(dtype)
    shots = ref.naive_story(sd, TINY, prompts, noises, CHUNKS, encode_frame, decode_shot)
    return dtype, sd, prompts, noises, shots


def _masked_x0(sd, shot, k, b, step, **overrides):
    """x0 of chunk b at one denoising step, from one masked full-sequence forward."""
    n_prev = N_CTX + CHUNK * b
    flags = shot["context_flags"] + [shot["gen_flag"]] * (CHUNK * b + CHUNK)
    args = dict(
        latents=torch.cat([shot["context_latents"], shot["latents"][:CHUNK * b], step["x_t"]]),
        timesteps=[0.0] * n_prev + [step["t"]] * CHUNK,
        positions=list(range(n_prev + CHUNK)),
        flags=flags,
        text=shot["text"],
        caption_of_frame=flags if k > 0 else None,
        attn_mask=ref.block_causal_mask(N_CTX, CHUNK, b + 1),
    )
    args.update(overrides)
    flow = ref.naive_dit_forward(sd, DIT, **args)
    return ref.flow_to_x0(step["x_t"], flow[-CHUNK:], step["t"])


def test_story_bookkeeping(story):
    dtype, _, prompts, noises, shots = story
    assert [s["context_flags"] for s in shots] == [[0] * 6, [0] * 6, [0, 0, 0, 1, 1, 1]]
    assert [s["gen_flag"] for s in shots] == [1, 1, 2]  # shot 0 generates with flag 1 (spec section 3)
    assert shots[2]["history"] == [(0, 0), (0, 40), (0, 80), (1, 0), (1, 10), (1, 20)]
    assert torch.equal(shots[0]["context_latents"], torch.zeros(6, DIT.in_dim, LH, LW, dtype=dtype))
    t_steps, _ = ref.warped_timesteps()
    for k, (shot, n) in enumerate(zip(shots, CHUNKS)):
        assert shot["latents"].shape == (CHUNK * n, DIT.in_dim, LH, LW) and shot["latents"].dtype == dtype
        assert shot["frames"].shape == (1 + 4 * (CHUNK * n - 1), 3, H, W)
        assert shot["frames"].abs().max() <= 1
        assert shot["text"].shape[0] == k + 1
        for b, steps in enumerate(shot["chunk_steps"]):
            assert [s["t"] for s in steps] == [float(t) for t in t_steps]
            assert torch.equal(steps[0]["x_t"], noises[k]["initial"][CHUNK * b:CHUNK * (b + 1)])
            assert torch.equal(steps[-1]["x0"], shot["latents"][CHUNK * b:CHUNK * (b + 1)])
            for i in range(len(steps) - 1):
                assert torch.equal(steps[i + 1]["x_t"],
                                   ref.renoise(steps[i]["x0"], noises[k]["renoise"][b, i], steps[i + 1]["t"]))
        assert torch.isfinite(shot["latents"]).all()


def test_cache_path_equals_masked_full_sequence(story):
    """Every step of every chunk of every shot: cached x0 == block-causal masked forward x0."""
    dtype, sd, _, _, shots = story
    atol = PARITY_ATOL[dtype]
    worst = 0.0
    for k, shot in enumerate(shots):
        for b, steps in enumerate(shot["chunk_steps"]):
            for step in steps:
                masked = _masked_x0(sd, shot, k, b, step)
                worst = max(worst, (masked - step["x0"]).abs().max().item())
    assert worst < atol, worst


def test_parity_check_has_teeth(story):
    """Perturbing any ingredient of the masked forward moves x0 far beyond the parity tolerance."""
    dtype, sd, _, _, shots = story
    k, b = 2, 2
    shot = shots[k]
    step = shot["chunk_steps"][b][-1]
    good = _masked_x0(sd, shot, k, b, step)
    assert (good - step["x0"]).abs().max() < PARITY_ATOL[dtype]
    n_frames = N_CTX + CHUNK * (b + 1)
    wrong_flags = shot["context_flags"] + [shot["gen_flag"] + 1] * (CHUNK * (b + 1))
    variants = {
        "rope flag of generated frames": dict(flags=wrong_flags, caption_of_frame=shot["context_flags"]
                                              + [shot["gen_flag"]] * (CHUNK * (b + 1))),
        "caption routing": dict(caption_of_frame=None),
        "no causal mask": dict(attn_mask=None),
        "a one-frame gap after the context": dict(positions=list(range(N_CTX)) + list(range(N_CTX + 1, n_frames + 1))),
        "earlier chunks at their noisy timestep": dict(
            timesteps=[0.0] * N_CTX + [step["t"]] * (CHUNK * (b + 1))),
    }
    for name, override in variants.items():
        diff = (_masked_x0(sd, shot, k, b, step, **override) - good).abs().max().item()
        assert diff > 100 * PARITY_ATOL[torch.float32], f"{name}: x0 moved only {diff}"
    # ...while shifting every position (or every flag) by the same amount changes nothing: RoPE is relative.
    shifted = _masked_x0(sd, shot, k, b, step, positions=list(range(5, n_frames + 5)))
    assert (shifted - good).abs().max() < PARITY_ATOL[dtype]
