"""Where tensors go by default: the one place that says "CUDA when present, else the CPU".

Every entry point of parkit takes `device=None` and resolves it here, so the rule is written once
and a change of it (another accelerator, an environment override) happens in one place.
"""
from __future__ import annotations

from typing import Optional, Union

import torch

DeviceLike = Union[str, torch.device, None]


def default_device() -> torch.device:
    """CUDA when torch sees a GPU, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: Optional[DeviceLike] = None) -> torch.device:
    """`device` as a `torch.device`, or `default_device()` when it is None.

    Args:
        device: "cpu", "cuda", "cuda:1", a `torch.device`, or None.

    Returns:
        The device to use.
    """
    return default_device() if device is None else torch.device(device)
