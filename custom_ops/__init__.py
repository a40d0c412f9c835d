"""C++ sources of the deepmd_paddle operators (installed as ``deepmd_paddle.custom_ops``).

Kernels (namespace ``dpp``; ``*.h`` and the ``*.cc`` that are not ``*_op.cc``) know nothing of
Paddle and are tested directly by tests/test_cpp_kernels.py. Each ``*_op.cc`` binds one kernel group
to Paddle operators (``binding.h``: what they share). ``deepmd_paddle.kernels.build`` compiles them on
first use and caches the library."""
