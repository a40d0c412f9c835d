"""A float64-trained model evaluated in float32 (``dpp freeze --precision float32``,
``deepmd_paddle.io.precision``), on DeePMD-kit's water reference model (../shared/reference).

The bound. float32 rounds to the nearest of 24 significant bits: unit roundoff u = 2^-24 ~ 6.0e-8.
Casting the weights changes each by at most u relatively; every layer adds a rounding of its
dot products (length up to 1,600 here: about sqrt(K) u each for rounding errors of random sign,
K u at worst), tanh, and the sums over neighbours; the environment matrix, the statistics and
the energy biases stay float64 and add nothing. So each output carries a relative error of a
few tens of u of its own magnitude: we assert 64 u (3.8e-6) relative to the float64 model's
magnitudes, per quantity: |dE| against sum_i |E_i - bias_i| (the nets' part of the energy: the
float64 bias, -93 and -187 eV an atom, is exact), max |dF| against max |F|, max |dV| against
max |V|. Measured on the four reference frames (192 atoms): |dE| ~ 1 u, max |dF| ~ 7 u,
max |dV| ~ 1.3 u of those scales. A difference of exactly zero would mean the cast did not happen:
it is asserted nonzero.
"""
import json
import zipfile

import numpy as np
import paddle
import pytest

from conftest import REFERENCE, WATER, make_small_model, needs_shared

U32 = 2.0 ** -24
BOUND = 64 * U32
DP = REFERENCE / "water_se_e2_a_two_side.dp"
pytestmark = needs_shared


@pytest.fixture(scope="module")
def water():
    from deepmd_paddle.io.dp_format import load_dp

    ref = np.load(REFERENCE / "water_se_e2_a_two_side_ref.npz")
    return load_dp(str(DP)), ref


def _frames(ref):
    n = len(ref["coord"])
    return {"coord": ref["coord"], "atype": np.tile(ref["atype"], (n, 1)), "box": ref["cell"], "what": "reference"}


def _outputs(model, frame) -> dict:
    t = paddle.to_tensor
    out = model(t(frame["coord"]), t(frame["atype"]), t(frame["box"]), do_atomic_virial=True)
    return {k: v.numpy() for k, v in out.items()}


def _assert_within_bound(got: dict, ref64: dict, model64, atype):
    bias = model64.fitting.bias_atom_e.numpy()[atype] + model64.out_bias.numpy()[atype]  # nf x na
    net_part = np.abs(ref64["atom_energy"][..., 0] - bias).sum(axis=1)  # nf: the nets' share of |E|
    de = np.abs(got["energy"] - ref64["energy"])[:, 0]
    df = np.abs(got["force"] - ref64["force"]).max()
    dv = np.abs(got["virial"] - ref64["virial"]).max()
    assert (de <= BOUND * net_part).all(), (de, net_part)
    assert df <= BOUND * np.abs(ref64["force"]).max(), df
    assert dv <= BOUND * np.abs(ref64["virial"]).max(), dv
    assert de.max() > 0 and df > 0 and dv > 0, "no difference at all: the model did not run in float32"


def test_cast_model_float32_error_on_water(water):
    from deepmd_paddle.io.precision import cast_error, cast_model, model_precision

    model, ref = water
    assert model_precision(model) == "float64"
    m32 = cast_model(model, "float32")
    assert model_precision(m32) == "float32" and model_precision(model) == "float64"  # the source is unchanged
    assert {str(p.dtype) for p in m32.parameters()} == {"paddle.float32"}
    for name, buf in m32.named_buffers():  # statistics and biases stay float64
        assert buf.dtype == paddle.float64, name
    for (name, p), q in zip(m32.named_parameters(), model.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy().astype(np.float32), err_msg=name)
    frame = _frames(ref)
    r64 = _outputs(model, frame)
    np.testing.assert_allclose(r64["energy"], ref["energy"], rtol=1e-10)  # the float64 model is DeePMD-kit's
    r32 = _outputs(m32, frame)
    assert all(v.dtype == np.float64 for v in r32.values())  # DeepPot's outputs are float64 in any precision
    _assert_within_bound(r32, r64, model, frame["atype"])
    check = cast_error(model, m32, frame)  # (constant weights: the fused embedding, another summation order)
    assert 0 < check["force_max"] <= BOUND * check["scale"]["force_max"]
    assert 0 < check["virial_per_atom"] <= BOUND * check["scale"]["virial_per_atom"]


