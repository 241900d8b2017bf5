"""What the ``shotstream`` commands share: the user-facing error, the progress line, loading a story file or
the engine from the command line's options, and writing a report."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from .story_file import StoryFileError, StorySpec, load_story

RANDOM_NOTE = ("NOTE: no weights given, so this runs the built-in '{model}' model with random weights: the video is "
               "noise-like and only shows the pipeline works. Pass --weights DIR (see `shotstream fetch-weights`) "
               "for real output.")
REMOTE_RANDOM_NOTE = ("NOTE: the server runs the '{model}' model with random weights: the video is noise-like and "
                      "only shows the pipeline works.")


class CliError(Exception):
    """A user-facing error: printed as ``error: ...``, exit status ``code``."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


# -- helpers ------------------------------------------------------------------------------------


class Progress:
    """One progress line on stderr: rewritten in place (``\\r``) on a terminal, one line per update
    otherwise (logs and CI stay readable). No dependency."""

    def __init__(self, total: int, stream=None, enabled: bool = True, width: int = 24):
        self.total, self.done, self.width, self.enabled = max(total, 1), 0, width, enabled
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._t0 = time.perf_counter()
        self._last_len = 0

    def update(self, frames: int, text: str) -> None:
        self.done += frames
        if not self.enabled:
            return
        frac = min(self.done / self.total, 1.0)
        filled = round(frac * self.width)
        elapsed = time.perf_counter() - self._t0
        fps = self.done / elapsed if elapsed > 0 else 0.0
        line = (f"[{'#' * filled}{'-' * (self.width - filled)}] {100 * frac:3.0f}% {self.done}/{self.total} frames "
                f"{fps:6.1f} fps | {text}")
        if self.tty:
            pad = max(0, self._last_len - len(line))
            self.stream.write("\r" + line + " " * pad)
            self._last_len = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty and self._last_len:
            self.stream.write("\n")
            self.stream.flush()


def load_spec(path: str | Path, shots: int | None) -> StorySpec:
    try:
        spec = load_story(path)
    except StoryFileError as exc:
        raise CliError(str(exc)) from None
    if shots is not None:
        if shots < 1:
            raise CliError("--shots must be at least 1")
        spec = dataclasses.replace(spec, shots=spec.shots[:shots])
    return spec


def dtype_of(name: str):
    import torch

    return {"auto": None, "bf16": torch.bfloat16, "fp32": torch.float32}[name]


def load_engine(args: argparse.Namespace):
    from engine_core import ShotStreamEngine

    if args.student and not args.weights:
        raise CliError("--student needs --weights too (the Wan2.1-T2V-1.3B folder: VAE, UMT5 and tokenizer)")
    from engine_core.fast_path import FastPath

    if args.tae and not args.weights:
        raise CliError("--tae needs --weights too (a tiny decoder decodes the Wan model's latents); without "
                       "weights the built-in tiny model has its own random tiny decoder")
    if args.decoder == "tae" and args.weights and not args.tae:
        raise CliError("--decoder tae needs the tiny decoder's file: --tae taew2_1.pth (`shotstream fetch-weights "
                       "DEST --decoder taew2_1` downloads it)")
    try:
        engine = ShotStreamEngine.load(args.weights, args.student, device=args.device, dtype=dtype_of(args.dtype),
                                       attention=args.attention, fp8=args.fp8,
                                       fast=FastPath.eager() if args.eager else None,
                                       tae=args.tae or not args.weights, tae_kind=args.tae_kind)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if engine.random_weights:
        print(RANDOM_NOTE.format(model=engine.config.name), file=sys.stderr)
    return engine


def write_report(report: dict, path: str | None) -> None:
    text = json.dumps(report, indent=2)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")
    else:
        print(text)


def chunk_text(shot: int, chunk: int, n: int, detail: str) -> str:
    return f"shot {shot} chunk {chunk}: {n} frames ({detail})"
