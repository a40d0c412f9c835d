"""The input file against DeePMD-kit 3.2: its schema (every key, alias, default), its example
inputs and their normalised forms, the refusal of what is not built (one message for all), the
checks of meaning, older layouts, type_map from the data, and ``dpp doc-train-input``.

The reference files come from DeePMD-kit itself: tests/fixtures/deepmd_examples (README there)."""
import copy
import json
import math
import os
import re

import numpy as np
import pytest

from conftest import REPO, WATER, needs_shared
from deepmd_paddle import config
from deepmd_paddle.config import ConfigError, unsupported
from deepmd_paddle.data.demo import write_system

EXAMPLES = REPO / "tests" / "fixtures" / "deepmd_examples"
# example -> the keys of its refusal (none: it loads); the work plan of the features still missing
OUTCOME = {
    "water_se_e2_a.json": [],
    "nopbc.json": [],
    "v0_water_smth.json": [],
    "v1_water_se_a.json": [],
    "fparam.json": [],
    "lmdb_input.json": [],
    "fparam_aparam.json": [],
    "water_dplr_ener.json": [],
    "water_se_e2_a_mixed_prec.json": [],
    "water_se_e2_a_tebd.json": [],
    "water_se_e2_a_torch.json": [],
    "water_se_e2_a_torch_num_epoch.json": [],
}
# where our schema knowingly differs from DeePMD-kit 3.2's (path, field): why
SCHEMA_DIFFERENCES = {
    ("learning_rate/start_lr", "default"): "1e-3 kept: an input without learning_rate still trains",
    ("learning_rate/start_lr", "optional"): "same",
    ("model/type_embedding", "default"): "null instead of absent: the same",
    ("training/seed", "default"): "null instead of absent: the same",
    ("training/training_data", "default"): "required here (single-task training needs data)",
    ("training/training_data", "optional"): "same",
    ("training/training_data/systems", "default"): "required in both; DeePMD-kit's '.' is never used",
    ("training/validation_data/systems", "default"): "same",
    **{(f"model[standard]/{p}/seed", "default"): "null instead of absent: the same"
       for p in ("descriptor[se_e2_a]", "descriptor[se_a_ebd_v2]", "fitting_net[ener]")},
}


def _tiny_system(root, names):
    path = root / "_".join(names)
    if not path.exists():
        rng = np.random.default_rng(0)
        n = 2 * len(names)
        write_system(str(path), {"coord": rng.uniform(0, 6, (2, 3 * n)), "box": np.tile(np.eye(3).ravel() * 6, (2, 1)),
                                 "energy": np.zeros(2)}, np.arange(n) % len(names), list(names))
    return str(path)


def _retarget(raw, system):
    """The example with every system list pointed at ``system``."""
    raw = copy.deepcopy(raw)
    if "model" not in raw:
        raw["systems"] = [system]
        return raw
    tr = raw["training"]
    if "systems" in tr:
        tr["systems"] = [system]
    for key in ("training_data", "validation_data"):
        if tr.get(key):
            tr[key]["systems"] = [system]
    return raw


def _example(name, tmp_path, folder=EXAMPLES):
    """The example on a small system of its elements (O, H where it names none; Be for fparam)."""
    with open(folder / name) as f:
        raw = json.load(f)
    names = raw.get("model", {}).get("type_map") or (["Be"] if "fparam" in name else ["O", "H"])
    return _retarget(raw, _tiny_system(tmp_path, names))


def _walk(arg, path, out):
    """Key path -> (default, aliases, optional), as tests/fixtures/deepmd_examples/make_fixtures.py."""
    for name, sub in arg.sub_fields.items():
        p = f"{path}/{name}" if path else name
        default = "<none>" if type(sub.default).__name__ == "_Flags" else sub.default
        out[p] = {"default": default, "alias": sorted(sub.alias), "optional": bool(sub.optional)}
        _walk(sub, p, out)
    for variant in arg.sub_variants.values():
        for tag, choice in variant.choice_dict.items():
            aliases = sorted(a for a, t in variant.choice_alias.items() if t == tag)
            out[f"{path}[{tag}]"] = {"default": "<variant>", "alias": aliases, "optional": bool(variant.optional)}
            _walk(choice, f"{path}[{tag}]", out)


