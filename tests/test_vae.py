"""WanVAE: streaming decode must equal the whole-shot decode bit for bit, also when stories interleave.

These tests pin the private diffusers calling convention ``decoder(x, feat_cache=, feat_idx=,
first_chunk=)`` that :mod:`engine_core.vae` relies on.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from engine_core.config import TINY
from engine_core.vae import WanVAE, build_vae, tune_for_cuda

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


def test_post_quant_conv_is_per_frame_exact(wan: WanVAE) -> None:
    """decode_latent applies post_quant_conv one latent frame at a time; that equals the whole-shot call."""
    x = _latents(13, frames=6).permute(1, 0, 2, 3).unsqueeze(0)  # [1,z,F,h,w]
    assert wan.vae.post_quant_conv.kernel_size == (1, 1, 1)
    with torch.no_grad():
        whole = wan.vae.post_quant_conv(x)
        per_frame = torch.cat([wan.vae.post_quant_conv(x[:, :, i : i + 1]) for i in range(6)], dim=2)
    assert torch.equal(whole, per_frame)


def test_decode_latent_concatenates_to_chunks_and_whole_shot(wan: WanVAE) -> None:
    latents = _latents(14, frames=3 * CHUNK)
    whole = wan.decode(latents)
    by_latent, by_chunk = wan.stream_decoder(), wan.stream_decoder()
    # Both accepted forms: [z,h,w] and [1,z,h,w].
    pieces = [by_latent.decode_latent(latents[i] if i % 2 else latents[i : i + 1]) for i in range(3 * CHUNK)]
    assert [p.shape for p in pieces] == [(1, 3, H, W)] + [(4, 3, H, W)] * (3 * CHUNK - 1)
    assert by_latent.latents_decoded == 3 * CHUNK and by_latent.frames_decoded == 1 + 4 * (3 * CHUNK - 1)
    chunks = [by_chunk.decode_chunk(latents[i : i + CHUNK]) for i in range(0, 3 * CHUNK, CHUNK)]
    assert torch.equal(torch.cat(pieces), torch.cat(chunks))
    assert torch.equal(torch.cat(pieces), whole)


def test_decode_latent_rejects_several_frames(wan: WanVAE) -> None:
    stream = wan.stream_decoder()
    with pytest.raises(ValueError, match=r"one latent frame \[4,h,w\] or \[1,4,h,w\], got shape \(2, 4, 4, 6\)"):
        stream.decode_latent(_latents(15, frames=2))
    with pytest.raises(ValueError, match="expects 4 latent channels, got 5"):
        stream.decode_latent(torch.zeros(Z + 1, LH, LW))
    assert stream.latents_decoded == 0  # nothing was decoded


def test_tune_for_cuda_leaves_a_cpu_vae_alone() -> None:
    torch.manual_seed(0)
    wan = WanVAE(build_vae(TINY.vae))
    latents = _latents(16, frames=2)
    before = wan.decode(latents)
    benchmark = torch.backends.cudnn.benchmark
    assert tune_for_cuda(wan) is False
    assert torch.backends.cudnn.benchmark == benchmark and not wan.channels_last
    assert wan.vae.decoder.conv_in.weight.is_contiguous()
    assert torch.equal(wan.decode(latents), before)


def test_channels_last_3d_keeps_results_and_streaming_exactness() -> None:
    """The CUDA layout, applied on CPU: same pixels within fp32 noise, and chunked == whole still exact."""
    torch.manual_seed(0)
    wan = WanVAE(build_vae(TINY.vae))
    latents = _latents(17, frames=3 * CHUNK)
    plain = wan.decode(latents)
    wan.use_channels_last_3d()
    weight = wan.vae.decoder.conv_in.weight
    assert wan.channels_last and weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert not weight.is_contiguous()
    whole = wan.decode(latents)
    torch.testing.assert_close(whole, plain, rtol=0, atol=1e-5)
    stream = wan.stream_decoder()
    chunks = [stream.decode_chunk(latents[i : i + CHUNK]) for i in range(0, 3 * CHUNK, CHUNK)]
    assert torch.equal(torch.cat(chunks), whole)


def test_decoder_accepts_channels_last_activations(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA, cuDNN returns NDHWC outputs for NDHWC weights (CPU convs return NCDHW). Mimic that here so
    diffusers' reshapes/views and the causal cache see channels-last activations: same pixels, no view error."""
    torch.manual_seed(0)
    wan = WanVAE(build_vae(TINY.vae))
    latents = _latents(18, frames=2 * CHUNK)
    plain = wan.decode(latents)
    wan.use_channels_last_3d()
    conv3d, conv2d = torch.nn.Conv3d._conv_forward, torch.nn.Conv2d._conv_forward

    def ndhwc_conv3d(self: torch.nn.Conv3d, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        out = conv3d(self, x, w, b)
        ndhwc = torch.channels_last_3d
        channels_last = any(t.is_contiguous(memory_format=ndhwc) and not t.is_contiguous() for t in (x, w))
        return out.contiguous(memory_format=ndhwc) if channels_last else out

    def nhwc_conv2d(self: torch.nn.Conv2d, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        out = conv2d(self, x, w, b)
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        return out.contiguous(memory_format=torch.channels_last) if channels_last else out

    monkeypatch.setattr(torch.nn.Conv3d, "_conv_forward", ndhwc_conv3d)
    monkeypatch.setattr(torch.nn.Conv2d, "_conv_forward", nhwc_conv2d)
    stream = wan.stream_decoder()
    out = torch.cat([stream.decode_chunk(latents[i : i + CHUNK]) for i in range(0, 2 * CHUNK, CHUNK)])
    assert torch.equal(out, plain)
    first = stream._cache[0]  # conv_in's cache: decode_latent made the 1x1x1 post_quant_conv's input NDHWC
    assert first.is_contiguous(memory_format=torch.channels_last_3d) and not first.is_contiguous()
    assert out.permute(0, 2, 3, 1).is_contiguous()  # NHWC already: to_uint8's final copy is cheap


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_tune_for_cuda_keeps_results_and_streaming_exactness() -> None:
    torch.manual_seed(0)
    wan = WanVAE(torch.nn.Module.to(build_vae(TINY.vae), device="cuda"))  # fp32: compare layouts, not dtypes
    latents = _latents(19, frames=2 * CHUNK).cuda()
    plain = wan.decode(latents)
    saved = torch.backends.cudnn.benchmark
    try:
        assert tune_for_cuda(wan) is True
        assert torch.backends.cudnn.benchmark and wan.channels_last
        assert wan.vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last_3d)
        whole = wan.decode(latents)
        torch.testing.assert_close(whole, plain, rtol=0, atol=1e-2)  # TF32 convs may differ from the plain kernels
        stream = wan.stream_decoder()
        first = stream.decode_latent(latents[0])
        assert first.permute(0, 2, 3, 1).is_contiguous()  # cuDNN returned NDHWC activations
        rest = [stream.decode_chunk(latents[i : i + CHUNK]) for i in range(1, 2 * CHUNK, CHUNK)]
        assert torch.equal(torch.cat([first, *rest]), whole)
    finally:
        torch.backends.cudnn.benchmark = saved
