"""A frozen model is whole or refused: an interrupted ``dpp freeze`` leaves the older model as it
was, program files of two freezes mixed are refused by name, and so is a hand-edited meta file."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from conftest import make_small_model, random_system
from deepmd_paddle.infer import DeepPot, ModelFileError
from deepmd_paddle.io import frozen


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frozen")
    a, b = str(folder / "a"), str(folder / "b")
    frozen.freeze(make_small_model(seed=1), a, portable=True)
    frozen.freeze(make_small_model(seed=2), b, portable=True)
    return a, b


def _energy(prefix):
    coord, atype, cell = random_system(12, kind="ortho", seed=4)
    return DeepPot(prefix).eval(coord, cell, atype[0])[0]


def _copy(prefix, dst):
    for path in frozen.program_files(prefix) + [prefix + frozen.META_SUFFIX]:
        shutil.copy(path, dst + path[len(prefix):])
    return dst


def test_interrupted_freeze_keeps_the_older_model(two_models, tmp_path, monkeypatch):
    a, _ = two_models
    target = _copy(a, str(tmp_path / "model"))
    before = _energy(target)
    save = frozen._save

    def interrupted(layer, name, prefix):
        if name == "lower":
            raise KeyboardInterrupt
        save(layer, name, prefix)

    monkeypatch.setattr(frozen, "_save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        frozen.freeze(make_small_model(seed=3), target, portable=True)
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in frozen.program_files(target)
                                                  + [target + frozen.META_SUFFIX])
    np.testing.assert_array_equal(_energy(target), before)


def test_program_files_of_two_freezes_are_refused(two_models, tmp_path):
    a, b = two_models
    target = _copy(a, str(tmp_path / "model"))
    shutil.copy(b + ".lower.pdiparams", target + ".lower.pdiparams")
    with pytest.raises(ModelFileError, match=r"model.lower.pdiparams.* are not the files its \.meta describes"):
        DeepPot(target)


def test_hand_edited_meta_is_refused(two_models, tmp_path):
    a, _ = two_models
    target = _copy(a, str(tmp_path / "model"))
    meta = json.loads(open(target + frozen.META_SUFFIX).read())
    meta["sel"] = [s + 4 for s in meta["sel"]]
    with open(target + frozen.META_SUFFIX, "w") as f:
        json.dump(meta, f)
    with pytest.raises(ModelFileError, match="changed after `dpp freeze` wrote it"):
        DeepPot(target)
