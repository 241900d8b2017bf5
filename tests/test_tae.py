"""The tiny (TAEHV) preview decoder: published key layout, streaming == whole decode, Wan frame counts, loader errors.

Tiny configs, random weights, CPU; the checkpoints are written by the tests in the published layouts
(``taew2_1``: fp16 ``.pth`` with the encoder half; ``lighttaew2_1``: fp32 ``.safetensors``).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from engine_core.config import TINY, WAN_1_3B
from engine_core.decode_lane import DecodeLane
from engine_core.key_maps import CheckpointError
from engine_core.tae import (LIGHT_TAEW2_1, TAEW2_1, TINY_TAE, MemBlock, TGrow, TinyDecoder, TinyDecoderConfig,
                             load_tae_decoder, random_tae_decoder)
from engine_core.vae import WanVAE, build_vae

# Shapes of the published taew2_1 / lighttaew2_1 decoder tensors (the safetensors headers, as listed by
# the projects that read them, and taehv.py's constructor).
PUBLISHED_SHAPES = {
    "decoder.1.weight": (256, 16, 3, 3),
    "decoder.1.bias": (256,),
    "decoder.3.conv.0.weight": (256, 512, 3, 3),
    "decoder.5.conv.4.bias": (256,),
    "decoder.7.conv.weight": (256, 256, 1, 1),  # TGrow stride 1: still a learned 1x1 conv
    "decoder.8.weight": (128, 256, 3, 3),
    "decoder.11.conv.2.weight": (128, 128, 3, 3),
    "decoder.13.conv.weight": (256, 128, 1, 1),
    "decoder.14.weight": (64, 128, 3, 3),
    "decoder.19.conv.weight": (128, 64, 1, 1),
    "decoder.20.weight": (64, 64, 3, 3),
    "decoder.22.weight": (3, 64, 3, 3),
    "decoder.22.bias": (3,),
}
PUBLISHED_DECODER_TENSORS = 64
PUBLISHED_DECODER_PARAMETERS = 9_844_611


def taehv_encoder_spec(latent_channels: int) -> dict[str, tuple[int, ...]]:
    """The encoder half of a published file (ignored by the loader), from taehv.py's TAEHV.encoder."""
    spec: dict[str, tuple[int, ...]] = {"encoder.0.weight": (64, 3, 3, 3), "encoder.0.bias": (64,)}
    for stage, (pool, stride) in enumerate([(2, 2), (7, 2), (12, 1)]):
        spec[f"encoder.{pool}.conv.weight"] = (64, 64 * stride, 1, 1)
        spec[f"encoder.{pool + 1}.weight"] = (64, 64, 3, 3)
        for block in range(pool + 2, pool + 5):
            spec[f"encoder.{block}.conv.0.weight"] = (64, 128, 3, 3)
            for conv in (0, 2, 4):
                spec.setdefault(f"encoder.{block}.conv.{conv}.weight", (64, 64, 3, 3))
                spec[f"encoder.{block}.conv.{conv}.bias"] = (64,)
    spec["encoder.17.weight"] = (latent_channels, 64, 3, 3)
    spec["encoder.17.bias"] = (latent_channels,)
    return spec


def random_tae(config: TinyDecoderConfig = TINY_TAE, seed: int = 0, dtype: torch.dtype = torch.float32) -> TinyDecoder:
    return random_tae_decoder(config, seed, dtype=dtype)


