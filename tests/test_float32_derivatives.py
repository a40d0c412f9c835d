"""float32 models: forces and virial equal finite differences of the float32 energy, on the C++
path (the fused evaluation operator of a model with constant weights, as DeepPot and the frozen
programs run it; the Paddle layers with the C++ kernels, as training runs it) and on the
plain-Paddle twins.

The tolerance. The nets run in float32, so the energy is a staircase: every evaluation rounds
each atom's net output to about u = 2^-24 ~ 6.0e-8 of its size (the float64 energy bias adds
nothing), an error up to delta = few u * S with S = sum_i |E_i - bias_i|. Coordinates move in
float64 (central differences, five-point stencil f'(x) ~ [8 (f(x+h) - f(x-h)) - (f(x+2h) -
f(x-2h))] / 12h, truncation O(h^4)), so the difference quotient carries 1.5 delta / h of noise and
a tiny truncation error: h = 0.02 A (2 % of the closest pair) and the asserted tolerance
8 u S / h: 4.4e-4 eV/A here, 4e-3 of the largest force (measured: at most 6 % of the tolerance).
The virial is -dE/d(eps) under a homogeneous strain eps (coordinates and cell together), step
0.003 (0.02 A over the box), tolerance 8 u S / 0.003 (3e-3 eV, against |V| up to 0.64 eV). A
missing or wrong term is of the order of the forces themselves, 10^2 times the tolerance.
"""
import numpy as np
import paddle
import pytest

from conftest import make_small_model, random_system, to_tensors

U32 = 2.0 ** -24
H, H_STRAIN = 0.02, 0.003


def _has_op():
    from deepmd_paddle.kernels.build import load_library

    return load_library() is not None


PATHS = [  # (C++ kernels, constant weights) -> the embedding path that runs
    pytest.param(True, True, "fused", id="cpp-fused"),
    pytest.param(True, False, "layers", id="cpp-layers"),
    pytest.param(False, False, "layers", id="paddle-twins"),
]


def _stencil(f, h):
    return (8 * (f(h) - f(-h)) - (f(2 * h) - f(-2 * h))) / (12 * h)


@pytest.mark.parametrize("use_op,constant,path", PATHS)
@pytest.mark.parametrize("kind", ["triclinic", "open"])
def test_float32_forces_and_virial_equal_finite_differences(use_op, constant, path, kind):
    if use_op and not _has_op():
        pytest.skip("the C++ operators are not available")
    m = make_small_model(use_op, precision="float32")
    assert {str(p.dtype) for p in m.parameters()} == {"paddle.float32"}
    if constant:
        for p in m.parameters():
            p.stop_gradient = True
    assert m.descriptor.embedding_path(False) == path
    coord, atype, cell = random_system(16, 1, kind, seed=7)

    def energy(c, box=cell):
        out = m(*to_tensors(c, atype, box))
        return float(out["energy"].numpy()[0, 0])

    out = m(*to_tensors(coord, atype, cell), do_atomic_virial=True)
    force, virial = out["force"].numpy()[0], out["virial"].numpy()[0].reshape(3, 3)
    assert out["energy"].dtype == paddle.float64 and out["force"].dtype == paddle.float64
    bias = m.fitting.bias_atom_e.numpy()[atype[0]] + m.out_bias.numpy()[atype[0]]
    scale = np.abs(out["atom_energy"].numpy()[0, :, 0] - bias).sum()  # S: the nets' share of |E|
    tol_f = 8 * U32 * scale / H
    fd = np.zeros_like(force)
    for i in range(coord.shape[1]):
        for k in range(3):
            def shifted(s, i=i, k=k):
                c = coord.copy()
                c[0, i, k] += s
                return energy(c)
            fd[i, k] = -_stencil(shifted, H)
    assert np.abs(force).max() > 100 * tol_f  # forces large enough for the check to mean something
    np.testing.assert_allclose(force, fd, rtol=0, atol=tol_f)
    if cell is None:
        return
    box = cell.reshape(3, 3)
    fd_v = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            def strained(s, a=a, b=b):
                eps = np.eye(3)
                eps[a, b] += s
                return energy(coord @ eps, (box @ eps).reshape(1, 9))
            fd_v[a, b] = -_stencil(strained, H_STRAIN)
    np.testing.assert_allclose(virial, fd_v, rtol=0, atol=8 * U32 * scale / H_STRAIN)
    assert np.abs(virial).max() > 10 * 8 * U32 * scale / H_STRAIN


@pytest.mark.parametrize("use_op", [True, False])
def test_float32_force_path_equals_float64_of_the_same_weights(use_op):
    """The float32 model's forces are the float64 model's (the same weights, exactly representable)
    to float32's rounding: 64 u of the largest force (the bound of tests/test_precision_cast.py)."""
    if use_op and not _has_op():
        pytest.skip("the C++ operators are not available")
    from deepmd_paddle.io.precision import cast_model

    m32 = make_small_model(use_op, precision="float32")
    m64 = cast_model(m32, "float64")  # float32 weights are exact in float64
    coord, atype, cell = random_system(16, 2, "triclinic", seed=8)
    a = {k: v.numpy() for k, v in m32(*to_tensors(coord, atype, cell)).items()}
    b = {k: v.numpy() for k, v in m64(*to_tensors(coord, atype, cell)).items()}
    for k in ("force", "virial"):
        diff = np.abs(a[k] - b[k]).max()
        assert 0 < diff <= 64 * U32 * np.abs(b[k]).max(), k
