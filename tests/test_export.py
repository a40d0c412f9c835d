"""Frozen programs (deepmd_paddle.io.frozen) against the dynamic model and DeePMD-kit's reference:
both graphs (C++ operator, portable), loaded with paddle.jit.load and paddle.inference."""
import argparse
import atexit
import functools
import json
import os
import shutil
import tempfile
import zipfile

import numpy as np
from deepmd_paddle.kernels import TABLE, static_operators
from deepmd_paddle.kernels.build import load_library
import paddle
import pytest

from conftest import REFERENCE, make_small_model, needs_shared, random_system, small_model_config, kernels_for

from deepmd_paddle.io import frozen as export
from deepmd_paddle.io.frozen_file import MANIFEST, PROGRAM_SUFFIXES, WEIGHTS, FrozenFile, program_members

MODEL = REFERENCE / "water_se_e2_a_two_side.dp"
OUTPUTS = ["energy", "force", "virial", "atom_energy", "atom_virial"]
needs_op = pytest.mark.skipif(not (load_library() is not None), reason="the C++ operator could not be built")


@functools.lru_cache(maxsize=None)
def frozen_reference(portable: bool) -> str:
    """The shared reference model frozen once per session (also used by test_infer)."""
    folder = tempfile.mkdtemp(prefix="dpp_frozen_")
    atexit.register(shutil.rmtree, folder, True)
    path = os.path.join(folder, "water.pb")
    export.freeze(str(MODEL), path, portable=portable)
    return path


def rewrite_member(src: str, dst: str, name: str, data: bytes | None) -> None:
    """Copy the frozen model ``src`` to ``dst`` with member ``name`` replaced by ``data`` (None:
    left out), the other members as they are (a hand-edited file)."""
    with zipfile.ZipFile(src) as z:
        members = [(i.filename, z.read(i)) for i in z.infolist()]
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as z:
        for n, blob in members:
            if n != name:
                z.writestr(n, blob)
            elif data is not None:
                z.writestr(n, data)


def graphs():
    return [pytest.param(True, id="portable"), pytest.param(False, id="op", marks=needs_op)]


@pytest.fixture(scope="module")
def ref():
    return np.load(REFERENCE / "water_se_e2_a_two_side_ref.npz")


@pytest.fixture(scope="module")
def dynamic(ref):
    """The dynamic model's outputs on the reference frames and the open cluster."""
    from deepmd_paddle.io import load_dp

    model = load_dp(str(MODEL))
    nf = len(ref["coord"])
    t = paddle.to_tensor
    pbc = model(t(ref["coord"].astype("float64")), t(np.tile(ref["atype"], (nf, 1)).astype("int32")),
                t(ref["cell"].astype("float64")), do_atomic_virial=True)
    nopbc = model(t(ref["nopbc_coord"].astype("float64")), t(ref["nopbc_atype"][None].astype("int32")), None,
                  do_atomic_virial=True)
    return {k: pbc[k].numpy() for k in OUTPUTS}, {k: nopbc[k].numpy() for k in OUTPUTS}


def _inputs(ref):
    nf = len(ref["coord"])
    return ([ref["coord"].astype("float64"), np.tile(ref["atype"], (nf, 1)).astype("int32"), ref["cell"].astype("float64")],
            [ref["nopbc_coord"].astype("float64"), ref["nopbc_atype"][None].astype("int32")])


def _close(a, b, rtol=1e-10):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


def _predict(prefix, inputs, names):
    cfg = paddle.inference.Config(prefix + ".json", prefix + ".pdiparams")
    cfg.disable_onednn()  # the guard: with oneDNN, CPU MLPs give wrong numbers in Paddle 3.3
    pred = paddle.inference.create_predictor(cfg)
    for name, x in zip(names, inputs):
        pred.get_input_handle(name).copy_from_cpu(x)
    pred.run()
    return [pred.get_output_handle(n).copy_to_cpu() for n in pred.get_output_names()]