# ----------------------------------------------------------------------------- the schema
def test_every_deepmd_kit_key_is_accepted_with_its_default_and_aliases():
    with open(EXAMPLES / "deepmd_keys.json") as f:
        ref = json.load(f)["keys"]
    ours = {}
    _walk(config.input_schema(), "", ours)
    assert len(ref) > 200
    missing = sorted(set(ref) - set(ours))
    assert not missing, f"DeePMD-kit keys the schema lacks: {missing}"
    diff = {(p, k) for p, v in ref.items() for k in v if ours[p][k] != v[k]}
    assert diff == set(SCHEMA_DIFFERENCES), sorted(diff ^ set(SCHEMA_DIFFERENCES))


def test_the_unsupported_table_holds_deepmd_kit_defaults():
    ours = {}
    _walk(config.input_schema(), "", ours)
    flat = {}
    for path, v in ours.items():  # paths without the variant tags: model[standard]/descriptor[se_e2_a]/x -> ...
        flat.setdefault("/".join(part.split("[")[0] for part in path.split("/")), v)
    for path, default in unsupported.UNSUPPORTED.items():
        assert path in flat, path
        want = "<none>" if default is unsupported.ABSENT else default
        if path.startswith("model/descriptor/type_embedding/"):
            want = default  # our place of DeePMD-kit's model-level section, same keys
        assert flat[path]["default"] == want, path


# ----------------------------------------------------------------------------- DeePMD-kit's examples
@pytest.mark.parametrize("name", sorted(OUTCOME))
@pytest.mark.parametrize("form", ["as written", "normalised by DeePMD-kit"])
def test_deepmd_kit_examples_load_or_name_what_is_missing(tmp_path, name, form):
    raw = _example(name, tmp_path, EXAMPLES if form == "as written" else EXAMPLES / "normalized")
    expected = OUTCOME[name]
    if not expected:
        cfg = config.normalize(raw)
        assert cfg["training"]["training_data"]["systems"] == [_tiny_system(tmp_path, cfg["model"]["type_map"])]
        data_types = ["Be"] if "fparam" in name else ["O", "H"]  # v0, fparam examples: from the data
        assert cfg["model"]["type_map"] == (raw.get("model", {}).get("type_map") or data_types)
        assert config.normalize(copy.deepcopy(cfg)) == cfg  # a normalised input is a fixed point
        return
    with pytest.raises(ConfigError) as err:
        config.normalize(raw)
    lines = [ln.strip() for ln in str(err.value).splitlines()[1:]]
    assert [ln.split(" = ")[0] for ln in lines] == expected, str(err.value)
    assert "not supported by deepmd_paddle" in str(err.value)


def _leaves(value, path=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, f"{path}/{k}")
    else:
        yield path.strip("/"), value


@pytest.mark.parametrize("name", [n for n, keys in OUTCOME.items() if not keys])
def test_normalised_values_equal_deepmd_kits(tmp_path, name):
    """Every value deepmd_paddle keeps equals the one DeePMD-kit's own normalisation gives
    (conversions of older layouts included)."""
    cfg = config.normalize(_example(name, tmp_path))
    with open(EXAMPLES / "normalized" / name) as f:
        ref = dict(_leaves(json.load(f)))
    compared = 0
    for path, value in _leaves(cfg):
        if path not in ref or path.endswith("/systems"):
            continue
        want = ref[path]
        if path in ("training/stat_file", "model/modifier/model_name"):  # made absolute, relative to the input file's folder (as the systems)
            assert os.path.isabs(value) and value.endswith(want.lstrip("./")), value
            continue
        if path.endswith("precision") and want == "default":
            want = "float64"
        if path == "learning_rate/stop_lr" and want is None:
            want = 5e-8
        assert value == pytest.approx(want, rel=1e-12) if isinstance(want, float) else value == want, path
        compared += 1
    assert compared > 40


@needs_shared
def test_water_example_trains_unchanged_but_the_step_count(tmp_path):
    from deepmd_paddle.train.trainer import Trainer

    with open(EXAMPLES / "water_se_e2_a.json") as f:
        raw = json.load(f)
    tr = raw["training"]
    tr["training_data"]["systems"] = [str(WATER / f"data_{i}") for i in range(3)]
    tr["validation_data"]["systems"] = [str(WATER / "data_3")]
    tr.update(numb_steps=2, disp_freq=1, save_freq=2)
    result = Trainer(config.normalize(raw), str(tmp_path)).run()
    assert result["step"] == 2 and os.path.isfile(result["checkpoint"])
    curve = np.loadtxt(tmp_path / "lcurve.out", ndmin=2)
    assert curve.shape[0] == 3 and np.isfinite(curve).all()


