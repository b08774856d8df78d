"""The ``cuda`` device runs the conformance suite (:mod:`fastbp.testing`) on the NumPy stand-in
for CuPy (``fastbp_fake_cupy``): its graph and eager steps with their kernels emulated. On a
machine with a GPU, ``test_cupy_gpu.py`` holds the CUDA code itself to the same numbers."""

import pytest

pytest.importorskip("fastbp_cupy")

from fastbp_fake_cupy import install as fake_cupy  # noqa: E402

from fastbp.testing import conformance  # noqa: E402

conformance.install(globals(), device="cuda", setup=fake_cupy)
