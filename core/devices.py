"""Which device trains and encodes, and its name as a run records it."""
from __future__ import annotations

import platform

import torch

from .errors import UserError


def pick_device(name: str = "auto") -> torch.device:
    """auto: CUDA, then Apple MPS, then CPU. An explicit device that is missing is a user error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device cuda was asked for, but no CUDA GPU is available here; use --device auto or cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError("device mps was asked for, but Apple MPS is not available here")
    return dev


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return "Apple MPS" if dev.type == "mps" else f"CPU ({platform.processor() or platform.machine()})"
