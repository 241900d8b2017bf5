"""GPU telemetry through NVML (``nvidia-ml-py``); every function degrades to None without a GPU."""

from __future__ import annotations

import functools
import logging

import torch

log = logging.getLogger(__name__)


@functools.cache
def _nvml():
    """The initialised pynvml module, or None where NVML is absent (CPU machines)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound and friends: no GPU telemetry
        log.info("no GPU telemetry: %s", exc)
        return None


def _handle(device: torch.device):
    nvml = _nvml()
    if nvml is None or device.type != "cuda":
        return nvml, None
    return nvml, nvml.nvmlDeviceGetHandleByIndex(device.index or 0)


def gpu_info(device: torch.device) -> dict | None:
    """Name, memory and utilisation of ``device``, or None when it is not an NVML-visible GPU."""
    nvml, handle = _handle(device)
    if handle is None:
        return None
    try:
        mem = nvml.nvmlDeviceGetMemoryInfo(handle)
        util = nvml.nvmlDeviceGetUtilizationRates(handle)
        name = nvml.nvmlDeviceGetName(handle)
    except nvml.NVMLError as exc:
        log.warning("NVML query failed: %s", exc)
        return None
    return {"name": name.decode() if isinstance(name, bytes) else name, "memory_total_bytes": mem.total,
            "memory_used_bytes": mem.used, "utilization_percent": util.gpu}


def gpu_memory_free(device: torch.device) -> int | None:
    """Free bytes on ``device`` as the driver sees them (all processes), or None without a GPU."""
    info = gpu_info(device)
    return None if info is None else info["memory_total_bytes"] - info["memory_used_bytes"]
