"""Testing fastbp devices: the conformance suite every device runs.

``from fastbp.testing import conformance; conformance.install(globals(), device="name")`` in a
device's test module runs the whole suite on that device (:mod:`.conformance`). The pieces are
public too: :mod:`.paths` (the ways an epoch can run and the settings that force them) and
:mod:`.oracle` (the per-sample reference epoch, the float64 σ, ulp distances). Importing this
package needs pytest; ``import fastbp`` never imports it.
"""

import pytest

# pytest explains a failed assert of the suite as it does one in a test module
pytest.register_assert_rewrite("fastbp.testing.checks_math", "fastbp.testing.checks_conv",
                               "fastbp.testing.checks_device",
                               "fastbp.testing.oracle")

from . import conformance, oracle, paths  # noqa: E402

__all__ = ["conformance", "oracle", "paths"]
