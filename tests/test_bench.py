"""The benchmark scripts' smoke runs (tiny config, CPU): every key of their JSON, and the figures that
must hold whatever the speed (frame counts, an exact fidelity on the CPU, complete service stories)."""

from __future__ import annotations

import importlib.util
import json
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
