"""deepmd_paddle: the Deep Potential (DeepPot-SE, ``se_e2_a``) on PaddlePaddle.

Pipeline, one folder a stage: ``data`` -> ``model`` (descriptor, fitting, energy model) ->
``train`` (loss, learning rate, trainer) -> ``export`` -> ``infer``.
"""
__version__ = "0.1.0"

from .utils.runtime import quiet_framework as _quiet_framework
from .utils.runtime import quiet_openmp as _quiet_openmp
from .utils.runtime import tune_allocator as _tune_allocator

_tune_allocator()
_quiet_openmp()
_quiet_framework()


def __getattr__(name):  # DeepPot loads Paddle: import it only when asked for
    if name == "DeepPot":
        from .infer import DeepPot

        return DeepPot
    raise AttributeError(f"module 'deepmd_paddle' has no attribute {name!r}")