# ----------------------------------------------------------------------------- refusals
def _base(tmp_path, **sections):
    raw = {"model": {"type_map": ["Cu", "Ag"], "descriptor": {"type": "se_e2_a", "sel": [8, 8], "rcut": 4.0,
                                                               "neuron": [4, 8], "axis_neuron": 4},
                     "fitting_net": {"neuron": [8]}},
           "training": {"training_data": {"systems": [_tiny_system(tmp_path, ["Cu", "Ag"])]}, "numb_steps": 1}}
    for path, value in sections.items():
        *parents, key = path.split("__")
        node = raw
        for p in parents:
            node = node.setdefault(p, {})
        node[key] = value
    return raw


def test_every_unsupported_setting_is_named_in_one_message(tmp_path):
    raw = _base(tmp_path, model__fitting_net__dim_case_embd=2, model__pair_exclude_types=[[0, 1]],
                model__descriptor__activation_function="silut", model__fitting_net__precision="bfloat16",
                model__spin={"use_spin": [True, False]}, loss__start_pref_gf=1.0,
                learning_rate__type="cosine",
                training__stat_file_mode="read", training__training_data__batch_size="mixed:64",
                optimizer={"type": "Adam", "weight_decay": 0.01},
                nvnmd=dict(NVNMD, enable=True))
    with pytest.raises(ConfigError) as err:
        config.normalize(raw)
    msg = str(err.value)
    for key, asked in [("model/fitting_net/dim_case_embd", "2"), ("model/pair_exclude_types", "[[0, 1]]"),
                       ("model/descriptor/activation_function", "'silut'"),
                       ("model/fitting_net/precision", "'bfloat16'"), ("model/spin", "{'use_spin'"),
                       ("loss/start_pref_gf", "1.0"), ("learning_rate/type", "'cosine'"),
                       ("training/stat_file_mode", "'read'"),
                       ("training/training_data/batch_size", "'mixed:64'"),
                       ("optimizer/weight_decay", "0.01"), ("nvnmd", "{'version': 0")]:
        assert f"  {key} = {asked}" in msg, key
    assert msg.startswith("11 setting(s) of this input are not supported by deepmd_paddle")


NVNMD = {"version": 0, "max_nnei": 128, "net_size": 128, "map_file": "none", "config_file": "none",
         "weight_file": "none", "enable": False, "restore_descriptor": False, "restore_fitting_net": False,
         "quantize_descriptor": False, "quantize_fitting_net": False}


def test_unsupported_keys_at_their_defaults_are_accepted_and_dropped(tmp_path):
    raw = _base(tmp_path, model__fitting_net__dim_case_embd=0, model__fitting_net__trainable=[True, True],
                model__fitting_net__atom_ener=[None, None], model__descriptor__trainable=True,
                loss__relative_f=None, training__time_training=True, training__gradient_max_norm=0.0,
                nvnmd=NVNMD)
    cfg = config.normalize(raw)
    assert "dim_case_embd" not in cfg["model"]["fitting_net"]
    assert cfg["model"]["descriptor"]["trainable"] is True  # (built: kept, like atom_ener)
    assert "nvnmd" not in cfg and "optimizer" not in cfg and cfg["loss"]["relative_f"] is None
    assert set(cfg["loss"]) == {"type", "start_pref_e", "limit_pref_e", "start_pref_f", "limit_pref_f",
                                "start_pref_v", "limit_pref_v", "intensive_ener_virial", "start_pref_ae",
                                "limit_pref_ae", "start_pref_pf", "limit_pref_pf", "relative_f",
                                "enable_atom_ener_coeff"}


@pytest.mark.parametrize("section, tag", [("model/descriptor", "se_atten"), ("model/descriptor", "se_a_mask"),
                                          ("model/descriptor", "dpa3"), ("model/fitting_net", "dipole"),
                                          ("loss", "tensor"), ("model", "frozen"), ("optimizer", "AdamW")])
