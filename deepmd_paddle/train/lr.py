"""Exponentially decaying learning rate (DeePMD-kit's ``exp``).

    lr(t) = max(stop_lr, start_lr * r^floor(t / s))        (``smooth: true``: r^(t / s))
    r = (stop_lr / start_lr)^(s / numb_steps)              unless ``decay_rate`` is given

with ``s = decay_steps``: the rate falls in stairs every ``s`` steps and reaches ``stop_lr`` at
``numb_steps``. As in DeePMD-kit, when ``decay_steps >= numb_steps`` (and no ``decay_rate``)
``s`` becomes 100, or ``numb_steps // 100 + 1`` for runs shorter than 1,000 steps.
"""
from __future__ import annotations

import math


class LearningRateExp:
    def __init__(self, start_lr: float, stop_lr: float, numb_steps: int, decay_steps: int = 5000,
                 decay_rate: float | None = None, smooth: bool = False):
        self.start_lr, self.stop_lr, self.smooth = float(start_lr), float(stop_lr), smooth
        if decay_rate is None and decay_steps >= numb_steps:
            decay_steps = 100 if numb_steps // 10 > 100 else numb_steps // 100 + 1
        self.decay_steps = int(decay_steps)
        if decay_rate is not None:
            self.decay_rate = float(decay_rate)
        elif numb_steps == 0:
            self.decay_rate = 1.0
        else:
            self.decay_rate = math.exp(math.log(max(self.stop_lr, 1e-10) / self.start_lr)
                                       / (numb_steps / self.decay_steps))

    @classmethod
    def from_config(cls, cfg: dict, numb_steps: int) -> "LearningRateExp":
        """From the normalized ``learning_rate`` section."""
        return cls(cfg["start_lr"], cfg["stop_lr"], numb_steps, cfg["decay_steps"], cfg["decay_rate"],
                   cfg["smooth"])

    def value(self, step: int) -> float:
        exponent = step / self.decay_steps if self.smooth else step // self.decay_steps
        return max(self.stop_lr, self.start_lr * self.decay_rate ** exponent)
