"""A frozen model is whole or refused. One file: an interrupted ``dpp freeze`` leaves the older
file as it was and nothing else; a truncated or damaged file, a tampered member, a hand-edited
description, a foreign member are refused by name. The older multi-file layout (a fixture made
by the version that wrote it) still evaluates, and its damaged or mixed files are refused."""
from __future__ import annotations

import json
import os
import pathlib
import tarfile
import zipfile

import numpy as np
import pytest

from conftest import make_small_model, random_system
from test_export import rewrite_member
from deepmd_paddle.infer import DeepPot, ModelFileError
from deepmd_paddle.io import frozen
from deepmd_paddle.io.frozen_file import MANIFEST, is_frozen_file
from deepmd_paddle.io.load import load_model

OLD = pathlib.Path(__file__).parent / "fixtures" / "frozen_v1"


@pytest.fixture(scope="module")
def one_file(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("frozen") / "a.pb")
    frozen.freeze(make_small_model(seed=1), path, portable=True)
    return path


@pytest.fixture(scope="module")
def old_prefix(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frozen_v1")
    with tarfile.open(OLD / "small.tar.xz") as tar:
        tar.extractall(folder, filter="data")
    return str(folder / "small")


def _energy(path):
    coord, atype, cell = random_system(12, kind="ortho", seed=4)
    return DeepPot(path).eval(coord, cell, atype[0])[0]


# ----------------------------------------------------------------------------- one file
def test_interrupted_freeze_keeps_the_older_model(one_file, tmp_path, monkeypatch):
    target = str(tmp_path / "model.pb")
    with open(one_file, "rb") as src, open(target, "wb") as dst:
        dst.write(src.read())
    before = _energy(target)
    save = frozen._save

    def interrupted(layer, name, prefix):
        if name == "lower":
            raise KeyboardInterrupt
        save(layer, name, prefix)

    monkeypatch.setattr(frozen, "_save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        frozen.freeze(make_small_model(seed=3), target, portable=True)
    assert os.listdir(tmp_path) == ["model.pb"]  # no stray file next to it
    np.testing.assert_array_equal(_energy(target), before)


@pytest.mark.parametrize("keep", [0.05, 0.3, 0.6, 0.9, 0.999])
def test_truncated_file_is_refused_by_name(one_file, tmp_path, keep):
    data = open(one_file, "rb").read()
    path = tmp_path / "cut.pb"
    path.write_bytes(data[: int(len(data) * keep)])
    assert is_frozen_file(path)  # recognised by its first bytes ...
    with pytest.raises(ModelFileError, match=r"cut\.pb: a deepmd_paddle frozen model, but .*damaged"):
        DeepPot(str(path))  # ... and refused as damaged
    with pytest.raises(ValueError, match=r"cut\.pb: a deepmd_paddle frozen model, but"):
        load_model(str(path))


def test_flipped_byte_is_refused(one_file, tmp_path):
    data = bytearray(open(one_file, "rb").read())
    with zipfile.ZipFile(one_file) as z:
        info = z.getinfo("model.lower.pdiparams")
    data[info.header_offset + 30 + len(info.filename) + 100] ^= 0x10  # inside the member's bytes
    path = tmp_path / "flip.pb"
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"flip\.pb: .*(CRC|model\.lower\.pdiparams)"):
        DeepPot(str(path))


def test_tampered_member_is_refused_by_its_checksum(one_file, tmp_path):
    """A member replaced with a consistent zip entry (its CRC right): the sha256 refuses it."""
    other = str(tmp_path / "b.pb")
    rewrite_member(one_file, other, "model.lower.pdiparams",
                   zipfile.ZipFile(one_file).read("model.lower.pdiparams")[:-8] + b"\0" * 8)
    with pytest.raises(ModelFileError, match=r"members \['model\.lower\.pdiparams'\] do not match the sha256"):
        DeepPot(other)
    with pytest.raises(ModelFileError, match=r"do not match the sha256"):
        load_model(other)


def test_hand_edited_description_and_foreign_member_are_refused(one_file, tmp_path):
    meta = json.loads(zipfile.ZipFile(one_file).read(MANIFEST))
    meta["sel"] = [s + 4 for s in meta["sel"]]
    edited = str(tmp_path / "edited.pb")
    rewrite_member(one_file, edited, MANIFEST, json.dumps(meta).encode())
    with pytest.raises(ModelFileError, match=r"edited\.pb: .*description .* does not match its checksum"):
        DeepPot(edited)
    extra = str(tmp_path / "extra.pb")
    rewrite_member(one_file, extra, "model.safetensors", None)
    with zipfile.ZipFile(extra, "a") as z:
        z.writestr("run_me.py", b"print('no')")
    with pytest.raises(ModelFileError, match=r"extra\.pb: .*members are .*run_me\.py"):
        DeepPot(extra)


def test_not_a_model_is_refused_by_name(tmp_path):
    for name, data in (("random.pb", os.urandom(4000)), ("zip.pb", b""), ("empty", b"")):
        path = tmp_path / name
        if name == "zip.pb":  # a zip that is not ours (e.g. a PyTorch file)
            with zipfile.ZipFile(path, "w") as z:
                z.writestr("data.pkl", b"x")
        else:
            path.write_bytes(data)
        assert not is_frozen_file(path)
        with pytest.raises(ValueError, match=name.replace(".", r"\.")):
            DeepPot(str(path))


# ----------------------------------------------------------------------------- older layout
def test_old_multi_file_model_loads(old_prefix):
    ref = np.load(OLD / "small_ref.npz")
    for path in (old_prefix, old_prefix + ".json", old_prefix + ".meta"):
        for backend in ("jit", "predictor"):
            e, f, v = DeepPot(path, backend=backend).eval(ref["coord"], ref["box"], ref["atype"][0])
            np.testing.assert_allclose(e, ref["energy"], rtol=0, atol=1e-12)
            np.testing.assert_allclose(f, ref["force"], rtol=0, atol=1e-12)
            np.testing.assert_allclose(v, ref["virial"], rtol=0, atol=1e-12)
    with pytest.raises(ModelFileError, match="older multi-file layout .* no weights"):
        load_model(old_prefix)


def test_old_layout_damaged_files_are_refused(old_prefix, tmp_path):
    copy = tmp_path / "m"
    for name in os.listdir(os.path.dirname(old_prefix)):
        (tmp_path / name.replace("small", "m")).write_bytes(open(os.path.join(os.path.dirname(old_prefix), name),
                                                                  "rb").read())
    with open(str(copy) + ".lower.pdiparams", "ab") as f:
        f.write(b"\0")  # another freeze's file, or a damaged one
    with pytest.raises(ModelFileError, match=r"m\.lower\.pdiparams.* are not the files its \.meta describes"):
        DeepPot(str(copy))
    meta = json.loads(open(str(copy) + ".meta").read())
    meta["sel"] = [s + 4 for s in meta["sel"]]
    with open(str(copy) + ".meta", "w") as f:
        json.dump(meta, f)
    with pytest.raises(ModelFileError, match="changed after `dpp freeze` wrote it"):
        DeepPot(str(copy))
