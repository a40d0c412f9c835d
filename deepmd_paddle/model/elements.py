"""Physical properties of the elements: the inputs of the property type embedding.

Five properties per element, H (Z = 1) to Pu (Z = 94)::

    atomic_number       Z                                    ase.data.atomic_numbers
    mass                standard atomic weight, u            ase.data.atomic_masses (IUPAC 2016)
    covalent_radius     single-bond covalent radius, A       ase.data.covalent_radii (Cordero et al.,
                                                             Dalton Trans. 2008, 2832)
    electronegativity   Pauling scale, most common           ELECTRONEGATIVITY below: CRC Handbook of
                        oxidation state                      Chemistry and Physics, 86th ed. (2005),
                                                             section 9, "Electronegativity"
    valence_electrons   electrons outside the noble-gas      valence_electrons() below, from the
                        core: the group number for groups    position in the periodic table
                        1-12 (s and d), group - 10 for
                        groups 13-18 (s and p: the filled d
                        shell is not counted; He: 2)

Gaps are gaps, not guesses: the CRC table gives no Pauling value for He, Ne, Ar, Kr, Pm, Eu, Tb,
Yb and Rn, and the valence count is not defined here for the f block (Ce-Lu, Th-Pu). Asking for
a missing value raises ``PropertyError`` naming the element, the property and what is available.

``property_matrix(type_map, names)`` returns the raw values (ntypes x nprop);
``normalise`` maps each property to mean 0 and standard deviation 1 over the elements of the
model (a property that is equal for all of them becomes 0): Z ~ 30-80 and radii ~ 1.3 A then
enter the embedding net on the same scale, and elements that differ little in a property (Cu and
Ni in electronegativity) are still told apart by it.
"""
from __future__ import annotations

import numpy as np

PROPERTIES = ("atomic_number", "mass", "covalent_radius", "electronegativity", "valence_electrons")
ALIASES = {"z": "atomic_number", "atomic_mass": "mass", "radius": "covalent_radius", "r_cov": "covalent_radius",
           "chi": "electronegativity", "pauling": "electronegativity", "valence": "valence_electrons",
           "nvalence": "valence_electrons"}
MAX_Z = 94  # the table covers H to Pu

# Pauling electronegativity, CRC Handbook of Chemistry and Physics, 86th ed., section 9 (Z: value);
# elements without a value there are absent.
ELECTRONEGATIVITY = {
    1: 2.20, 3: 0.98, 4: 1.57, 5: 2.04, 6: 2.55, 7: 3.04, 8: 3.44, 9: 3.98,
    11: 0.93, 12: 1.31, 13: 1.61, 14: 1.90, 15: 2.19, 16: 2.58, 17: 3.16,
    19: 0.82, 20: 1.00, 21: 1.36, 22: 1.54, 23: 1.63, 24: 1.66, 25: 1.55, 26: 1.83, 27: 1.88, 28: 1.91,
    29: 1.90, 30: 1.65, 31: 1.81, 32: 2.01, 33: 2.18, 34: 2.55, 35: 2.96,
    37: 0.82, 38: 0.95, 39: 1.22, 40: 1.33, 41: 1.6, 42: 2.16, 43: 2.10, 44: 2.2, 45: 2.28, 46: 2.20,
    47: 1.93, 48: 1.69, 49: 1.78, 50: 1.96, 51: 2.05, 52: 2.1, 53: 2.66, 54: 2.60,
    55: 0.79, 56: 0.89, 57: 1.10, 58: 1.12, 59: 1.13, 60: 1.14, 62: 1.17, 64: 1.20, 66: 1.22, 67: 1.23,
    68: 1.24, 69: 1.25, 71: 1.0, 72: 1.3, 73: 1.5, 74: 1.7, 75: 1.9, 76: 2.2, 77: 2.2, 78: 2.2, 79: 2.4,
    80: 1.9, 81: 1.8, 82: 1.8, 83: 1.9, 84: 2.0, 85: 2.2,
    87: 0.7, 88: 0.9, 89: 1.1, 90: 1.3, 91: 1.5, 92: 1.7, 93: 1.3, 94: 1.3,
}

