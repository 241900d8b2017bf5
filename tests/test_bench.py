"""The benchmark scripts' smoke runs (tiny config, CPU): every key of their JSON, and the figures that
must hold whatever the speed (frame counts, an exact fidelity on the CPU, complete service stories)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from engine_core.config import TINY

BENCH = Path(__file__).resolve().parents[1] / "bench"

ENGINE_KEYS = {
    "date", "config", "random_weights", "mode", "decoder", "fast_path", "attention", "fp8", "dtype", "device",
    "torch", "python", "build_s", "warmup_shots", "measured_shots", "frames_measured", "end_to_end_fps", "dit_fps",
    "chunk_dit_ms_by_index", "chunk_dit_ms_mean", "chunk_interval_ms_by_index", "decode_ms", "first_frame_s",
    "prepare_next_shot_ms_mean", "switch_s", "peak_gpu_gib", "fidelity", "shots", "notes", "vs_reference_h100",
}
SERVICE_KEYS = {
    "date", "config", "random_weights", "mode", "fast_path", "attention", "fp8", "dtype", "device", "torch",
    "text_encoder", "transport", "stories", "shots_per_story", "chunks_per_shot", "prompts_from", "build_s",
    "engine_warmup_s", "playback_fps", "totals", "per_story",
}
QUALITY_KEYS = {
    "date", "config", "random_weights", "weights", "tae", "device", "dtype", "torch", "mode", "build_s", "story",
    "seed", "shots", "chunks_by_shot", "text", "frames_by_shot", "quality", "decode_ms", "decode_fps", "tae_vs_wan",
    "history_drift", "notes",
}
DECODE_MS_KEYS = {"first_chunk_mean", "later_chunks_mean", "first_chunk_frames", "later_chunk_frames", "chunks_timed",
                  "total_ms"}


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is being built
    spec.loader.exec_module(module)
    return module


def _run(name: str, argv: list[str], capsys) -> tuple[int, dict]:
    rc = _load(name).main(argv)
    return rc, json.loads(capsys.readouterr().out)


def test_bench_engine_tiny_reports_everything(capsys):
    rc, out = _run("bench_engine", ["--shots", "2", "--warmup-shots", "1", "--switches", "3",
                                    "--fidelity-chunks", "2"], capsys)
    assert rc == 0 and set(out) == ENGINE_KEYS
    assert out["config"] == "tiny" and out["mode"] == "fast" and out["fast_path"] == "eager"  # CPU: no levers
    assert out["decoder"] == "wan"
    assert out["measured_shots"] == 2 and out["frames_measured"] == 2 * TINY.pixel_frames(7)
    assert out["end_to_end_fps"] > 0 and out["dit_fps"] > out["end_to_end_fps"]
    assert len(out["chunk_dit_ms_by_index"]) == len(out["chunk_interval_ms_by_index"]) == 7
    assert [s["prepared_ahead"] for s in out["shots"]] == [False, True, True]
    assert out["first_frame_s"]["after_cue_count"] == 2 and out["first_frame_s"]["shot0_new_story"] > 0
    assert out["switch_s"]["count"] == 3 and out["switch_s"]["p50"] <= out["switch_s"]["p95"]
    assert out["attention"]["name"] == "math" and out["fp8"] is None and out["peak_gpu_gib"] is None
    assert out["vs_reference_h100"] is None  # only for the full config on an H100/H200
    fid = out["fidelity"]
    assert fid["chunks"] == 2 and len(fid["by_chunk"]) == 2
    assert fid["latents_max_abs"] == 0.0 and fid["latents_rel_l2"] == 0.0  # fp32 eager twin of an fp32 eager engine


def test_bench_engine_eager_fp8_reports_the_conversion(capsys):
    rc, out = _run("bench_engine", ["--mode", "eager", "--fp8", "--shots", "1", "--warmup-shots", "0",
                                    "--switches", "1", "--fidelity-chunks", "1"], capsys)
    assert rc == 0 and set(out) == ENGINE_KEYS and out["mode"] == "eager"
    fp8 = out["fp8"]
    assert fp8["mode"] == "emulate" and fp8["converted"] > 0 and 0 < fp8["weight_error"] < 0.1
    assert 0 < out["fidelity"]["latents_rel_l2"] < 0.1  # fp8 against the fp32 twin: close, not equal
    assert out["first_frame_s"]["after_cue_count"] == 0 and out["first_frame_s"]["after_cue_mean"] is None


def test_bench_engine_tae_decoder_decodes_with_the_tiny_one(capsys, monkeypatch):
    from engine_core import ShotStreamEngine

    asked = []
    original = ShotStreamEngine.stream_decoder

    def spy(self, decoder="wan"):
        asked.append(decoder)
        return original(self, decoder)

    monkeypatch.setattr(ShotStreamEngine, "stream_decoder", spy)
    rc, out = _run("bench_engine", ["--decoder", "tae", "--shots", "1", "--warmup-shots", "0", "--switches", "1",
                                    "--fidelity-chunks", "0"], capsys)
    assert rc == 0 and set(out) == ENGINE_KEYS and out["decoder"] == "tae"
    assert out["frames_measured"] == TINY.pixel_frames(7) and out["end_to_end_fps"] > 0
    assert out["decode_ms"]["later_chunks_mean"] > 0
    # Story() checks its decoder once at open, then one streaming decoder per shot: all of them tae.
    assert asked and set(asked) == {"tae"}


@pytest.mark.parametrize("text", ["umt5", "stand-in"])
def test_bench_service_tiny_delivers_every_shot(capsys, text):
    rc, out = _run("bench_service", ["--shots", "2", "--chunks", "2", "--engine-warmup-shots", "0",
                                     "--text-encoder", text], capsys)
    assert rc == 0 and set(out) == SERVICE_KEYS
    assert out["text_encoder"] == ("random stand-in" if text == "stand-in" else "random UMT5 (tiny size)")
    totals = out["totals"]
    assert totals["complete"] and totals["frames"] == 2 * 2 * TINY.pixel_frames(2) and totals["chunks"] == 8
    for story in out["per_story"]:
        assert story["complete"] and story["frames"] == 2 * TINY.pixel_frames(2)
        assert [s["shot"] for s in story["shots"]] == [0, 1]
        assert story["shots"][0]["first_frame_after_cue_s"] > 0 and story["shots"][1]["gap_after_previous_shot_s"] > 0
        assert set(story["stalls"]) == {"count", "max_gap_s", "gaps_s", "player_stall_s"}


def test_text_stand_in_is_deterministic_per_prompt():
    stand_in = _load("bench_service").RandomTextStandIn(8, 4, torch.device("cpu"), torch.float32, 100)
    a, b, a2 = stand_in.encode(["a", "b", "a"])
    assert a.shape == (8, 4) and torch.equal(a, a2) and not torch.equal(a, b)
    fresh = _load("bench_service").RandomTextStandIn(8, 4, torch.device("cpu"), torch.float32, 100)
    assert torch.equal(fresh.encode(["a"])[0], a)
    info = stand_in.prompt_info("x" * 20)
    assert info.num_tokens == 8 and info.truncated_tokens == 13



def test_decoder_quality_tiny_reports_everything(capsys):
    rc = _load("decoder_quality").main(["--shots", "2", "--chunks", "2"])
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert rc == 0 and set(out) == QUALITY_KEYS
    assert out["random_weights"] and "MEAN NOTHING" in out["notes"][0] and "MEAN NOTHING" in captured.err
    assert out["config"] == "tiny" and out["shots"] == 2 and out["chunks_by_shot"] == [2, 2]
    assert out["story"].endswith("examples/stories/01.json") and out["text"] == "random stand-in"
    frames = out["frames_by_shot"]
    assert frames["wan"] == frames["tae"] == [TINY.pixel_frames(2)] * 2
    assert out["history_drift"]["story_frames_by_shot"] == frames
    quality = out["quality"]
    assert [s["shot"] for s in quality["by_shot"]] == [0, 1]
    for entry in [quality, *quality["by_shot"]]:
        assert math.isfinite(entry["psnr_db"]) and -1 <= entry["ssim"] <= 1
    for shot in quality["by_shot"]:
        assert shot["frames"] == TINY.pixel_frames(2) and -1 <= shot["ssim_min"] <= shot["ssim"]
    for name in ("wan", "tae"):
        ms = out["decode_ms"][name]
        assert set(ms) == DECODE_MS_KEYS and ms["chunks_timed"] == 4
        assert ms["first_chunk_frames"] == TINY.pixel_frames(1) and ms["later_chunk_frames"] == 12
        assert ms["first_chunk_mean"] > 0 and ms["later_chunks_mean"] > 0
        assert out["decode_fps"][name] == pytest.approx(2 * TINY.pixel_frames(2) / (ms["total_ms"] / 1e3))
    assert out["tae_vs_wan"]["decode_fps_ratio"] == pytest.approx(out["decode_fps"]["tae"] / out["decode_fps"]["wan"])
    drift = out["history_drift"]["rel_l2_by_shot"]
    assert drift[0] == 0.0 and out["history_drift"]["max_abs_by_shot"][0] == 0.0  # shot 0 reads no history
    assert drift[1] > 0  # shot 1 re-encoded its history from the tiny decoder's frames


def test_decoder_quality_metrics():
    dq = _load("decoder_quality")
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(3, 3, 24, 20, generator=gen)
    b = (a + 0.1 * torch.randn(a.shape, generator=gen)).clamp(0, 1)
    assert torch.allclose(dq.ssim_per_frame(a, a), torch.ones(3, dtype=torch.float64))
    s_ab, s_ba = dq.ssim_per_frame(a, b), dq.ssim_per_frame(b, a)
    assert torch.allclose(s_ab, s_ba) and bool(((s_ab > 0) & (s_ab < 1)).all())
    assert bool((dq.ssim_per_frame(a, 1 - a) < 0).all())  # inverted structure: negative correlation
    # Flat frames: no variance, so SSIM is the luminance term (2 x y + C1) / (x^2 + y^2 + C1) exactly.
    x, y = 0.2, 0.7
    flat = dq.ssim_per_frame(torch.full((1, 3, 16, 16), x), torch.full((1, 3, 16, 16), y))
    assert flat.item() == pytest.approx((2 * x * y + dq.SSIM_C1) / (x * x + y * y + dq.SSIM_C1), rel=1e-6)
    # Luma weights: a pure-green difference counts 0.587, a pure-blue one 0.114.
    green, blue = torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16)
    green[:, 1], blue[:, 2] = 1.0, 1.0
    zero = torch.zeros(1, 3, 16, 16)
    assert dq.ssim_per_frame(green, zero).item() == pytest.approx(dq.SSIM_C1 / (0.587 ** 2 + dq.SSIM_C1), rel=1e-6)
    assert dq.ssim_per_frame(blue, zero).item() == pytest.approx(dq.SSIM_C1 / (0.114 ** 2 + dq.SSIM_C1), rel=1e-6)
    # PSNR: an error of 0.1 everywhere is an MSE of 0.01, i.e. 20 dB; identical frames have no finite PSNR.
    mse = dq.mse_per_frame(torch.full((2, 3, 8, 8), 0.1), torch.zeros(2, 3, 8, 8))
    assert torch.allclose(mse, torch.full((2,), 0.01, dtype=torch.float64))
    assert dq.psnr_db(mse.mean().item()) == pytest.approx(20.0) and dq.psnr_db(0.0) is None
    assert dq.to_unit(torch.tensor([-2.0, -1.0, 0.0, 1.0])).tolist() == [0.0, 0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="at least 11x11"):
        dq.ssim_per_frame(torch.zeros(1, 3, 10, 32), torch.zeros(1, 3, 10, 32))
    assert dq.rel_l2(a, a) == 0.0 and dq.rel_l2(2 * a, a) == pytest.approx(1.0)


@pytest.mark.parametrize("argv, message", [
    (["--tae", "taew2_1.pth"], "need --weights"),
    (["--weights", "weights/Wan2.1-T2V-1.3B"], "pass the tiny decoder file too"),
    (["--shots", "7"], "--shots must be in 1..6"),
])
def test_decoder_quality_refuses_bad_arguments(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        _load("decoder_quality").main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err
