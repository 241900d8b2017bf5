"""WanVAE: streaming decode must equal the whole-shot decode bit for bit, also when stories interleave.

These tests pin the private diffusers calling convention ``decoder(x, feat_cache=, feat_idx=,
first_chunk=)`` that :mod:`engine_core.vae` relies on.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from engine_core.config import TINY
from engine_core.vae import WanVAE, build_vae

Z = TINY.vae.z_dim
LH, LW = TINY.latent_height, TINY.latent_width
H, W = TINY.stream.height, TINY.stream.width
CHUNK = TINY.stream.frames_per_chunk
SHOT = TINY.max_latent_frames  # 21


@pytest.fixture(scope="module")
def wan() -> WanVAE:
    torch.manual_seed(0)
    return WanVAE(build_vae(TINY.vae))


def _latents(seed: int, frames: int = SHOT) -> torch.Tensor:
    return torch.randn(frames, Z, LH, LW, generator=torch.Generator().manual_seed(seed))


def _stats(wan: WanVAE) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and the reference's ``scale[1] = 1 / std`` (utils/wan_wrapper.py), in the VAE dtype."""
    return wan.mean.view(1, Z, 1, 1).to(wan.dtype), 1.0 / wan.std.view(1, Z, 1, 1).to(wan.dtype)


def _diffusers_decode(wan: WanVAE, latents: torch.Tensor) -> torch.Tensor:
    """The stock diffusers decode of de-normalised latents, as ``[T,3,H,W]``."""
    mean, inv_std = _stats(wan)
    raw = (latents / inv_std + mean).permute(1, 0, 2, 3).unsqueeze(0)
    with torch.no_grad():
        return wan.vae.decode(raw).sample[0].permute(1, 0, 2, 3)


def test_build_vae_uses_config_and_published_defaults() -> None:
    torch.manual_seed(0)
    wan = WanVAE(build_vae(TINY.vae))
    assert wan.mean.tolist() == pytest.approx(list(TINY.vae.latents_mean))
    assert wan.std.tolist() == pytest.approx(list(TINY.vae.latents_std))
    assert not wan.vae.training and not any(p.requires_grad for p in wan.vae.parameters())
    assert wan.device == torch.device("cpu") and wan.dtype == torch.float32

    default_stats = dataclasses.replace(TINY.vae, z_dim=16, latents_mean=None, latents_std=None)
    published = WanVAE(build_vae(default_stats))
    assert published.mean[:2].tolist() == pytest.approx([-0.7571, -0.7089])
    assert published.std[:2].tolist() == pytest.approx([2.8184, 1.4541])


def test_build_vae_rejects_inconsistent_config() -> None:
    with pytest.raises(ValueError, match="spatial_stride"):
        build_vae(dataclasses.replace(TINY.vae, spatial_stride=16))
    with pytest.raises(ValueError, match="latents_mean has 3 values but z_dim is 4"):
        build_vae(dataclasses.replace(TINY.vae, latents_mean=(0.0, 0.0, 0.0)))


def test_streaming_decode_equals_whole_shot(wan: WanVAE) -> None:
    latents = _latents(1)
    whole = wan.decode(latents)
    assert whole.shape == (1 + 4 * (SHOT - 1), 3, H, W)
    assert whole.dtype == torch.float32 and whole.min() >= -1 and whole.max() <= 1

    stream = wan.stream_decoder()
    chunks = [stream.decode_chunk(latents[i : i + CHUNK]) for i in range(0, SHOT, CHUNK)]
    assert [c.shape[0] for c in chunks] == [9, 12, 12, 12, 12, 12, 12]
    assert stream.frames_decoded == 81 and stream.latents_decoded == SHOT
    streamed = torch.cat(chunks)
    assert (streamed - whole).abs().max().item() == 0.0
    assert torch.equal(streamed, whole)


def test_streaming_decode_exact_in_bfloat16() -> None:
    """The reference runs the VAE in bf16; chunked decode must stay exact there too."""
    torch.manual_seed(0)
    wan = WanVAE(build_vae(TINY.vae).to(torch.bfloat16))
    latents = _latents(12, frames=3 * CHUNK)
    stream = wan.stream_decoder()
    streamed = torch.cat([stream.decode_chunk(latents[i : i + CHUNK]) for i in range(0, latents.shape[0], CHUNK)])
    whole = wan.decode(latents)
    assert whole.dtype == torch.bfloat16
    assert torch.equal(streamed, whole)