def latents(frames: int = 9, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(frames, TINY.vae.z_dim, TINY.latent_height, TINY.latent_width, generator=g)


def write_published(tae: TinyDecoder, path: Path, *, encoder: bool, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """A file in the published layout: the decoder's tensors (+ the encoder half), flat, in ``dtype``."""
    sd = {k: v.to(dtype).contiguous() for k, v in tae.state_dict().items()}
    if encoder:
        spec = taehv_encoder_spec(tae.config.latent_channels)
        sd.update({k: torch.randn(shape).to(dtype) for k, shape in spec.items()})
    if path.suffix == ".safetensors":
        save_file(sd, str(path))
    else:
        torch.save(sd, path)
    return sd


# ------------------------------------------------------------------------------------------------
# Architecture and key layout
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [TAEW2_1, LIGHT_TAEW2_1], ids=lambda c: c.name)
def test_full_size_configs_have_the_published_keys_and_shapes(config: TinyDecoderConfig) -> None:
    with torch.device("meta"):
        tae = TinyDecoder(config)
    shapes = {k: tuple(v.shape) for k, v in tae.state_dict().items()}
    assert len(shapes) == PUBLISHED_DECODER_TENSORS
    assert sum(v.numel() for v in tae.state_dict().values()) == PUBLISHED_DECODER_PARAMETERS
    assert {k: shapes[k] for k in PUBLISHED_SHAPES} == PUBLISHED_SHAPES
    assert shapes == config.expected_shapes()  # the module and the independent key table agree
    wan = WAN_1_3B.vae
    assert (config.temporal_stride, config.spatial_stride) == (wan.temporal_stride, wan.spatial_stride)


def test_the_two_published_configs_differ_only_in_latent_space() -> None:
    assert TAEW2_1.expected_shapes() == LIGHT_TAEW2_1.expected_shapes()
    assert (TAEW2_1.latent_space, LIGHT_TAEW2_1.latent_space) == ("normalized", "raw")
    mean, std = LIGHT_TAEW2_1.latent_stats()  # the published Wan2.1 statistics (as in LightX2V's vae_tiny.py)
    assert (len(mean), mean[0], mean[-1], std[0], std[-1]) == (16, -0.7571, -0.2921, 2.8184, 1.9160)


def test_tiny_config_keys_follow_the_same_table_and_strides_match_tiny_vae() -> None:
    tae = TinyDecoder(TINY_TAE)
    assert {k: tuple(v.shape) for k, v in tae.state_dict().items()} == TINY_TAE.expected_shapes()
    assert "decoder.11.conv.weight" in TINY_TAE.expected_shapes()  # 2 blocks per stage: stage 1's TGrow moves to 11
    assert (TINY_TAE.temporal_stride, TINY_TAE.spatial_stride) == (TINY.vae.temporal_stride, TINY.vae.spatial_stride)


def test_tgrow_splits_channel_groups_into_consecutive_frames() -> None:
    grow = TGrow(2, 2)
    eye = torch.eye(2).view(2, 2, 1, 1)
    grow.conv.weight.data = torch.cat([eye, 3 * eye])  # group 0 = x, group 1 = 3x
    x = torch.randn(2, 2, 1, 1)  # two input frames
    assert torch.equal(grow(x), torch.stack([x[0], 3 * x[0], x[1], 3 * x[1]]))


def test_config_rejects_raw_space_without_matching_statistics() -> None:
    with pytest.raises(ValueError, match="latents_mean/std have 16/16 values but the decoder takes 4"):
        TinyDecoderConfig(name="bad", latent_channels=4, latent_space="raw")


# ------------------------------------------------------------------------------------------------
# Streaming
# ------------------------------------------------------------------------------------------------


def parallel_reference(tae: TinyDecoder, z: torch.Tensor) -> torch.Tensor:
    """The published whole-video formulation: every layer over all frames at once, MemBlock pasts shifted
    in time (zeros first), then the first ``stride - 1`` frames dropped. Independent of the streaming code."""
    x = z
    for layer in tae.decoder:
        if isinstance(layer, MemBlock):
            x = layer(x, torch.cat([torch.zeros_like(x[:1]), x[:-1]]))
        elif isinstance(layer, TGrow):
            n, c, h, w = x.shape
            x = F.conv2d(x, layer.conv.weight).reshape(n * layer.stride, c, h, w)
        else:
            x = layer(x)
    return (x.clamp(0, 1) * 2 - 1)[tae.config.temporal_stride - 1:]


def test_whole_shot_decode_equals_the_parallel_formulation() -> None:
    tae = random_tae(dtype=torch.float64)
    z = latents().double()
    whole = tae.decode(z)
    assert whole.shape == (TINY.pixel_frames(3), 3, TINY.stream.height, TINY.stream.width)
    torch.testing.assert_close(whole, parallel_reference(tae, z), rtol=0, atol=1e-12)
    assert 0.05 < (whole.abs() < 1).float().mean() < 0.95  # not saturated: the comparison is informative


@pytest.mark.parametrize("split,dtype", [([1] * 9, torch.float32), ([3, 3, 3], torch.float32),
                                         ([1, 5, 3], torch.float32), ([2, 7], torch.float32),
                                         ([3, 3, 3], torch.bfloat16)], ids=str)
def test_streaming_equals_whole_shot_bit_for_bit(split: list[int], dtype: torch.dtype) -> None:
    tae = random_tae(dtype=dtype)
    z = latents()
    whole = tae.decode(z)
    decoder = tae.stream_decoder()
    streamed = torch.cat([decoder.decode_chunk(c) for c in z.split(split)])
    assert torch.equal(streamed, whole)
    assert (decoder.latents_decoded, decoder.frames_decoded) == (9, whole.shape[0])


def test_state_is_carried_between_chunks() -> None:
    tae = random_tae()
    z = latents()
    decoder = tae.stream_decoder()
    decoder.decode_chunk(z[:3])
    continued = decoder.decode_chunk(z[3:6])
    restarted = tae.stream_decoder().decode_chunk(z[3:6])
    assert continued.shape[0] == 12 and restarted.shape[0] == 9  # a fresh decoder starts a shot
    assert not torch.equal(continued[-9:], restarted)  # the same latents decode differently without the history


def test_frame_counts_and_sizes_match_the_wan_streaming_decoder() -> None:
    torch.manual_seed(0)
    wan = WanVAE(build_vae(TINY.vae)).stream_decoder()
    tiny = random_tae().stream_decoder()
    z = latents()
    per_chunk = []
    for chunk in z.split(TINY.stream.frames_per_chunk):
        ours = [tiny.decode_latent(latent).shape for latent in chunk]
        theirs = [wan.decode_latent(latent).shape for latent in chunk]
        assert ours == theirs  # 1 then 4 frames per latent, same H x W
        per_chunk.append(sum(s[0] for s in ours))
    assert per_chunk == [9, 12, 12]
    assert [sum(per_chunk[:k]) for k in (1, 2, 3)] == [TINY.pixel_frames(k) for k in (1, 2, 3)]
    assert (tiny.latents_decoded, tiny.frames_decoded) == (wan.latents_decoded, wan.frames_decoded)


def test_interleaved_decoders_do_not_interfere() -> None:
    tae = random_tae()
    a, b = latents(seed=1), latents(seed=2)
    da, db = tae.stream_decoder(), tae.stream_decoder()
    out_a, out_b = [], []
    for ca, cb in zip(a.split(3), b.split(3)):
        out_a.append(da.decode_chunk(ca))
        out_b.append(db.decode_chunk(cb))
    assert torch.equal(torch.cat(out_a), tae.decode(a))
    assert torch.equal(torch.cat(out_b), tae.decode(b))


def test_raw_latent_space_decodes_the_denormalised_latents() -> None:
    """lighttaew2_1 is trained on raw Wan latents: the DiT's normalised z must become z * std + mean."""
    normalized = random_tae()
    raw = TinyDecoder(dataclasses.replace(TINY_TAE, latent_space="raw"))
    raw.load_state_dict(normalized.state_dict())
    z = latents()
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in TINY_TAE.latent_stats())
    assert torch.equal(raw.decode(z), normalized.decode(z * std + mean))
    assert not torch.equal(raw.decode(z), normalized.decode(z))


