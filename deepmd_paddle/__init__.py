"""deepmd_paddle: the Deep Potential (DeepPot-SE, ``se_e2_a``) on PaddlePaddle.

One folder a stage, imports pointing one way: ``kernels`` (C++ operators and their plain-Paddle
twins) <- ``model`` (descriptor, fitting, energy model, tables) <- ``io`` (checkpoints, .dp,
frozen programs) <- ``train``, ``infer`` <- ``cli``; ``data`` reads systems and takes statistics
with the kernels; ``config`` is the input schema.
"""
from ._version import __version__  # noqa: F401

from .runtime import mkl_on_amd as _mkl_on_amd
from .runtime import quiet_framework as _quiet_framework
from .runtime import quiet_openmp as _quiet_openmp
from .runtime import tune_allocator as _tune_allocator

_tune_allocator()
_quiet_openmp()
_mkl_on_amd()
_quiet_framework()


def __getattr__(name):  # DeepPot loads Paddle: import it only when asked for
    if name == "DeepPot":
        from .infer import DeepPot

        return DeepPot
    raise AttributeError(f"module 'deepmd_paddle' has no attribute {name!r}")
