"""Pure maths shared by strategies of the FedAvg family, on flat vectors.

Every function keeps the layout's kinds apart (fedrun.flat): a server step acts on the
trainable parameters, floating buffers (BatchNorm statistics) are the plain weighted average of
the clients' values, and frozen parameters keep their value.
"""

from __future__ import annotations

import torch

from fedrun.flat import FlatSpec
from fedrun.protocol import Received


def total_weight(received: Received) -> float:
    """A, refused unless positive (the server checks it before any strategy runs)."""
    if not received.weight > 0:
        raise ValueError(f"total client weight must be > 0, got {received.weight}")
    return received.weight


def averaged_buffers(
    new: torch.Tensor, global_vec: torch.Tensor, received: Received, layout: FlatSpec
) -> torch.Tensor:
    """Write w + U/A (= sum_k a_k w_k / A) into `new`'s buffer range, whatever the server step
    did to the parameters; returns `new`."""
    b = layout.buffers
    torch.add(global_vec[b], received.update[b], alpha=1.0 / total_weight(received), out=new[b])
    return new
