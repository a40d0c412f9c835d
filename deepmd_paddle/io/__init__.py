"""Model files: training checkpoints (``checkpoint``), DeePMD-kit's ``.dp``/``.yaml``
(``dp_format``) and frozen TensorFlow ``.pb`` (``tf_graph``), our frozen models (``frozen`` writes
them, ``frozen_file`` reads them: one file of static programs plus the weights), and
``load_model`` for any model file."""
from .dp_format import load_dp, read_dict, save_dp
from .load import load_model
from .tf_graph import load_pb, read_pb

__all__ = ["load_dp", "load_pb", "read_dict", "read_pb", "save_dp", "load_model"]
