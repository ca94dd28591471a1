#!/usr/bin/env bash
# The GPU check on a lent machine (the device tool runs this in the repository root; $OUT comes back).
# Its image has PyTorch, timm, pandas, scipy, statsmodels, pyarrow, scikit-image, torchmetrics; not captum (the zoo
# slice's classifier measures need it): carry it as a wheel in .whl/ (see the device tool's README) when wanted.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "${OUT:-/tmp}/nvidia-smi.csv"
python3 benchmarks/gpu_check.py --device cuda --out "${OUT:-reports/gpu_check}" --budget-s "${BUDGET_S:-480}" "$@" \
  2>&1 | tee "${OUT:-/tmp}/gpu_check.log"