@needs_shared
@pytest.mark.parametrize("portable", graphs())
def test_meta_and_files(portable):
    path = frozen_reference(portable)
    assert os.listdir(os.path.dirname(path)) == ["water.pb"]  # one file, at exactly the path given
    assert [s for s, _, _ in export.PROGRAMS.values()] == list(PROGRAM_SUFFIXES)
    with zipfile.ZipFile(path) as z:
        assert z.namelist() == [MANIFEST] + program_members() + [WEIGHTS]
        meta = json.loads(z.read(MANIFEST))
    assert meta == FrozenFile(path).meta and meta["format"] == export.FORMAT and meta["type_map"] == ["O", "H"]
    assert meta["rcut"] == 6.0 and meta["sel"] == [46, 92] and meta["dim_descriptor"] == 320
    assert meta["precision"]["descriptor"] == "float64" and meta["uses_custom_op"] is (not portable)
    assert meta["version"] and meta["programs"]["lower"]["inputs"] == ["coord", "atype", "nlist", "shift", "centre"]


@needs_shared
@pytest.mark.parametrize("portable", graphs())
@pytest.mark.parametrize("loader", ["jit", "predictor"])
def test_frozen_equals_dynamic_and_deepmd(ref, dynamic, portable, loader):
    """1e-10 against the dynamic graph, periodic frames and open cluster, atomic outputs too."""
    pbc_in, nopbc_in = _inputs(ref)
    with FrozenFile(frozen_reference(portable)).programs() as prefix:  # the files Paddle reads
        if loader == "jit":
            layer = paddle.jit.load(prefix)  # the forward (periodic) program and .nopbc/.lower/.desc methods
            pbc = [o.numpy() for o in layer(*[paddle.to_tensor(x) for x in pbc_in])]
            nopbc = [o.numpy() for o in layer.nopbc(*[paddle.to_tensor(x) for x in nopbc_in])]
        else:
            pbc = _predict(prefix, pbc_in, ["coord", "atype", "box"])
            nopbc = _predict(prefix + ".nopbc", nopbc_in, ["coord", "atype"])
    for i, key in enumerate(OUTPUTS):
        _close(pbc[i], dynamic[0][key])
        _close(nopbc[i], dynamic[1][key])
        _close(pbc[i], ref[key])
    for i, key in enumerate(OUTPUTS[:3]):
        _close(nopbc[i], ref["nopbc_" + key])
    nmax, mindist = pbc[5], pbc[6]
    assert nmax.shape == (4, 2) and (nmax <= [46, 92]).all() and np.all(mindist > 0.8)


@needs_shared
@pytest.mark.parametrize("portable", graphs())
def test_lower_blocks_add_up_to_the_frame(ref, dynamic, portable):
    """The lower program on blocks of centre atoms: shares add up to the whole frame."""
    from deepmd_paddle.kernels.twins import neighbor_list as neighbor_list_paddle

    source = FrozenFile(frozen_reference(portable))
    coord, atype, box = (x[:1] for x in _inputs(ref)[0])
    t = paddle.to_tensor
    nlist, shift, _, _ = neighbor_list_paddle(t(coord), t(box), t(atype), 6.0, [46, 92])
    nlist, shift = nlist.numpy(), shift.numpy()
    force, virial, energy = np.zeros([1, 192, 3]), np.zeros([1, 9]), 0.0
    for start in range(0, 192, 70):
        c = np.arange(start, min(192, start + 70), dtype=np.int64)
        with source.programs([".lower"]) as prefix:
            ae, f, v, av = _predict(prefix + ".lower", [coord, atype, np.ascontiguousarray(nlist[:, c]),
                                                        np.ascontiguousarray(shift[:, c]), c],
                                    ["coord", "atype", "nlist", "shift", "centre"])
        _close(ae, dynamic[0]["atom_energy"][:1, c])
        energy, force, virial = energy + ae.sum(), force + f, virial + v
    _close(np.array([[energy]]), dynamic[0]["energy"][:1])
    _close(force, dynamic[0]["force"][:1])
    _close(virial, dynamic[0]["virial"][:1])