def test_bad_latents_are_rejected_before_decoding() -> None:
    decoder = random_tae().stream_decoder()
    with pytest.raises(ValueError, match="expects 4 latent channels, got 16"):
        decoder.decode_chunk(torch.zeros(3, 16, 4, 6))
    with pytest.raises(ValueError, match="use decode_chunk for several"):
        decoder.decode_latent(torch.zeros(2, 4, 4, 6))
    decoder.decode_chunk(latents(3))
    with pytest.raises(ValueError, match="latent size 8x6 differs"):
        decoder.check_chunk(torch.zeros(3, 4, 8, 6))
    assert (decoder.latents_decoded, decoder.frames_decoded) == (3, 9)


# ------------------------------------------------------------------------------------------------
# Loading the published layouts
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,dtype,encoder", [
    ("taew2_1.pth", torch.float16, True),  # madebyollin/taehv: fp16 .pth with the encoder half
    ("taew2_1.safetensors", torch.float16, True),  # madebyollin/taehv safetensors/
    ("lighttaew2_1.pth", torch.float32, True),  # lightx2v/Autoencoders, fp32
    ("lighttaew2_1.safetensors", torch.float32, False),  # a decoder-only export
], ids=lambda v: str(v))
def test_loads_each_published_layout(tmp_path: Path, name: str, dtype: torch.dtype, encoder: bool) -> None:
    source = random_tae()
    config = TINY_TAE if name.startswith("taew") else dataclasses.replace(TINY_TAE, latent_space="raw")
    written = write_published(source, tmp_path / name, encoder=encoder, dtype=dtype)
    loaded = load_tae_decoder(tmp_path / name, config)
    assert loaded.dtype == dtype and loaded.config == config
    assert all(torch.equal(v, written[k]) for k, v in loaded.state_dict().items())
    as_fp32 = load_tae_decoder(tmp_path / name, config, dtype=torch.float32)
    reference = TinyDecoder(config)  # the weights as stored in the file, decoded in fp32
    reference.load_state_dict({k: written[k].float() for k in reference.state_dict()})
    assert torch.equal(as_fp32.decode(latents(4)), reference.decode(latents(4)))


