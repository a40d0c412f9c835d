"""DeePMD-kit interoperability: its backend-neutral ``.dp``/``.yaml`` model files."""
from .dp_format import load_dp, read_dict, save_dp

__all__ = ["load_dp", "read_dict", "save_dp"]
