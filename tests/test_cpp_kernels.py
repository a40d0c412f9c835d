"""The C++ kernels of custom_ops/ tested directly, without Paddle.

tests/kernels/*.cc is one program, compiled here with the system C++ compiler against the
kernel headers and sources (never the bindings); `kernel_tests GROUP` runs one group of checks.
Each group holds one kernel against a naive reference and, where there are derivatives, against
finite differences: the neighbour search step by step and whole against an O(N^2) search over
periodic images (orthorhombic, triclinic, a box that needs several images, open boundaries),
the env mat against its formula, the fused embedding against a plain MLP loop, the tables
against direct polynomial evaluation, the force product and r_ij against naive loops, tanh and
bias_tanh against the C library. The binary is cached by the hash of its sources and flags.
Skips with the reason when there is no C++ compiler.
"""
import concurrent.futures
import hashlib
import os
import re
import shutil
import subprocess

import pytest

from conftest import REPO

OPS = REPO / "custom_ops"
TESTS = REPO / "tests" / "kernels"
KERNEL_SOURCES = ("nlist_grid.cc", "nlist_search.cc", "neighbor_list.cc", "env_mat.cc")
# the flags deepmd_paddle/ops.py compiles the kernels with (-O2 rather than -O3: half the compile time)
FLAGS = ["-std=c++17", "-O2", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-Wno-psabi"]
GROUPS = ("neighbor_list", "nlist_steps", "env_mat", "env_mat_mask", "build_rij", "prod_force", "activation",
          "embedding", "tabulate", "descriptor")


def _compiler():
    for name in (os.environ.get("CXX"), "c++", "g++"):
        if name and shutil.which(name.split()[0]):
            return name.split()
    return None


@pytest.fixture(scope="module")
def binary(request, tmp_path_factory):
    cxx = _compiler()
    if cxx is None:
        pytest.skip("no C++ compiler found (looked for $CXX, c++, g++)")
    sources = sorted(TESTS.glob("*.cc")) + [OPS / n for n in KERNEL_SOURCES]
    h = hashlib.sha256(repr((cxx, FLAGS)).encode())
    for path in sources + sorted(TESTS.glob("*.h")) + sorted(OPS.glob("*.h")):
        h.update(path.name.encode() + path.read_bytes())
    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir("kernel_tests") if cache is not None else tmp_path_factory.mktemp("kernel_tests")
    exe = folder / f"kernel_tests-{h.hexdigest()[:16]}"
    if exe.exists():
        return exe
    work = tmp_path_factory.mktemp("kernel_build")

    def compile_one(src):
        obj = work / (src.stem + ("_k" if src.parent == OPS else "") + ".o")
        r = subprocess.run(cxx + FLAGS + [f"-I{OPS}", f"-I{TESTS}", "-c", str(src), "-o", str(obj)],
                           capture_output=True, text=True)
        return obj, r

    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        results = list(pool.map(compile_one, sources))
    for (obj, r), src in zip(results, sources):
        assert r.returncode == 0, f"compiling {src.name} failed:\n{r.stderr[-4000:]}"
    tmp = work / "kernel_tests"
    r = subprocess.run(cxx + ["-fopenmp"] + [str(o) for o, _ in results] + ["-o", str(tmp)],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"linking the kernel tests failed:\n{r.stderr[-4000:]}"
    os.replace(tmp, exe)  # a half-written binary is never found
    return exe


def _run(exe, *groups):
    env = dict(os.environ, OMP_NUM_THREADS="2", OMP_WAIT_POLICY="passive")
    return subprocess.run([str(exe), *groups], capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("group", GROUPS)
def test_kernel(binary, group):
    r = _run(binary, group)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(rf"^{group}: (\d+) checks, 0 failed$", r.stdout, re.M)
    assert m and int(m.group(1)) > 0, r.stdout


def test_every_group_runs(binary):
    """The list above names every group the program holds (a new group is not forgotten)."""
    r = _run(binary)
    assert r.returncode == 0, r.stdout + r.stderr
    assert set(re.findall(r"^(\w+): \d+ checks", r.stdout, re.M)) == set(GROUPS)


def test_a_failed_check_is_reported(binary):
    r = _run(binary, "_harness")
    assert r.returncode == 2 and r.stdout.count("FAIL") == 2, r.stdout


def test_kernels_know_nothing_of_paddle():
    """Only the bindings (*_op.cc, *_op.h, binding.h) see Paddle; every file is in namespace dpp
    (kernels) or dpp_op (binding helpers)."""
    for path in sorted(OPS.glob("*.[ch]*")):
        text = path.read_text()
        binding = path.name.endswith(("_op.cc", "_op.h")) or path.name == "binding.h"
        if not binding:
            assert not re.search(r'#include\s*"paddle|paddle::|PD_', text), path.name
        names = set(re.findall(r"^namespace (\w+) \{", text, re.M))
        assert names <= {"dpp", "dpp_op"}, (path.name, names)
