"""DeePMD-kit interoperability: its backend-neutral ``.dp``/``.yaml`` model files and its frozen
TensorFlow graphs (``.pb``, read without TensorFlow)."""
from .dp_format import load_dp, read_dict, save_dp
from .tf_graph import load_pb, read_pb

__all__ = ["load_dp", "load_pb", "read_dict", "read_pb", "save_dp"]
