"""Seeded initial weights equal DeePMD-kit's TensorFlow backend's for the same seeds.

The fixtures (tests/fixtures/deepmd_init, made by make.py there with DeePMD-kit 3.2.0's
``dp --tf train``, 0 steps) hold the initial weights of two small se_e2_a models.
"""
import json
import pathlib

import numpy as np
import pytest

from deepmd_paddle.config import normalize_model
from deepmd_paddle.model import EnergyModel
from deepmd_paddle.model import init

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "deepmd_init"


def test_philox_known_answers():
    """Philox-4x32-10 known-answer vectors (Random123's kat_vectors)."""
    cases = [((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
             ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
             ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
              (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]
    for counter, key, expected in cases:
        got = init.philox4x32(np.array([counter], np.uint32), key)[0]
        assert tuple(int(v) for v in got) == expected


def test_standard_normal_moments():
    x = init.standard_normal(200_001, op_seed=17)
    assert x.shape == (200_001,)
    assert abs(x.mean()) < 0.01 and abs(x.std() - 1.0) < 0.01  # 4.5 and 2.2 standard errors
    assert abs(np.mean(x ** 4) - 3.0) < 0.05  # Gaussian kurtosis, not a uniform or a clipped draw
    np.testing.assert_array_equal(init.standard_normal(7, 17), x[:7])  # a prefix of the same stream
    assert not np.allclose(init.standard_normal(7, 18), x[:7])


KIND = {"w": "matrix", "b": "bias", "idt": "idt"}


def _tf_name(param: str, ntypes: int, one_side: bool, nfit: int) -> str:
    """Our parameter name -> the TensorFlow variable name of DeePMD-kit's se_e2_a / ener fitting."""
    section, _, net, _, layer, kind = param.split(".")
    net, layer, kind = int(net), int(layer), KIND[kind]
    if section == "descriptor":  # our net index: neighbour type, or centre + neighbour * ntypes
        centre, neighbour = ("all", net) if one_side else (net % ntypes, net // ntypes)
        return f"filter_type_{centre}/{kind}_{layer + 1}_{neighbour}"
    return f"final_layer_type_{net}/{kind}" if layer == nfit else f"layer_{layer}_type_{net}/{kind}"


@pytest.mark.parametrize("case", ["pairs", "one_side"])
def test_initial_weights_equal_deepmd_kit(case):
    model_cfg = _case(case)
    ref = dict(np.load(FIXTURES / f"init_{case}.npz"))
    model = EnergyModel.from_config(model_cfg)
    one_side = bool(model_cfg["descriptor"].get("type_one_side", False))
    nfit = len(model_cfg["fitting_net"]["neuron"])
    ref.pop("fitting_attr/t_bias_atom_e")
    seen = set()
    for name, p in model.named_parameters():
        tf_name = _tf_name(name, len(model_cfg["type_map"]), one_side, nfit)
        # the output layer's bias is N(0, 1) in both: the energy bias is added apart (bias_atom_e)
        np.testing.assert_allclose(p.numpy().ravel(), ref[tf_name].ravel(), rtol=0, atol=1e-12, err_msg=name)
        seen.add(tf_name)
    # DeePMD-kit creates a timestep for every embedding layer with resnet_dt but uses it only where a
    # skip connection exists: never in the first layer (1 -> neuron[0]); those are all we may leave out
    unused = {k for k in ref if k.startswith("filter_type") and "/idt_1_" in k}
    assert seen == set(ref) - unused, f"not compared: {sorted(set(ref) - unused - seen)}"
    assert bool(unused) == bool(model_cfg["descriptor"]["resnet_dt"])


def _case(name: str) -> dict:
    """A fixture's model section with the schema's defaults filled in (as training builds it)."""
    return normalize_model(json.loads((FIXTURES / "cases.json").read_text())[name])


def test_seed_fixes_the_weights():
    cfg = _case("pairs")
    a, b = (EnergyModel.from_config(cfg).state_dict() for _ in range(2))
    for k in a:
        np.testing.assert_array_equal(a[k].numpy(), b[k].numpy())
    cfg["descriptor"]["seed"] = None
    c, d = (EnergyModel.from_config(cfg).descriptor.embeddings[0].layers[1].w.numpy() for _ in range(2))
    assert not np.allclose(c, d)  # no seed: a fresh draw each time
    cfg["descriptor"]["seed"] = "1"
    with pytest.raises(ValueError, match="seed must be an integer"):
        EnergyModel.from_config(cfg)
