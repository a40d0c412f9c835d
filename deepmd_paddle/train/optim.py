"""DeePMD-kit's Adam over the trainable parameters.

Paddle's Adam keeps its learning rate as a tensor of its first parameter's dtype and its kernel
reads it in each parameter's own dtype, so one Adam cannot update float32 and float64 parameters
together (a descriptor and a fitting net of different ``precision``). ``adam`` gives one Adam per
dtype then (``PerDtypeAdam``), each with Paddle's merged kernel where the dtype allows it
(float32: one kernel over all tensors, 9 instead of 32 ms of CPU a step for the water model's 44
tensors); the slots keep their names, so checkpoints do not depend on the grouping.
"""
from __future__ import annotations

import paddle


def _adam(lr: float, params: list) -> paddle.optimizer.Adam:
    merged = bool(params) and all(p.dtype == paddle.float32 for p in params)
    return paddle.optimizer.Adam(learning_rate=lr, parameters=params, use_multi_tensor=merged)


class PerDtypeAdam:
    """One Adam per parameter dtype behind the calls the trainer and the checkpoints make."""

    def __init__(self, lr: float, groups: list):
        self.opts = [_adam(lr, ps) for ps in groups]

    def set_lr(self, lr: float) -> None:
        for o in self.opts:
            o.set_lr(lr)

    def step(self) -> None:
        for o in self.opts:
            o.step()

    def clear_grad(self) -> None:
        for o in self.opts:
            o.clear_grad()

    def state_dict(self) -> dict:
        out = {}
        for o in self.opts:
            out.update(o.state_dict())
        return out

    def set_state_dict(self, state: dict) -> None:
        for o in self.opts:  # (each takes the slots of its own parameters)
            o.set_state_dict(state)


def adam(lr: float, params: list):
    """Adam over ``params`` at learning rate ``lr``: Paddle's, or one per dtype when they differ."""
    groups = {}
    for p in params:
        groups.setdefault(p.dtype, []).append(p)
    return _adam(lr, params) if len(groups) <= 1 else PerDtypeAdam(lr, list(groups.values()))
