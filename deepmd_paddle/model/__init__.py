"""Model stage: environment matrix -> se_e2_a descriptor -> energy fitting -> energy model."""
from .descriptor import DescrptSeA
from .energy_model import EnergyModel
from .fitting import EnergyFitting

__all__ = ["DescrptSeA", "EnergyFitting", "EnergyModel"]
