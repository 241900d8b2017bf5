"""Engine benchmark: random weights at any configuration, prints one JSON object.

    python bench/bench_engine.py                                   # tiny config, CPU (smoke)
    python bench/bench_engine.py --config wan2.1-t2v-1.3b --device cuda --shots 3

No checkpoints are needed: the full 1.3B DiT and VAE are built with random weights (timing does
not depend on the values). Text embeddings are random too (the UMT5 encoder is skipped; games
repeat prompts and the engine caches their embeddings). Every number is measured with the device
synchronised at stage boundaries.

Reported, per measured shot and in summary:
- chunk latency by chunk index (previous chunk's clean pass + 4 denoising steps + decode);
- DiT-only FPS: frames / (context fill + clean passes + denoising steps);
- end-to-end FPS: frames / wall time from start_shot to the last chunk's frames on the host;
- first-frame latency: start_shot (history re-encode, context fill) + chunk 0 + its decode;
- history re-encode and context-fill times, and peak GPU memory.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine_core import ShotStreamEngine, get_config  # noqa: E402

# The ShotStream reference on one H100 (random weights, SDPA), as given in the issue.
REFERENCE_H100 = {"chunk_ms_mean": 546.0, "dit_fps": 20.4, "end_to_end_fps": 13.6, "first_frame_s": 5.8,
                  "peak_gib": 16.5}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_shot(story, text: torch.Tensor, device: torch.device) -> dict:
    sync(device)
    t0 = time.perf_counter()
    info = story.start_shot("", text_embedding=text)
    chunks, first_frame = [], None
    while story.shot_in_progress:
        c0 = time.perf_counter()
        chunk = story.step()
        now = time.perf_counter()
        first_frame = now - t0 if first_frame is None else first_frame
        chunks.append({"ms": 1e3 * (now - c0), **chunk.timings_ms, "frames": len(chunk.frames)})
    wall = time.perf_counter() - t0
    frames = sum(c["frames"] for c in chunks)
    dit_s = (info.timings_ms["context"] + sum(c["commit"] + c["denoise"] for c in chunks)) / 1e3
    return {"shot": info.shot_index, "frames": frames, "wall_s": wall, "first_frame_s": first_frame,
            "history_ms": info.timings_ms["history"], "context_fill_ms": info.timings_ms["context"],
            "dit_s": dit_s, "dit_fps": frames / dit_s, "end_to_end_fps": frames / wall, "chunks": chunks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="tiny", help="tiny | wan2.1-t2v-1.3b")
    parser.add_argument("--device", default=None, help="default: cuda if available")
    parser.add_argument("--dtype", choices=["auto", "bf16", "fp32"], default="auto")
    parser.add_argument("--shots", type=int, default=3, help="measured shots (shot 0 has no history; later ones do)")
    parser.add_argument("--warmup-shots", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    cfg = get_config(args.config)
    dtype = {"auto": None, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    t_build = time.perf_counter()
    engine = ShotStreamEngine.random(cfg, device=args.device, dtype=dtype, seed=args.seed, with_text_encoder=False)
    device = engine.device
    build_s = time.perf_counter() - t_build
    gen = torch.Generator().manual_seed(args.seed)
    texts = [torch.randn(cfg.dit.text_len, cfg.dit.text_dim, generator=gen) for _ in range(args.warmup_shots + args.shots)]

    warm = engine.open_story("bench warm-up", seed=args.seed)
    for text in texts[:args.warmup_shots]:
        run_shot(warm, text, device)
    warm.close()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)

    story = engine.open_story("bench", seed=args.seed)
    shots = [run_shot(story, text, device) for text in texts[args.warmup_shots:]]
    story.close()

    n_chunks = cfg.stream.chunks_per_shot
    by_index = [statistics.mean(s["chunks"][b]["ms"] for s in shots) for b in range(n_chunks)]
    frames = sum(s["frames"] for s in shots)
    later = [s for s in shots if s["shot"] > 0] or shots
    result = {
        "date": datetime.date.today().isoformat(),
        "config": cfg.name, "random_weights": True, "dtype": str(engine.dtype).removeprefix("torch."),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__, "build_s": build_s, "measured_shots": len(shots),
        "chunk_ms_by_index": by_index, "chunk_ms_mean": statistics.mean(by_index),
        "dit_fps": frames / sum(s["dit_s"] for s in shots),
        "end_to_end_fps": frames / sum(s["wall_s"] for s in shots),
        "first_frame_s": {"shot0": shots[0]["first_frame_s"], "later_shots_mean": statistics.mean(s["first_frame_s"] for s in later)},
        "history_reencode_ms_mean": statistics.mean(s["history_ms"] for s in later),
        "context_fill_ms_mean": statistics.mean(s["context_fill_ms"] for s in shots),
        "peak_gpu_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "shots": [{k: v for k, v in s.items() if k != "chunks"} for s in shots],
    }
    if device.type == "cuda" and "H100" in result["device"] and cfg.name == "wan2.1-t2v-1.3b":
        ref = REFERENCE_H100
        result["vs_reference_h100"] = {
            "end_to_end_fps_ratio": result["end_to_end_fps"] / ref["end_to_end_fps"],
            "dit_fps_ratio": result["dit_fps"] / ref["dit_fps"],
            "chunk_ms_ratio": result["chunk_ms_mean"] / ref["chunk_ms_mean"],
            "first_frame_s_reference": ref["first_frame_s"],
        }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
