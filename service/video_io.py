"""MP4 writing through imageio-ffmpeg (a static ffmpeg ships in its wheel)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class Mp4Writer:
    """Streams uint8 RGB frames ``[n, H, W, 3]`` into an H.264 MP4 as they arrive."""

    def __init__(self, path: str | Path, width: int, height: int, fps: int):
        import imageio_ffmpeg

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.size = (width, height)
        self.frames = 0
        self._gen = imageio_ffmpeg.write_frames(str(self.path), self.size, fps=fps, macro_block_size=1,
                                                ffmpeg_log_level="error")
        self._gen.send(None)

    def write(self, frames: np.ndarray) -> None:
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (self.size[1], self.size[0], 3):
            raise ValueError(f"frames must be uint8 [n, {self.size[1]}, {self.size[0]}, 3], got "
                             f"{frames.dtype} {list(frames.shape)}")
        for frame in frames:
            self._gen.send(np.ascontiguousarray(frame))
        self.frames += len(frames)

    def close(self) -> None:
        self._gen.close()

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
