"""Parity with DeePMD-kit's original (TensorFlow) implementation on water models.

Reference arrays come from DeePMD-kit 3.2.0's frozen TensorFlow models: the shared one
(``../shared/reference/deepmd-kit``, ``type_one_side: false``, made by ``gen_ref.py`` there)
and two we trained (``tests/fixtures/deepmd-kit``, made by ``tools/make_reference.py``):
``type_one_side: true`` and a float32 model. We import each ``.dp`` file and must reproduce
every array to 1e-10 relative (float64) or 1e-5 (float32)."""
import pathlib

import numpy as np
from deepmd_paddle.kernels.build import load_library
import paddle
import pytest

from conftest import REFERENCE, needs_shared, kernels_for

MODEL = REFERENCE / "water_se_e2_a_two_side.dp"
FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "deepmd-kit"
CASES = {
    "two_side": (REFERENCE / "water_se_e2_a_two_side", 1e-10),
    "one_side": (FIXTURES / "water_se_e2_a_one_side", 1e-10),
    "float32": (FIXTURES / "water_se_e2_a_float32", 1e-5),
}


def _paths():
    yield False
    if load_library() is not None:
        yield True


def _case(name):
    stem, rtol = CASES[name]
    if not stem.with_suffix(".dp").exists():
        pytest.skip(f"{stem.with_suffix('.dp')} is absent (../shared missing?)")
    return str(stem.with_suffix(".dp")), np.load(str(stem) + "_ref.npz"), rtol


def _close(a, b, rtol=1e-10):
    """Relative to the array's scale: components near zero are held to rtol * max|b|."""
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("use_op", [False, True])
def test_periodic_frames(case, use_op):
    from deepmd_paddle.io import load_dp
    if use_op and True not in list(_paths()):
        pytest.skip("the C++ operator is not available")
    path, ref, rtol = _case(case)
    model = load_dp(path)
    model.set_kernels(kernels_for(use_op))
    nf = ref["coord"].shape[0]
    out = model(paddle.to_tensor(ref["coord"].astype("float64")), paddle.to_tensor(np.tile(ref["atype"], (nf, 1))),
                paddle.to_tensor(ref["cell"].astype("float64")), do_atomic_virial=True)
    for key in ["energy", "force", "virial", "atom_energy", "atom_virial"]:
        _close(out[key].numpy(), ref[key], rtol)
    d = model.descriptor_of(paddle.to_tensor(ref["coord"][:1].astype("float64")),
                            paddle.to_tensor(ref["atype"][None]), paddle.to_tensor(ref["cell"][:1].astype("float64")))
    _close(d, ref["descriptor"], rtol)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("use_op", [False, True])
def test_open_cluster(case, use_op):
    from deepmd_paddle.io import load_dp
    if use_op and True not in list(_paths()):
        pytest.skip("the C++ operator is not available")
    path, ref, rtol = _case(case)
    model = load_dp(path)
    model.set_kernels(kernels_for(use_op))
    out = model(paddle.to_tensor(ref["nopbc_coord"].astype("float64")), paddle.to_tensor(ref["nopbc_atype"][None]), None)
    for key in ["energy", "force", "virial"]:
        _close(out[key].numpy(), ref["nopbc_" + key], rtol)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("ext", [".dp", ".yaml"])
def test_round_trip_bit_identical(tmp_path, case, ext):
    from deepmd_paddle.io import load_dp, save_dp
    a = load_dp(_case(case)[0])
    save_dp(a, str(tmp_path / ("m" + ext)))
    b = load_dp(str(tmp_path / ("m" + ext)))
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert np.array_equal(sa[k].numpy(), sb[k].numpy()), k
    assert b.min_nbor_dist == a.min_nbor_dist


@needs_shared
def test_unsupported_parts_are_named(tmp_path):
    import h5py, json
    from deepmd_paddle.io import load_dp
    with h5py.File(MODEL, "r") as f:
        data = json.loads(f.attrs["json"])
        arrays = {k: f[k][()] for k in f.keys()}
    for path, value, msg in [(("descriptor", "type"), "se_e2_r", "se_e2_r"),
                             (("fitting", "dim_case_embd"), 2, "dim_case_embd"),
                             (("type",), "spin", "spin")]:
        d = json.loads(json.dumps(data))
        node = d["model"]
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value
        fn = tmp_path / "bad.dp"
        with h5py.File(fn, "w") as f:
            f.attrs["json"] = json.dumps(d)
            for k, v in arrays.items():
                f.create_dataset(k, data=v)
        with pytest.raises(NotImplementedError, match=msg):
            load_dp(str(fn))


def test_not_a_model_file(tmp_path):
    from deepmd_paddle.io import load_dp
    p = tmp_path / "x.dp"
    p.write_text("hello")
    with pytest.raises(ValueError, match="not an HDF5"):
        load_dp(str(p))
    with pytest.raises(FileNotFoundError):
        load_dp(str(tmp_path / "missing.dp"))


def test_new_model_has_deepmd_layer_structure():
    """A model built here serializes with DeePMD-kit's layer structure: a timestep (idt) only
    on layers with a skip connection, none on the output layer (DeePMD-kit ignores any other)."""
    from conftest import small_model_config
    from deepmd_paddle.model import EnergyModel

    model = EnergyModel.from_config(small_model_config(resnet_dt=True))
    d, _ = model.serialize()
    nets = d["descriptor"]["embeddings"]["networks"] + d["fitting"]["nets"]["networks"]
    for net in nets:
        dims = [net["in_dim"]] + net["neuron"] + ([1] if net["@class"] == "FittingNetwork" else [])
        for layer, (n_in, n_out) in zip(net["layers"], zip(dims, dims[1:])):
            skip = layer["resnet"] and n_out in (n_in, 2 * n_in)
            assert layer["use_timestep"] == skip, (net["@class"], n_in, n_out)
            assert (layer["@variables"]["idt"] is not None) == skip
