"""A line-oriented child process for tests that talk to a helper program over stdin/stdout (the C# test
programs under mono, the Python ring writer): every answer is awaited with a timeout, so a hung child
fails the test instead of the suite. ``tests/`` is on ``sys.path`` under pytest."""

from __future__ import annotations

import queue
import subprocess
import threading
from pathlib import Path


class LineProcess:
    def __init__(self, args: list[str], cwd: Path, timeout: float = 30.0):
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1, cwd=cwd)
        self.timeout = timeout
        self.lines: list[str] = []  # every stdout line read so far
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def get(self, timeout: float | None = None) -> str:
        """The next stdout line; fails when none comes in time or the child has exited."""
        try:
            line = self._queue.get(timeout=timeout or self.timeout)
        except queue.Empty:
            raise AssertionError(f"{self.proc.args[:2]}: no answer within {timeout or self.timeout} s; "
                                 f"last lines: {self.lines[-40:]}") from None
        assert line is not None, f"{self.proc.args[:2]} exited: {self.lines[-40:]} {self.proc.stderr.read()}"
        self.lines.append(line)
        return line

    def has_line(self) -> bool:
        """Whether a line is waiting (``get`` would not block)."""
        return not self._queue.empty()

    def expect(self, prefix: str, timeout: float | None = None) -> str:
        """Reads lines up to the first one starting with ``prefix`` and returns it."""
        while not (line := self.get(timeout)).startswith(prefix):
            pass
        return line

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def ask(self, line: str) -> str:
        self.send(line)
        return self.get()

    def read_to_end(self) -> int:
        """Reads the remaining lines and returns the exit code."""
        while (line := self._queue.get(timeout=self.timeout)) is not None:
            self.lines.append(line)
        return self.proc.wait(timeout=self.timeout)

    def close(self) -> int:
        """Closes stdin (the child's cue to exit) and returns its exit code; kills it if it does not exit."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            return self.proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