def test_other_deepmd_kit_types_are_refused_by_name(tmp_path, section, tag):
    raw = _base(tmp_path)
    node = raw
    for part in section.split("/"):
        node = node.setdefault(part, {})
    node["type"] = tag
    with pytest.raises(ConfigError, match=f"{section}/type: '{tag}' is a DeePMD-kit type that deepmd_paddle does "
                                          "not support; supported: "):
        config.normalize(raw)
    with pytest.raises(ConfigError, match="multi-task"):
        config.normalize({**raw, "model": {"model_dict": {}}})


# ----------------------------------------------------------------------------- meaning
@pytest.mark.parametrize("sections, message", [
    ({"learning_rate__start_lr": math.nan}, r"learning_rate/start_lr: got nan; numbers must be finite"),
    ({"loss__start_pref_f": math.inf}, r"loss/start_pref_f: got inf; numbers must be finite"),
    ({"model__descriptor__rcut": -math.inf}, r"model/descriptor/rcut: got -inf"),
    ({"model__fitting_net__neuron": [0]}, r"model/fitting_net/neuron: got \[0\]; need at least one width"),
    ({"model__descriptor__neuron": [4, -2]}, r"model/descriptor/neuron: got \[4, -2\]"),
    ({"model__descriptor__type_embedding": {"neuron": [0]}}, r"type_embedding/neuron: need at least one positive"),
    ({"model__descriptor__axis_neuron": 9}, r"axis_neuron: got 9; need 1 <= axis_neuron <= .* \(8\)"),
    ({"model__descriptor__sel": [0, 0]}, r"model/descriptor/sel: got \[0, 0\]"),
    ({"loss": {"start_pref_e": 0, "limit_pref_e": 0, "start_pref_f": 0, "limit_pref_f": 0}},
     r"loss: every prefactor is 0"),
    ({"loss__limit_pref_f": -1}, r"loss: prefactors must be >= 0, got limit_pref_f=-1"),
    ({"training__numb_steps": True}, r"training/numb_steps: got true; a boolean is not allowed here \(allowed: int\)"),
    ({"model__descriptor__neuron": [4, True]}, r"model/descriptor/neuron: got \[4, True\]; booleans"),
    ({"learning_rate__start_lr": False}, r"learning_rate/start_lr: got false"),
    ({"learning_rate__stop_lr": 0.0}, r"learning_rate/stop_lr: got 0.0; need a positive number"),
    ({"learning_rate__stop_lr_ratio": -0.1}, r"learning_rate/stop_lr_ratio: got -0.1"),
    ({"learning_rate__decay_rate": 1.5}, r"learning_rate/decay_rate: got 1.5; need 0 < decay_rate <= 1"),
    ({"learning_rate__stop_lr": 1e-5, "learning_rate__stop_lr_ratio": 0.1}, r"mutually exclusive"),
    ({"training__save_freq": 0}, r"training/save_freq: got 0; need a positive number"),
    ({"model__data_stat_protect": 0.0}, r"model/data_stat_protect: got 0.0"),
    ({"model__fitting_net__activation_function": "swish"}, r"activation_function: got 'swish'; allowed: tanh"),
    ({"training__numb_steps": None}, r"training/numb_steps"),
])
def test_meaning_checks_name_the_key(tmp_path, sections, message):
    raw = _base(tmp_path, **sections)
    if sections.get("training__numb_steps", 0) is None:
        del raw["training"]["numb_steps"]
    with pytest.raises(ConfigError, match=message):
        config.normalize(raw)


def test_nan_in_a_json_file_names_the_file_and_key(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(json.dumps(_base(tmp_path, loss__limit_pref_v=math.inf)))
    assert "Infinity" in path.read_text()
    with pytest.raises(ConfigError, match=re.escape(f"{path}: loss/limit_pref_v: got inf")):
        config.load(str(path))


def test_output_folders_are_made_or_refused_before_step_0(tmp_path):
    tr = config.normalize(_base(tmp_path, training__save_ckpt="ckpt/sub/model.ckpt"))["training"]
    config.check_output_paths(tr, str(tmp_path / "out"))
    assert (tmp_path / "out" / "ckpt" / "sub").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"training/save_ckpt: cannot make the folder .*file/m"):
        config.check_output_paths(dict(tr, save_ckpt="file/m/model.ckpt"), str(tmp_path))
    with pytest.raises(ConfigError, match=r"training/disp_file: .* is a folder"):
        config.check_output_paths(dict(tr, disp_file="out"), str(tmp_path))