def test_pth_and_safetensors_of_the_same_weights_decode_identically(tmp_path: Path) -> None:
    source = random_tae()
    write_published(source, tmp_path / "taew2_1.pth", encoder=True, dtype=torch.float32)
    write_published(source, tmp_path / "taew2_1.safetensors", encoder=False, dtype=torch.float32)
    z = latents(4)
    from_pth = load_tae_decoder(tmp_path / "taew2_1.pth", TINY_TAE).decode(z)
    assert torch.equal(from_pth, load_tae_decoder(tmp_path / "taew2_1.safetensors", TINY_TAE).decode(z))
    assert torch.equal(from_pth, source.decode(z))


def test_full_size_published_file_loads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sd = {k: torch.zeros(s, dtype=torch.float16) for k, s in TAEW2_1.expected_shapes().items()}
    sd.update({k: torch.zeros(s, dtype=torch.float16) for k, s in taehv_encoder_spec(16).items()})
    assert len(sd) == 128  # a whole published autoencoder: 64 encoder + 64 decoder tensors
    torch.save(sd, tmp_path / "taew2_1.pth")
    with caplog.at_level(logging.INFO, logger="engine_core.tae"):
        tae = load_tae_decoder(tmp_path / "taew2_1.pth", TAEW2_1, dtype=torch.float32)
    assert "ignoring the 64 encoder tensors" in caplog.text and tae.dtype == torch.float32
    video = tae.decode(torch.zeros(2, 16, 2, 3))
    assert video.shape == (5, 3, 16, 24) and torch.equal(video, -torch.ones_like(video))  # zero weights: black


def edited_file(tmp_path: Path, edit, suffix: str = ".safetensors") -> Path:
    sd = {k: v.clone() for k, v in random_tae().state_dict().items()}
    edit(sd)
    path = tmp_path / f"taew2_1{suffix}"
    if suffix == ".safetensors":
        save_file(sd, str(path))
    else:
        torch.save(sd, path)
    return path


def test_error_names_a_missing_key(tmp_path: Path) -> None:
    path = edited_file(tmp_path, lambda sd: sd.pop("decoder.19.bias"))
    with pytest.raises(CheckpointError, match=r"1 missing keys: decoder\.19\.bias") as info:
        load_tae_decoder(path, TINY_TAE)
    assert info.value.missing == ["decoder.19.bias"] and str(path) in str(info.value)


def test_error_names_an_unexpected_key_but_not_the_encoder(tmp_path: Path) -> None:
    def edit(sd: dict) -> None:
        sd["decoder.25.weight"] = torch.zeros(1)
        sd["encoder.0.weight"] = torch.zeros(1)

    with pytest.raises(CheckpointError, match=r"1 unexpected keys: decoder\.25\.weight") as info:
        load_tae_decoder(edited_file(tmp_path, edit, ".pth"), TINY_TAE)
    assert info.value.unexpected == ["decoder.25.weight"]


def test_error_names_a_mis_shaped_key(tmp_path: Path) -> None:
    path = edited_file(tmp_path, lambda sd: sd.update({"decoder.6.conv.weight": torch.zeros(32, 16, 1, 1)}))
    with pytest.raises(CheckpointError, match=r"1 shape mismatches: decoder\.6\.conv\.weight: file has "
                                              r"\[32, 16, 1, 1\], model expects \[16, 16, 1, 1\]") as info:
        load_tae_decoder(path, TINY_TAE)
    assert info.value.mismatched == [("decoder.6.conv.weight", (32, 16, 1, 1), (16, 16, 1, 1))]


def test_error_on_a_file_of_another_config(tmp_path: Path) -> None:
    """A tiny file given to the full-size config: named, not a crash deep in load_state_dict."""
    path = edited_file(tmp_path, lambda sd: None)
    with pytest.raises(CheckpointError, match=r"shape mismatches: decoder\.1\.weight: file has \[16, 4, 3, 3\], "
                                              r"model expects \[256, 16, 3, 3\]") as info:
        load_tae_decoder(path, TAEW2_1)
    assert "decoder.22.weight" in info.value.missing  # full size has 3 blocks per stage: its last conv is at 22


