"""Same results before and after the layer redesign: the parameters of four 2-epoch float64
trainings on ``cpu`` equal the ones recorded from the code before it, to 1e-12
(:mod:`pin_training` says what is recorded and how)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pin_training import CASES, run

RECORD = json.loads((Path(__file__).parent / "data" / "pin_training.json").read_text())
TOL = 1e-12


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_parameters_as_recorded(name: str) -> None:
    got, want = run(CASES[name]), RECORD[name]
    for stage in ("initial", "final"):
        for i, (g, w) in enumerate(zip(got[stage], want[stage], strict=True)):
            assert g["shape"] == w["shape"] and g["where"] == w["where"]
            where = f"{name}: {stage} array {i}"
            np.testing.assert_allclose(g["values"], w["values"], rtol=0, atol=TOL, err_msg=where)
            # the sums add up to 10^5 entries of O(1): 1e-12 per entry
            n = int(np.prod(w["shape"]))
            assert abs(g["sum"] - w["sum"]) <= TOL * n, where
            assert abs(g["weighted"] - w["weighted"]) <= TOL * n, where