def test_decode_matches_diffusers_on_denormalised_latents(wan: WanVAE) -> None:
    """decode() de-normalises with z*std+mean and is otherwise diffusers' whole-video decode."""
    latents = _latents(2, frames=4)
    assert torch.equal(wan.decode(latents), _diffusers_decode(wan, latents))


def test_interleaved_stories_do_not_share_cache(wan: WanVAE) -> None:
    a, b = _latents(3), _latents(4)
    whole_a, whole_b = wan.decode(a), wan.decode(b)
    dec_a, dec_b = wan.stream_decoder(), wan.stream_decoder()
    out_a, out_b = [], []
    for i in range(0, SHOT, CHUNK):
        out_a.append(dec_a.decode_chunk(a[i : i + CHUNK]))
        # Other users of the same module in between: a whole decode and diffusers' own (shared-cache) decode.
        wan.decode(_latents(5, frames=2))
        _diffusers_decode(wan, _latents(6, frames=2))
        out_b.append(dec_b.decode_chunk(b[i : i + CHUNK]))
    assert torch.equal(torch.cat(out_a), whole_a)
    assert torch.equal(torch.cat(out_b), whole_b)


def test_decode_casts_inputs_to_vae_dtype(wan: WanVAE) -> None:
    latents = _latents(7, frames=2)
    out = wan.decode(latents.double())
    assert out.dtype == wan.dtype
    assert torch.equal(out, wan.decode(latents))


def _frames(seed: int, n: int) -> torch.Tensor:
    return torch.rand(n, 3, H, W, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_encode_frames_is_per_frame_normalised_posterior_mean(wan: WanVAE) -> None:
    frames = _frames(8, 5)
    z = wan.encode_frames(frames)
    assert z.shape == (5, Z, LH, LW) and z.dtype == wan.dtype

    separate = torch.cat([wan.encode_frames(frames[i : i + 1]) for i in range(5)])
    assert torch.equal(z, separate)

    mean, inv_std = _stats(wan)
    with torch.no_grad():
        by_hand = []
        for i in range(5):
            mu = wan.vae.encode(frames[i : i + 1].unsqueeze(2)).latent_dist.mode()[:, :, 0]
            by_hand.append((mu - mean) * inv_std)
    assert torch.equal(z, torch.cat(by_hand))


def test_encode_frames_does_not_depend_on_batch_companions(wan: WanVAE) -> None:
    frames = _frames(9, 3)
    others = _frames(10, 3)
    assert torch.equal(wan.encode_frames(frames)[1], wan.encode_frames(torch.stack([others[0], frames[1]]))[1])


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((Z, LH, LW), r"expects latents \[F,4,h,w\], got shape \(4, 4, 6\)"),
        ((2, Z + 1, LH, LW), "expects 4 latent channels, got 5"),
        ((0, Z, LH, LW), "at least one latent frame"),
    ],
)
def test_decode_shape_errors(wan: WanVAE, shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        wan.decode(torch.zeros(shape))


def test_stream_decoder_rejects_resolution_change(wan: WanVAE) -> None:
    stream = wan.stream_decoder()
    stream.decode_chunk(_latents(11, frames=CHUNK))
    with pytest.raises(ValueError, match="latent size 4x4 differs from this shot's earlier chunks \\(4x6\\)"):
        stream.decode_chunk(torch.zeros(CHUNK, Z, LH, LH))


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (torch.zeros(3, H, W), r"expects frames \[N,3,H,W\]"),
        (torch.zeros(2, 4, H, W), "expects 3 colour channels, got 4"),
        (torch.zeros(2, 3, H + 4, W), "positive multiples of 8"),
        (torch.zeros(0, 3, H, W), "N >= 1"),
        (torch.zeros(2, 3, H, W, dtype=torch.uint8), "float pixels in \\[-1,1\\].*127.5"),
    ],
)
def test_encode_frames_errors(wan: WanVAE, frames: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        wan.encode_frames(frames)
