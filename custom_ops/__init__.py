"""C++ sources of the deepmd_paddle operators (installed as ``deepmd_paddle.custom_ops``).

The kernels (``*.h``/``*.cc`` other than ``ops.cc``) know nothing of Paddle; ``ops.cc`` is the
thin binding. ``deepmd_paddle.kernels.build`` compiles them on first use and caches the library."""
