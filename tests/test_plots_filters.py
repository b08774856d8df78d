"""``plots.plot_filters``: a conv layer's learned filters, each drawn as its weights."""

from __future__ import annotations

import numpy as np
import pytest

import fastbp
from fastbp.errors import ConfigError
from fastbp.layers import ConvPool, FullyConnected, Softmax

pytest.importorskip("matplotlib")
from fastbp.io import plots  # noqa: E402


def net():
    return fastbp.Network([ConvPool((7, 1, 3, 4), (1, 8, 9), (2, 2), "relu"),
                           ConvPool((5, 7, 2, 2), (7, 3, 3), (1, 1), "relu"),
                           FullyConnected(20, 6, "relu"), Softmax(6, 3)],
                          device="cpu", dtype="float64", seed=2)


def drawn(monkeypatch):
    """Keeps the figure plot_filters saves (in the dict returned, as ``fig``)."""
    saved = {}
    real = plots._save

    def keep(fig, path):
        saved["fig"] = fig
        return real(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    return saved


def test_each_filter_is_drawn_as_its_weights(tmp_path, monkeypatch):
    n = net()
    saved = drawn(monkeypatch)
    path = plots.plot_filters(n, tmp_path / "filters.png", columns=4)
    assert path.exists() and path.read_bytes()[:4] == b"\x89PNG"
    axes = saved["fig"].axes
    assert len(axes) == 8  # 7 filters, 4 to a row: 2 rows, the last cell empty
    w = np.asarray(n.weights[0]).reshape(7, 1, 3, 4)
    images = [ax.images for ax in axes]
    assert [len(i) for i in images] == [1] * 7 + [0]
    scale = np.abs(w).max()
    for f in range(7):
        image = images[f][0]
        np.testing.assert_array_equal(image.get_array(), w[f, 0])
        assert image.get_clim() == (-scale, scale)


def test_a_channel_of_a_deeper_layer(tmp_path, monkeypatch):
    n = net()
    saved = drawn(monkeypatch)
    plots.plot_filters(n, tmp_path / "f.png", layer=1, channel=6)
    w = np.asarray(n.weights[1]).reshape(5, 7, 2, 2)
    got = [ax.images[0].get_array() for ax in saved["fig"].axes if ax.images]
    np.testing.assert_array_equal(np.array(got), w[:, 6])
    np.testing.assert_array_equal(plots.filter_images(n, 1, 6), w[:, 6])


@pytest.mark.parametrize("kwargs, words", [
    ({"layer": 2}, "layer 2 is FullyConnected, not a conv layer"),
    ({"layer": 4}, "layer must be an index from 0 to 3"),
    ({"channel": 1}, "channel must be an index from 0 to 0"),
    ({"columns": 0}, "columns must be a positive integer"),
])
def test_bad_requests_are_refused(tmp_path, kwargs, words):
    with pytest.raises(ConfigError, match=words):
        plots.plot_filters(net(), tmp_path / "f.png", **kwargs)
    assert not (tmp_path / "f.png").exists()


def test_a_sizes_network_has_no_filters(tmp_path):
    with pytest.raises(ConfigError, match="no layers"):
        plots.plot_filters(fastbp.Network([4, 3, 2], device="cpu"), tmp_path / "f.png")
