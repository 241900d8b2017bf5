"""DecodeLane: the same frames as decoding inline, in submission order, for interleaved stories.

CPU tests cover the ordering and bookkeeping (the lane decodes synchronously there); the ``cuda``
tests check the side stream: it waits for the producer's stream, keeps the latents alive, and its
pinned uint8 frames equal a synchronous decode bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from engine_core.config import TINY
from engine_core.decode_lane import DecodedFrames, DecodeLane, to_uint8
from engine_core.vae import WanVAE
from fixtures_weights import seeded_wan_vae

Z = TINY.vae.z_dim
LH, LW = TINY.latent_height, TINY.latent_width
H, W = TINY.stream.height, TINY.stream.width
CHUNK = TINY.stream.frames_per_chunk
CHUNKS = 2  # frame counts 1,4,4 then 4,4,4: the first chunk and a later one

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _vae(device: str = "cpu", dtype: torch.dtype = torch.float32) -> WanVAE:
    return seeded_wan_vae(TINY.vae, 0, device, dtype)


@pytest.fixture(scope="module")
def wan() -> WanVAE:
    return _vae()


def _shot(seed: int, device: str = "cpu") -> torch.Tensor:
    return torch.randn(CHUNKS * CHUNK, Z, LH, LW, generator=torch.Generator().manual_seed(seed)).to(device)


def _direct(wan: WanVAE, latents: torch.Tensor) -> list[torch.Tensor]:
    """Inline decode, chunk by chunk, split into per-latent pieces (1 frame, then 4 each)."""
    dec = wan.stream_decoder()
    video = torch.cat([dec.decode_chunk(latents[i : i + CHUNK]) for i in range(0, len(latents), CHUNK)])
    return list(video.split([1] + [4] * (len(latents) - 1)))


def _interleave(lane: DecodeLane, wan: WanVAE, shots: dict[str, torch.Tensor]) -> list[DecodedFrames]:
    """Submit chunk c of every shot before chunk c+1 of any, polling in between; then drain."""
    decoders = {name: wan.stream_decoder() for name in shots}
    out: list[DecodedFrames] = []
    for c in range(CHUNKS):
        for name, latents in shots.items():
            lane.submit(decoders[name], latents[c * CHUNK : (c + 1) * CHUNK], tag=(name, c))
            out += lane.poll()
    return out + lane.drain()


def _check_against_direct(wan: WanVAE, got: list[DecodedFrames], shots: dict[str, torch.Tensor]) -> None:
    expected_tags = [(name, c) for c in range(CHUNKS) for name in shots for _ in range(CHUNK)]
    assert [d.tag for d in got] == expected_tags  # submission order, never out of order
    assert [d.latent_index for d in got] == [0, 1, 2] * (CHUNKS * len(shots))
    assert [d.last_of_chunk for d in got] == [False, False, True] * (CHUNKS * len(shots))
    for name, latents in shots.items():
        mine = [d for d in got if d.tag[0] == name]
        assert [len(d.frames) for d in mine] == [1, 4, 4] + [4, 4, 4] * (CHUNKS - 1)
        for d, want in zip(mine, _direct(wan, latents), strict=True):
            assert d.frames.device.type == "cpu" and d.frames.dtype == torch.uint8
            assert d.frames.shape == (len(want), H, W, 3)
            assert torch.equal(d.frames, to_uint8(want).cpu())
            assert d.video.device == want.device and torch.equal(d.video, want)
            assert d.decode_ms >= 0.0


def test_to_uint8_truncates_like_the_reference_writer() -> None:
    frames = torch.tensor([-2.0, -1.0, 0.0, 0.5, 0.999, 1.0, 3.0]).view(1, 1, 1, 7).expand(1, 3, 2, 7)
    out = to_uint8(frames)
    assert out.shape == (1, 2, 7, 3) and out.dtype == torch.uint8 and out.is_contiguous()
    # (x + 1) / 2 * 255, truncated: 0.0 -> 127.5 -> 127; 0.5 -> 191.25 -> 191; 0.999 -> 254.87 -> 254.
    assert out[0, 0, :, 0].tolist() == [0, 0, 127, 191, 254, 255, 255]
    rgb = torch.stack([torch.full((2, 2), -1.0), torch.zeros(2, 2), torch.ones(2, 2)]).unsqueeze(0)
    assert to_uint8(rgb)[0, 1, 1].tolist() == [0, 127, 255]  # channels end up last


def test_lane_equals_direct_decode_for_interleaved_decoders(wan: WanVAE) -> None:
    shots = {"a": _shot(1), "b": _shot(2)}
    got = _interleave(DecodeLane(torch.device("cpu")), wan, shots)
    _check_against_direct(wan, got, shots)


def test_wait_next_pending_and_drain(wan: WanVAE) -> None:
    lane = DecodeLane(torch.device("cpu"))
    assert lane.poll() == [] and lane.pending() == 0
    with pytest.raises(RuntimeError, match="nothing is pending"):
        lane.wait_next()
    dec = wan.stream_decoder()
    latents = _shot(3)
    lane.submit(dec, latents[:CHUNK], tag="first")
    lane.submit(dec, latents[CHUNK : 2 * CHUNK], tag="second")
    assert lane.pending() == 2 * CHUNK  # finished (CPU decodes in submit) but not handed out yet
    first = lane.wait_next()
    assert (first.tag, first.latent_index, len(first.frames)) == ("first", 0, 1)
    assert lane.pending() == 2 * CHUNK - 1
    rest = lane.drain()
    assert [(d.tag, d.latent_index) for d in rest] == [("first", 1), ("first", 2)] + [("second", i) for i in range(3)]
    assert lane.pending() == 0 and lane.drain() == [] and lane.poll() == []


def test_submit_rejects_bad_chunks_before_queueing(wan: WanVAE) -> None:
    lane = DecodeLane(torch.device("cpu"))
    dec = wan.stream_decoder()
    with pytest.raises(ValueError, match="expects 4 latent channels, got 5"):
        lane.submit(dec, torch.zeros(CHUNK, Z + 1, LH, LW), tag=0)
    with pytest.raises(ValueError, match=r"this lane decodes on meta, but the decoder's VAE is on cpu"):
        DecodeLane(torch.device("meta")).submit(dec, _shot(4)[:CHUNK], tag=0)
    assert lane.pending() == 0 and dec.latents_decoded == 0


# -- CUDA: run by bench/device_check.sh on the GPU machine ------------------------------------


@pytest.fixture
def no_autotune() -> Iterator[None]:
    """cuDNN autotuning (tune_for_cuda) may synchronise on a new shape; keep it off, restore after."""
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    yield
    torch.backends.cudnn.benchmark = saved


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("overlap", [True, False])
def test_cuda_lane_equals_synchronous_decode(overlap: bool, no_autotune: None) -> None:
    wan = _vae("cuda", torch.bfloat16)
    shots = {"a": _shot(5, "cuda").bfloat16(), "b": _shot(6, "cuda").bfloat16()}
    lane = DecodeLane(torch.device("cuda"), overlap=overlap)
    got = _interleave(lane, wan, shots)
    _check_against_direct(wan, got, shots)
    assert all(d.frames.is_pinned() and d.video.is_cuda for d in got)
    if not overlap:  # synchronous: everything is ready as soon as submit returns
        lane.submit(wan.stream_decoder(), shots["a"][:CHUNK], tag="sync")
        assert len(lane.poll()) == CHUNK


@pytest.mark.cuda
@cuda
def test_cuda_side_stream_waits_for_producer_and_keeps_latents(no_autotune: None) -> None:
    """Latents still being computed on the main stream when submitted, then freed and their memory
    offered to new work: the lane must wait for them (event) and keep them alive (record_stream)."""
    wan = _vae("cuda", torch.bfloat16)
    lane = DecodeLane(torch.device("cuda"))
    lane.submit(wan.stream_decoder(), _shot(7, "cuda").bfloat16()[:CHUNK], tag="warm-up")  # handles, pinned blocks
    lane.drain()
    base = _shot(8, "cuda").bfloat16()[:CHUNK]
    want = _direct(wan, base)
    torch.cuda.synchronize()

    torch.cuda._sleep(2_000_000_000)  # ~1 s of GPU time on the main stream, queued before the latents
    latents = base * 1.0  # written on the main stream only after the sleep
    lane.submit(wan.stream_decoder(), latents, tag="busy")
    del latents
    junk = torch.full_like(base, float("nan"))  # would take the latents' memory without record_stream
    assert lane.poll() == [] and lane.pending() == CHUNK  # the side stream is still waiting for main
    got = lane.drain()
    assert [d.latent_index for d in got] == [0, 1, 2]
    for d, expected in zip(got, want, strict=True):
        assert torch.equal(d.video, expected) and torch.equal(d.frames, to_uint8(expected).cpu())
    assert junk.isnan().all()
