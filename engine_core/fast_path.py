"""Which speed levers an engine pulls: compiled blocks, CUDA graphs, an overlapped decoder.

Every lever has an eager twin that computes the same maths (``FastPath.eager()``); the CPU tests
compare them. Defaults follow the device: all levers on CUDA, eager on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .transformer import CausalWanTransformer

# Compiled block variants: denoise/clean pass x kv-only last layer x the first (static) and the
# dynamic key length. A few more than that leaves room without letting a bug recompile forever.
_RECOMPILE_LIMIT = 16


@dataclass(frozen=True)
class FastPath:
    compile: bool = False  # torch.compile each DiT block (regional: one graph serves all 30 blocks)
    cuda_graphs: bool = False  # replay each chunk position's forwards as CUDA graphs (CUDA only)
    overlap_decode: bool = False  # decode on a side CUDA stream while the next chunk denoises
    compile_backend: str = "inductor"  # tests use "aot_eager": the same tracing without a C++ toolchain

    @classmethod
    def eager(cls) -> FastPath:
        return cls()

    @classmethod
    def for_device(cls, device: torch.device) -> FastPath:
        cuda = device.type == "cuda"
        return cls(compile=cuda, cuda_graphs=cuda, overlap_decode=cuda)

    def check(self, device: torch.device) -> None:
        if self.cuda_graphs and device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, not {device}; use FastPath(cuda_graphs=False)")

    def describe(self) -> str:
        levers = [name for name, on in (("compile", self.compile), ("cuda_graphs", self.cuda_graphs),
                                        ("overlap_decode", self.overlap_decode)) if on]
        return "+".join(levers) or "eager"


def compile_blocks(dit: CausalWanTransformer, backend: str = "inductor") -> None:
    """Regional compilation: each block's ``__call__`` is compiled; ``block.forward`` stays eager.

    Blocks take no layer index or offsets (only their own cache prefix views), so after the first
    chunk position the key length goes dynamic and one graph covers all positions and layers.
    """
    import torch._dynamo

    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, _RECOMPILE_LIMIT)
    for block in dit.blocks:
        block.compile(backend=backend, dynamic=None)