def test_error_on_a_wan_vae_state_dict(tmp_path: Path) -> None:
    sd = {f"decoder.{k}": v for k, v in build_vae(TINY.vae).decoder.state_dict().items()}
    torch.save(sd, tmp_path / "Wan2.1_VAE.pth")
    with pytest.raises(CheckpointError, match=r"unexpected keys: decoder\.conv_in\.weight") as info:
        load_tae_decoder(tmp_path / "Wan2.1_VAE.pth", TINY_TAE)
    assert "decoder.1.weight" in info.value.missing


@pytest.mark.parametrize("name,content,message", [
    ("taew2_1.bin", b"", r"suffix '\.bin'; the published tiny decoders are \.pth, \.pt, \.safetensors"),
    ("taew2_1.pth", b"not a zip or pickle", r"taew2_1\.pth cannot be read with torch\.load\(weights_only=True\)"),
    ("taew2_1.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}", r"cannot read .* as a \.safetensors file"),
    ("missing.pth", None, r"file .*missing\.pth not found"),
], ids=["suffix", "pth-garbage", "safetensors-garbage", "absent"])
def test_error_on_the_wrong_file_type(tmp_path: Path, name: str, content: bytes | None, message: str) -> None:
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_tae_decoder(tmp_path / name, TINY_TAE)


def test_error_on_a_pth_that_is_not_a_flat_state_dict(tmp_path: Path) -> None:
    torch.save({"state_dict": random_tae().state_dict()}, tmp_path / "taew2_1.pth")
    with pytest.raises(CheckpointError, match="not a flat state dict of named tensors"):
        load_tae_decoder(tmp_path / "taew2_1.pth", TINY_TAE)


def test_a_file_named_for_the_other_latent_space_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_published(random_tae(), tmp_path / "lighttaew2_1.safetensors", encoder=False, dtype=torch.float32)
    with caplog.at_level(logging.WARNING, logger="engine_core.tae"):
        load_tae_decoder(tmp_path / "lighttaew2_1.safetensors", dataclasses.replace(TINY_TAE, latent_space="raw"))
        assert not caplog.records
        load_tae_decoder(tmp_path / "lighttaew2_1.safetensors", TINY_TAE)
    assert "decodes raw latents, but the config tiny-tae decodes normalized" in caplog.text


def test_the_decode_lane_drives_it_like_the_wan_decoder() -> None:
    """The lane only uses decode_latent/check_chunk/device, so the tiny decoder is a drop-in there."""
    tae = random_tae()
    z = latents(6)
    lane = DecodeLane(torch.device("cpu"))
    decoder = tae.stream_decoder()
    for i, chunk in enumerate(z.split(3)):
        lane.submit(decoder, chunk, tag=i)
    out = lane.drain()
    assert [o.frames.shape[0] for o in out] == [1, 4, 4, 4, 4, 4]
    assert torch.equal(torch.cat([o.video for o in out]), tae.decode(z))
    with pytest.raises(ValueError, match="expects 4 latent channels"):
        lane.submit(decoder, torch.zeros(3, 16, 4, 6), tag="bad")


def test_tae_config_for_picks_the_latent_space_from_the_kind_or_the_file_name():
    from engine_core.engine import tae_config_for

    assert tae_config_for(Path("weights/tae/taew2_1.pth"), None, WAN_1_3B) == TAEW2_1
    light = tae_config_for(Path("lighttaew2_1.safetensors"), None, WAN_1_3B)
    assert light.latent_space == "raw" and light.latent_stats() == LIGHT_TAEW2_1.latent_stats()
    assert tae_config_for(Path("renamed.pth"), "lighttaew2_1", WAN_1_3B).latent_space == "raw"
    # a raw-space decoder takes the loaded model's own statistics where its config has them (tiny's 4 do not fit)
    with pytest.raises(ValueError, match="latents_mean/std have 4/4 values but the decoder takes 16"):
        tae_config_for(Path("lighttaew2_1.pth"), None, TINY)
    with pytest.raises(ValueError, match="unknown; use one of \\['lighttaew2_1', 'taew2_1'\\]"):
        tae_config_for(Path("x.pth"), "taehv", WAN_1_3B)


def test_engine_refuses_a_tiny_decoder_of_the_wrong_latent_width():
    from engine_core import ShotStreamEngine

    base = ShotStreamEngine.random(TINY, device="cpu", seed=0)
    with pytest.raises(ValueError, match="takes 16 latent channels, but tiny's latents have 4"):
        ShotStreamEngine(TINY, base.dit, base.vae, base.text, "x", tae=TinyDecoder(TAEW2_1))