def test_freeze_precision_float32(water, tmp_path, capfd):
    """``dpp freeze --precision float32`` of the float64 .dp: the file records the precision and
    the measured error (logged, and printed by ``dpp show``); jit and paddle.inference agree with
    the float32 model's dynamic evaluation to 1e-6 and with the float64 model within the bound."""
    from deepmd_paddle.cli import main
    from deepmd_paddle.infer import DeepPot
    from deepmd_paddle.io.precision import cast_model

    model, ref = water
    out = tmp_path / "w32.pb"
    assert main(["freeze", "-c", str(DP), "-o", str(out), "--precision", "float32"]) == 0
    log = capfd.readouterr().err  # the freeze log states the error
    assert "trained in float64, evaluated in float32: on a generated periodic frame" in log and "max |dF|" in log
    with zipfile.ZipFile(out) as z:
        meta = json.loads(z.read("deepmd_paddle_frozen.json"))
        safetensors_head = z.read("model.safetensors")[:20000]
    prec = meta["precision"]
    assert prec["descriptor"] == prec["fitting"] == "float32" and prec["io"] == "float64"
    assert prec["cast"]["trained"] == "float64"
    check = prec["cast"]["check"]
    assert 0 < check["force_max"] < BOUND * check["scale"]["force_max"]
    assert meta["model_def_script"]["descriptor"]["precision"] == "float32"
    assert b'"F32"' in safetensors_head  # the weights are stored cast

    frame = _frames(ref)
    r64 = _outputs(model, frame)
    m32 = cast_model(model, "float32")
    for p in m32.parameters():  # as DeepPot evaluates a model file: constant weights
        p.stop_gradient = True
    dyn = _outputs(m32, frame)
    for backend in ("jit", "predictor"):
        dp = DeepPot(str(out), backend=backend)
        assert dp.get_type_map() == ["O", "H"]
        e, f, v, ae, av = dp.eval(frame["coord"], frame["box"], ref["atype"], atomic=True)
        assert e.dtype == f.dtype == v.dtype == np.float64
        got = {"energy": e, "force": f, "virial": v, "atom_energy": ae, "atom_virial": av}
        for k in ("energy", "force", "virial", "atom_energy"):
            scale = np.abs(dyn[k]).max()
            np.testing.assert_allclose(got[k], dyn[k], rtol=1e-6, atol=1e-6 * scale, err_msg=f"{backend} {k}")
        _assert_within_bound(got, r64, model, frame["atype"])


def test_show_prints_the_cast(tmp_path, capsys):
    from deepmd_paddle.cli import main

    out = tmp_path / "w32.pb"
    assert main(["freeze", "-c", str(DP), "-o", str(out), "--precision", "float32"]) == 0
    capsys.readouterr()
    assert main(["show", str(out), "descriptor"]) == 0
    text = capsys.readouterr().out
    assert "frozen with --precision float32: trained in float64, evaluated in float32" in text
    assert "max |dF|" in text and "'precision': 'float32'" in text


def test_precision_refused_and_unchanged(tmp_path):
    from deepmd_paddle.cli import main
    from deepmd_paddle.io.frozen import freeze

    with pytest.raises(ValueError, match="precision 'float16'.*allowed: float64, float32"):
        freeze(str(DP), str(tmp_path / "x.pb"), precision="float16")
    assert not (tmp_path / "x.pb").exists()
    with pytest.raises(SystemExit):  # argparse names the allowed values
        main(["freeze", "-c", str(DP), "-o", str(tmp_path / "y.pb"), "--precision", "bfloat16"])
    meta = freeze(str(DP), str(tmp_path / "z.pb"), precision="float64")  # already float64: nothing cast
    assert "cast" not in meta["precision"] and meta["precision"]["descriptor"] == "float64"
    cast = freeze(str(DP), str(tmp_path / "c.pb"), precision="float32")["precision"]["cast"]
    for again in (None, "float32"):  # freezing the cast model again keeps its record
        assert freeze(str(tmp_path / "c.pb"), str(tmp_path / "d.pb"), precision=again)["precision"]["cast"] == cast


def test_check_frame_from_the_training_data(water, tmp_path):
    """A checkpoint's own input names its training data: the check evaluates frame 0 of it; a
    model without one gets the generated frame, no type past its sel."""
    from deepmd_paddle.io import checkpoint
    from deepmd_paddle.io.precision import in_precision, synthetic_frame

    model, _ = water
    system = str(WATER / "data_1")
    config = {"model": model.get_config(), "training": {"training_data": {"systems": [system]}}}
    checkpoint.save(str(tmp_path / "model.ckpt"), 0, model, None, config, state={})
    _, cast = in_precision(model, "float32", str(tmp_path))
    assert cast["check"]["frame"] == f"frame 0 of the training data {system} (192 atoms)"
    frame = synthetic_frame(model)
    assert frame["atype"].shape == (1, 64) and np.bincount(frame["atype"][0]).tolist() == [21, 43]
    t = paddle.to_tensor
    small = make_small_model(False, sel=(3, 5))  # few slots: the density drops until they suffice
    for m in (model, small):
        frame = synthetic_frame(m)
        with paddle.no_grad():
            _, _, nmax, mindist = m.descriptor.neighbor_list(t(frame["coord"]), t(frame["atype"]), t(frame["box"]))
        assert (nmax.numpy() <= np.asarray(m.descriptor.sel)).all() and nmax.numpy().max() > 0
    assert mindist.numpy().min() > 1.0
    _, cast = in_precision(model, "float32", str(DP))
    assert cast["check"]["frame"].startswith("a generated periodic frame (64 atoms")