NOBLE_GASES = (0, 2, 10, 18, 36, 54, 86)  # Z of the closed shells (0: none)


class PropertyError(ValueError):
    """A property name that is not in the table, or an element for which it has no value."""


def valence_electrons(z: int) -> int | None:
    """Electrons outside the noble-gas core (groups 1-12: the group; 13-18: group - 10); None in the f block."""
    if z == 2:
        return 2
    core = max(n for n in NOBLE_GASES if n < z)
    pos = z - core  # 1-based position in the period
    if core <= 18:  # periods 1-3: s and p only
        return pos
    if core == 54 or core == 86:  # periods 6-7: s, La/Ac, the f block, then d and p
        if pos <= 3:
            return pos
        if pos <= 17:
            return None  # Ce-Lu, Th-No
        pos -= 14
    return pos if pos <= 12 else pos - 10  # groups 1-12: group; 13-18: group - 10


def canonical_name(name: str) -> str:
    """The table's name of a property (aliases such as 'Z' or 'chi' accepted)."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in PROPERTIES:
        raise PropertyError(f"unknown element property {name!r}; allowed: {', '.join(PROPERTIES)} "
                            f"(aliases: {', '.join(sorted(ALIASES))})")
    return key


def element_property(symbol: str, name: str) -> float:
    """One value of the table; PropertyError when the element or the value is missing."""
    from ase.data import atomic_masses, atomic_numbers, covalent_radii

    prop = canonical_name(name)
    z = atomic_numbers.get(symbol)
    if z is None or z == 0:
        raise PropertyError(f"{symbol!r} is not an element symbol (type_map entries must be element symbols "
                            "such as 'Cu' for a property type embedding; a learned one, "
                            "type_embedding: {\"neuron\": [8]}, takes any names)")
    if z > MAX_Z:
        raise PropertyError(f"element {symbol} (Z = {z}) is beyond the property table (H to Pu, Z <= {MAX_Z})")
    value = {
        "atomic_number": float(z), "mass": float(atomic_masses[z]), "covalent_radius": float(covalent_radii[z]),
        "electronegativity": ELECTRONEGATIVITY.get(z), "valence_electrons": valence_electrons(z),
    }[prop]
    if value is None:
        have = [p for p in PROPERTIES if p != prop and _has(symbol, p)]
        raise PropertyError(f"the element table has no {prop} for {symbol}; choose properties that it has "
                            f"for every element of type_map (for {symbol}: {', '.join(have)}), or a learned "
                            "type embedding (type_embedding: {\"neuron\": [8]})")
    return float(value)


def _has(symbol: str, prop: str) -> bool:
    try:
        element_property(symbol, prop)
        return True
    except PropertyError:
        return False


def property_matrix(type_map, names=PROPERTIES) -> np.ndarray:
    """Raw values, ntypes x len(names)."""
    if not names:
        raise PropertyError(f"type_embedding: the list of properties is empty; allowed: {', '.join(PROPERTIES)}")
    names = [canonical_name(n) for n in names]
    if len(set(names)) != len(names):
        raise PropertyError(f"type_embedding: property listed twice in {names}")
    return np.array([[element_property(s, n) for n in names] for s in type_map], dtype=np.float64)


def normalise(values: np.ndarray) -> np.ndarray:
    """Each column to mean 0 and standard deviation 1 over the rows (constant columns: 0)."""
    values = np.asarray(values, dtype=np.float64)
    std = values.std(axis=0)
    out = np.zeros_like(values)
    varies = std > 1e-12 * np.maximum(np.abs(values).max(axis=0), 1.0)
    out[:, varies] = (values[:, varies] - values[:, varies].mean(axis=0)) / std[varies]
    return out
