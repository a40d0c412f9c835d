"""The stages every model of whole frames shares: the kernels fixed once, the neighbour search,
r_ij and the environment matrix of the centre atoms, blocks of centre atoms by type. The energy
model (energy_model.py) and the dipole model of DPLR (dipole.py) both run through them."""
from __future__ import annotations

import numpy as np
import paddle

from ..kernels import check_frames, check_neighbors


class FrameStages:
    """Mixed into a ``paddle.nn.Layer`` with ``descriptor``, ``ntypes``, ``type_map``, ``kernels``."""

    def set_kernels(self, kernels) -> None:
        """Fix the kernels (``deepmd_paddle.kernels.Backend``: C++, plain Paddle, or static export)
        of the model and all its layers: the one switch between C++ and plain Paddle."""
        self.kernels = kernels
        for layer in self.sublayers():
            if "kernels" in vars(layer):
                layer.kernels = kernels

    def centre_env(self, coord, atype, nlist, shift, centre=None, order: int = 0):
        """(r_ij nf x nc x nnei x 3, a leaf of the derivatives; the centre types nf x nc; R~ nf x nc
        x nnei x 4) of the centre atoms; ``order``: derivatives in ``coord`` the caller takes."""
        build_rij = self.kernels.get("build_rij", order)  # (named before the call: see forward_lower)
        rij = build_rij(coord, nlist, shift, centre)
        if rij.stop_gradient:
            rij.stop_gradient = False
        tc = atype if centre is None else paddle.gather(atype, centre, axis=1)
        return rij, tc, self.descriptor.env_mat(rij, nlist, tc)

    def prepare(self, coord, atype, box, check: bool = True):
        """Checked float64 coordinates and box, int32 types, the neighbour list with its image
        shifts, and ``keep`` (per neighbour type, the largest real neighbour count: padded slots
        past it need no net; None in static graphs)."""
        if check and paddle.in_dynamic_mode():
            check_frames(coord, atype, box, self.ntypes, self.type_map, self.descriptor.rcut)
        coord = coord.astype("float64")
        box = None if box is None else box.astype("float64")
        atype = atype.astype("int32")
        with paddle.no_grad():
            # validated above (or the caller asked for no checks): the search need not re-check
            nlist, shift, nmax, mindist = self.descriptor.neighbor_list(coord, atype, box, check=False)
        if check and paddle.in_dynamic_mode():
            check_neighbors(nmax, mindist, self.descriptor.sel, coord, box, self.type_map)
        keep = None
        if paddle.in_dynamic_mode():  # the largest real neighbour counts: padded slots need no net
            keep = np.minimum(nmax.numpy().max(axis=0), self.descriptor.sel).tolist()
        return coord, atype, box, nlist, shift, keep

    def centre_blocks(self, atype_flat) -> list:
        """[(ti, indices of the atoms of centre type ti)]: the one loop over centre types (empty
        types skipped in dynamic mode). Per-type fitting nets, and per-pair embedding nets, run
        block by block; ``in_atom_order`` puts the rows back."""
        blocks = []
        for ti in range(self.ntypes):
            idx = paddle.nonzero(atype_flat == ti).reshape([-1])  # atoms of centre type ti
            if paddle.in_dynamic_mode() and idx.shape[0] == 0:
                continue
            blocks.append((ti, idx))
        return blocks

    @staticmethod
    def in_atom_order(parts: list, index: list):
        """The rows of ``parts`` (block k holds the atoms ``index[k]``) back in atom order."""
        return paddle.gather(paddle.concat(parts), paddle.argsort(paddle.concat(index)))
