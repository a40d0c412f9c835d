#!/usr/bin/env bash
# Water NVT and NPT with LAMMPS and a deepmd_paddle model (see README.md). From this folder:
#   bash run.sh [MODEL] [STEPS]
# MODEL: a frozen model (dpp freeze / dpp convert), checkpoint or .dp file; default: the DeePMD-kit
# reference water model of ../shared converted here with `dpp convert`.
set -euo pipefail
cd "$(dirname "$0")"
SHARED=${SHARED:-../../../shared}   # the water data and reference model
MODEL=${1:-}
STEPS=${2:-200}
if [ -z "$MODEL" ]; then
    [ -f water_frozen.pb ] || dpp convert "$SHARED/reference/deepmd-kit/water_se_e2_a_two_side.dp" water_frozen.pb
    MODEL=water_frozen.pb
fi
[ -f water.data ] || python make_data.py "$SHARED/data/water/data_0" water.data
PLUGIN=$(dpp lammps-plugin --build 2>/dev/null | head -n 1)
lmp -in in.water_nvt -var plugin "$PLUGIN" -var model "$MODEL" -var steps "$STEPS" -log log.nvt
mpirun -np 2 lmp -in in.water_npt -var plugin "$PLUGIN" -var model "$MODEL" -var steps "$STEPS" -log log.npt
