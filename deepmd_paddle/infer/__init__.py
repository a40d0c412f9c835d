"""Inference: ``DeepPot`` (DeePMD-kit's interface) over three runners (dynamic model,
``paddle.jit``, ``paddle.inference``), blocks of centre atoms for large frames and LAMMPS, and
model deviation (``dpp model-devi``)."""
from .deeppot import ATOM_BUDGET_ENV, BACKEND_ENV, DeepPot, load_evaluator, types_from_symbols
from .model_devi import calc_model_devi
from .runners import ModelFileError

__all__ = ["ATOM_BUDGET_ENV", "BACKEND_ENV", "DeepPot", "ModelFileError", "calc_model_devi", "load_evaluator",
           "types_from_symbols"]
