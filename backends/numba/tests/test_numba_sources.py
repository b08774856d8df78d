"""cpu-jit's compiled steps keyed by all their sources: Numba's disk cache of every function of
the modules that call one another is stamped with one digest of them all (Numba stamps a
function with its own file alone, so an epoch compiled against an older ``kernels.py`` would
be loaded again), and a module that calls no other keeps Numba's own stamp."""

from __future__ import annotations

import pytest

pytest.importorskip("numba")
pytest.importorskip("fastbp_numba")

from fastbp_numba import conv, epoch, kernels, machine, neurons, sources, techniques  # noqa: E402


@pytest.mark.parametrize("function", [epoch.sgd_epoch, epoch.sgd_epoch_half, kernels.dots,
                                      kernels.step, techniques.step, neurons.activate,
                                      machine.barrier])
def test_every_function_of_the_compiled_steps_is_stamped_with_all_their_sources(function):
    locator = function._cache._impl._locator
    assert type(locator).__name__.startswith("Stamped")
    assert locator.get_source_stamp() == ("fastbp_numba", sources.kernels_digest())


def test_a_module_that_calls_no_other_keeps_numbas_own_stamp():
    locator = conv.max_pool._cache._impl._locator
    assert not type(locator).__name__.startswith("Stamped")


def test_the_digest_covers_every_module_the_steps_compile():
    assert set(sources.KERNEL_SOURCES) == {m.__name__.split(".")[-1] + ".py" for m in (
        machine, neurons, kernels, techniques, epoch)}
    assert all(sources.compiled_here(m.__file__) for m in (machine, neurons, kernels,
                                                            techniques, epoch))
    assert not sources.compiled_here(conv.__file__)
