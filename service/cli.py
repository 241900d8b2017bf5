"""``shotstream`` command line: render a story file to MP4 locally, fetch weights."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .story_file import StoryFileError, load_story


def _story(args: argparse.Namespace) -> int:
    import torch

    from engine_core import ShotStreamEngine

    from .render import render_story
    from .video_io import Mp4Writer

    try:
        spec = load_story(args.file)
    except StoryFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    dtype = {"auto": None, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    engine = ShotStreamEngine.load(args.weights, args.student, device=args.device, dtype=dtype)
    if engine.random_weights:
        print(f"NOTE: no weights given, so this runs the built-in '{engine.config.name}' model with random weights: "
              "the video is noise-like and only shows the pipeline works. Pass --weights DIR "
              "(see `shotstream fetch-weights`) for real output.", file=sys.stderr)
    seed = args.seed if args.seed is not None else (spec.seed or 0)
    cfg = engine.config.stream
    out = Path(args.out)
    with Mp4Writer(out, cfg.width, cfg.height, cfg.fps) as writer:
        def on_chunk(chunk):
            writer.write(chunk.frames.numpy())
            if not args.quiet:
                print(f"shot {chunk.shot_index} chunk {chunk.chunk_index}: {len(chunk.frames)} frames "
                      f"(denoise {chunk.timings_ms['denoise']:.0f} ms, decode {chunk.timings_ms['decode']:.0f} ms)",
                      file=sys.stderr)

        report = render_story(engine, spec, seed, on_chunk)
    report["video"] = str(out)
    text = json.dumps(report, indent=2)
    if args.report:
        Path(args.report).write_text(text + "\n")
    else:
        print(text)
    print(f"wrote {out} ({report['frames']} frames, {len(spec.shots)} shots, {report['wall_s']:.1f} s, "
          f"{report['generated_fps']:.1f} generated fps on {report['device']}; weights: {report['weights']})",
          file=sys.stderr)
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from engine_core.fetch import main as fetch_main

    return fetch_main([str(args.dest)] + ([] if args.student else ["--no-student"]))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shotstream", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    story = sub.add_parser("story", help="render a story file (reference JSON or ours) to an MP4 and a timing report")
    story.add_argument("file", help="story JSON: {'global_caption', 'shot1'..} or {'global_caption', 'shots': [...]}")
    story.add_argument("--out", required=True, help="output .mp4 path")
    story.add_argument("--report", help="write the JSON timing report here (default: stdout)")
    story.add_argument("--weights", help="Wan2.1-T2V-1.3B folder (original or diffusers layout); "
                                         "omitted: built-in tiny random model")
    story.add_argument("--student", help="ShotStream student checkpoint (shotstream_merged.pt)")
    story.add_argument("--seed", type=int, help="story seed (default: the file's, else 0)")
    story.add_argument("--device", help="torch device (default: cuda if available)")
    story.add_argument("--dtype", choices=["auto", "bf16", "fp32"], default="auto")
    story.add_argument("--quiet", action="store_true", help="no per-chunk progress lines")
    story.set_defaults(func=_story)

    fetch = sub.add_parser("fetch-weights", help="download Wan2.1-T2V-1.3B and the ShotStream student (needs internet)")
    fetch.add_argument("dest", type=Path)
    fetch.add_argument("--no-student", dest="student", action="store_false")
    fetch.set_defaults(func=_fetch)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
