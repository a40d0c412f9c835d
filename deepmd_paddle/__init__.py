"""deepmd_paddle: the Deep Potential (DeepPot-SE, ``se_e2_a``) on PaddlePaddle.

Pipeline, one folder a stage: ``data`` -> ``model`` (descriptor, fitting, energy model) ->
``train`` (loss, learning rate, trainer) -> ``export`` -> ``infer``.
"""
__version__ = "0.1.0"

from .utils.runtime import tune_allocator as _tune_allocator

_tune_allocator()
