"""Parity with DeePMD-kit's original (TensorFlow) implementation on its own water model.

The reference arrays were produced by DeePMD-kit 3.2.0 (``../shared/reference/deepmd-kit``,
script ``gen_ref.py`` there); we import its ``.dp`` file and must reproduce them to 1e-10."""
import numpy as np
import paddle
import pytest

from conftest import REFERENCE, needs_shared

pytestmark = needs_shared
MODEL = REFERENCE / "water_se_e2_a_two_side.dp"


def _paths():
    from deepmd_paddle import ops
    yield False
    if ops.load_op() is not None:
        yield True


@pytest.fixture(scope="module")
def ref():
    return np.load(REFERENCE / "water_se_e2_a_two_side_ref.npz")


def _close(a, b, rtol=1e-10):
    """Relative to the array's scale: components near zero are held to rtol * max|b|."""
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


@pytest.mark.parametrize("use_op", [False, True])
def test_periodic_frames(ref, use_op):
    from deepmd_paddle.interop import load_dp
    if use_op and True not in list(_paths()):
        pytest.skip("the C++ operator is not available")
    model = load_dp(str(MODEL))
    model.set_use_op(use_op)
    nf = ref["coord"].shape[0]
    out = model(paddle.to_tensor(ref["coord"].astype("float64")), paddle.to_tensor(np.tile(ref["atype"], (nf, 1))),
                paddle.to_tensor(ref["cell"].astype("float64")), do_atomic_virial=True)
    for key in ["energy", "force", "virial", "atom_energy", "atom_virial"]:
        _close(out[key].numpy(), ref[key])
    d = model.descriptor_of(paddle.to_tensor(ref["coord"][:1].astype("float64")),
                            paddle.to_tensor(ref["atype"][None]), paddle.to_tensor(ref["cell"][:1].astype("float64")))
    _close(d, ref["descriptor"])


@pytest.mark.parametrize("use_op", [False, True])
def test_open_cluster(ref, use_op):
    from deepmd_paddle.interop import load_dp
    if use_op and True not in list(_paths()):
        pytest.skip("the C++ operator is not available")
    model = load_dp(str(MODEL))
    model.set_use_op(use_op)
    out = model(paddle.to_tensor(ref["nopbc_coord"].astype("float64")), paddle.to_tensor(ref["nopbc_atype"][None]), None)
    for key in ["energy", "force", "virial"]:
        _close(out[key].numpy(), ref["nopbc_" + key])


@pytest.mark.parametrize("ext", [".dp", ".yaml"])
def test_round_trip_bit_identical(tmp_path, ext):
    from deepmd_paddle.interop import load_dp, save_dp
    a = load_dp(str(MODEL))
    save_dp(a, str(tmp_path / ("m" + ext)))
    b = load_dp(str(tmp_path / ("m" + ext)))
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert np.array_equal(sa[k].numpy(), sb[k].numpy()), k
    assert b.min_nbor_dist == a.min_nbor_dist


def test_unsupported_parts_are_named(tmp_path):
    import h5py, json
    from deepmd_paddle.interop import load_dp
    with h5py.File(MODEL, "r") as f:
        data = json.loads(f.attrs["json"])
        arrays = {k: f[k][()] for k in f.keys()}
    for path, value, msg in [(("descriptor", "type"), "se_e2_r", "se_e2_r"),
                             (("fitting", "numb_fparam"), 2, "numb_fparam"),
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
    from deepmd_paddle.interop import load_dp
    p = tmp_path / "x.dp"
    p.write_text("hello")
    with pytest.raises(ValueError, match="not an HDF5"):
        load_dp(str(p))
    with pytest.raises(FileNotFoundError):
        load_dp(str(tmp_path / "missing.dp"))
