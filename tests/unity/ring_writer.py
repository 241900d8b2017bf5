"""A FrameRing writer in its own process, driven line by line over stdin (tests/test_unity_ring.py).

    python tests/unity/ring_writer.py SLOT_COUNT SLOT_PAYLOAD_BYTES [DIRECTORY]

prints ``layout PATH SLOT_COUNT SLOT_BYTES HEADER_BYTES SLOT_HEADER_BYTES``, then answers:

    write SLOT SEQ N H W C          -> "wrote OFFSET LENGTH FNV1A64HEX"  (pixels = chunk(SEQ, (N,H,W,C)))
    begin SLOT SEQ                  -> "begun"   (torn write: seq_begin set, seq_end not)
    spin START COUNT N H W C        -> "spun"    writes chunks START..START+COUNT-1 into slot seq % SLOT_COUNT
    quit                            -> "bye"     (closes and removes the ring file)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def chunk(seq: int, shape: tuple[int, ...]) -> np.ndarray:
    """The deterministic pixels of chunk ``seq`` (different for every sequence)."""
    return np.random.default_rng(seq).integers(0, 256, size=shape, dtype=np.uint8)


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def main(argv: list[str]) -> int:
    from service.ring import FrameRing

    slot_count, payload = int(argv[1]), int(argv[2])
    directory = Path(argv[3]) if len(argv) > 3 else None
    ring = FrameRing("unity-test", slot_count, payload, directory=directory)
    try:
        lay = ring.layout()
        print("layout", lay.path, lay.slot_count, lay.slot_bytes, lay.header_bytes, lay.slot_header_bytes, flush=True)
        for line in sys.stdin:
            w = line.split()
            if not w:
                continue
            if w[0] == "write":
                slot, seq, *shape = (int(x) for x in w[1:])
                data = chunk(seq, tuple(shape))
                offset, length = ring.write(slot, seq, data)
                print("wrote", offset, length, f"{fnv1a64(data.tobytes()):016x}", flush=True)
            elif w[0] == "begin":
                ring._begin_only(int(w[1]), int(w[2]))
                print("begun", flush=True)
            elif w[0] == "spin":
                start, count, *shape = (int(x) for x in w[1:])
                shape = tuple(shape)
                for seq in range(start, start + count):
                    ring.write(seq % slot_count, seq, chunk(seq, shape))
                print("spun", flush=True)
            elif w[0] == "quit":
                break
            else:
                print("unknown command", w[0], flush=True)
    finally:
        ring.close()
    print("bye", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
