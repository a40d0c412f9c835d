"""Model files: training checkpoints (``checkpoint``), DeePMD-kit's ``.dp``/``.yaml``
(``dp_format``), frozen static programs (``frozen``), and ``load_model`` for any of the first two."""
from .dp_format import load_dp, read_dict, save_dp
from .load import load_model

__all__ = ["load_dp", "read_dict", "save_dp", "load_model"]