@needs_op
def test_freeze_cli_from_checkpoint(tmp_path):
    """`dpp freeze -c CKPT -o PREFIX` on a training checkpoint; the result evaluates frames with
    a single element present (empty type blocks in the static graph) and warns on sel overflow."""
    checkpoint = pytest.importorskip("deepmd_paddle.io.checkpoint")
    from deepmd_paddle.infer import DeepPot

    model = make_small_model(sel=(3, 5))
    (tmp_path / "ckpt").mkdir()
    checkpoint.save(str(tmp_path / "ckpt" / "model.ckpt"), 7, model, None,
                           {"model": small_model_config(sel=(3, 5))}, {})
    from deepmd_paddle.cli.model import args_freeze, run_freeze

    parser = args_freeze(argparse.ArgumentParser())
    args = parser.parse_args(["-c", str(tmp_path / "ckpt"), "-o", str(tmp_path / "frozen.json")])
    assert run_freeze(args) == 0  # one file at exactly that path, whatever its extension
    assert sorted(os.listdir(tmp_path)) == ["ckpt", "frozen.json"]
    dp = DeepPot(str(tmp_path / "frozen.json"))
    assert dp.get_sel() == [3, 5] and dp.backend == "auto"
    coord, atype, cell = random_system(24, nframes=2, kind="triclinic")
    model.set_kernels(kernels_for(True))
    with pytest.warns(UserWarning, match="beyond sel"):
        want = model(*[paddle.to_tensor(x) for x in (coord, atype, cell)], do_atomic_virial=True)
    with pytest.warns(UserWarning, match="beyond sel"):
        got = dp.eval(coord, cell, atype[0], atomic=True)
    for g, key in zip(got, OUTPUTS):
        _close(g, want[key].numpy().reshape(g.shape))
    from_checkpoint = DeepPot(str(tmp_path / "ckpt"))  # the checkpoint itself, dynamic
    assert from_checkpoint.backend == "dynamic"
    with pytest.warns(UserWarning, match="beyond sel"):
        _close(from_checkpoint.eval(coord, cell, atype[0])[1], got[1])
    only_o = np.zeros_like(atype[0])  # every atom of type 0: the type-1 block is empty
    with pytest.warns(UserWarning, match="beyond sel"):
        e, f, v = dp.eval(coord, cell, only_o)
    model.eval()
    with pytest.warns(UserWarning, match="beyond sel"):
        want = model(*[paddle.to_tensor(x) for x in (coord, np.tile(only_o, (2, 1)), cell)])
    _close(e, want["energy"].numpy())
    _close(f, want["force"].numpy())


@pytest.mark.parametrize("use_op", [False, pytest.param(True, marks=needs_op)])
def test_tracing_leaves_the_model_unchanged(use_op):
    """Tracing sets the model's kernels (static or plain Paddle) and patches the model instance
    only for its duration."""
    model = make_small_model(use_op=use_op)
    coord, atype, cell = random_system(12, kind="ortho")
    before = model(*[paddle.to_tensor(x) for x in (coord, atype, cell)])["force"].numpy()
    kernels = model.kernels
    with export._tracing(model, portable=not use_op) as seen:
        assert "neighbor_list" in model.descriptor.__dict__ and seen == {}
        assert all(p.stop_gradient for p in model.parameters())
        assert model.kernels.name == ("static" if use_op else "paddle")
        assert all(layer.kernels is model.kernels for layer in model.sublayers() if "kernels" in vars(layer))
        if use_op:
            ops_used = {TABLE[k].op for k in model.kernels.native}
            assert ops_used <= set(static_operators()) and "deepmd_env_mat" in ops_used
    assert model.kernels is kernels and not any(p.stop_gradient for p in model.parameters())
    for layer in [model] + model.sublayers():
        assert not any(isinstance(v, export._Hook) for v in vars(layer).values())
    after = model(*[paddle.to_tensor(x) for x in (coord, atype, cell)])["force"].numpy()
    np.testing.assert_array_equal(before, after)


def test_bad_sources(tmp_path, monkeypatch):
    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    with pytest.raises(ValueError, match="not a model"):
        export.freeze(str(text), str(tmp_path / "out"), portable=True)
    with pytest.raises(ValueError, match="convert-backend"):
        export.freeze(str(tmp_path / "model.pth"), str(tmp_path / "out"), portable=True)
    from deepmd_paddle.kernels import build

    monkeypatch.setattr(build, "load_library", lambda: None)
    with pytest.raises(RuntimeError, match="portable"):
        export.freeze(make_small_model(), str(tmp_path / "out"))
    assert not os.path.exists(str(tmp_path / "out"))
