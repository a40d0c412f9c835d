"""Process settings made when the package loads (deepmd_paddle/runtime.py)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from deepmd_paddle import runtime


@pytest.mark.parametrize("vendor,flags,preset,expect", [
    ("AuthenticAMD", {"avx2", "fma"}, None, "5"),       # AMD with AVX2: MKL's AVX2 kernels
    ("GenuineIntel", {"avx2", "avx512f"}, None, None),  # Intel: MKL's own choice (it would cap AVX-512)
    ("AuthenticAMD", {"sse2"}, None, None),             # no AVX2: nothing to ask for
    ("AuthenticAMD", {"avx2"}, "0", "0"),               # the user's own setting stays
])
def test_mkl_kernel_choice(monkeypatch, vendor, flags, preset, expect):
    monkeypatch.setattr(runtime, "_cpu_vendor", lambda: vendor)
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: flags)
    monkeypatch.delenv("MKL_DEBUG_CPU_TYPE", raising=False)
    if preset is not None:
        monkeypatch.setenv("MKL_DEBUG_CPU_TYPE", preset)
    assert runtime.mkl_on_amd() == (preset is None and expect is not None)
    assert os.environ.get("MKL_DEBUG_CPU_TYPE") == expect


def test_the_package_sets_it_on_this_machine_when_it_is_amd():
    code = "import os, deepmd_paddle; print(os.environ.get('MKL_DEBUG_CPU_TYPE'))"
    env = {k: v for k, v in os.environ.items() if k != "MKL_DEBUG_CPU_TYPE"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    amd = runtime._cpu_vendor() == "AuthenticAMD" and "avx2" in runtime._cpu_flags()
    assert out.stdout.split()[-1] == ("5" if amd else "None")
