"""``fastbp bench``'s ``conv`` kind: an epoch of the book's two-conv-layer ReLU network at
batches 10 and 100, fastbp's matrix form only, its FLOPs those of the layers' products."""

from __future__ import annotations

import json

import pytest

from fastbp.bench import workloads as wl
from fastbp.bench.cases import CONV, CONV_SIZES, MATRIX
from fastbp.bench.prepare import conv_layers, prepare
from fastbp.bench.runner import throughput_info
from fastbp.cli import main


def test_the_conv_cases_are_the_matrix_form_at_batches_10_and_100():
    devices = [wl.Device("cpu"), wl.Device("cuda", "unknown", "no GPU here")]
    cases = wl.plan_cases(devices, kinds=[CONV], sizes=[(784, 30, 10)], batch_sizes=[1],
                          dtypes=["float32", "float64"], peers={})
    assert [(c.device, c.batch_size, c.dtype) for c, _ in cases] == [
        (d, b, t) for d in ("cpu", "cuda") for b in (10, 100) for t in ("float32", "float64")]
    assert {(c.workload, c.impl, c.sizes) for c, _ in cases} == {(CONV, MATRIX, CONV_SIZES)}
    assert [r for _, r in cases] == [None] * 4 + ["no GPU here"] * 4
    assert cases[0][0].samples == wl.CONV_SAMPLES


def test_the_conv_net_is_the_books_and_its_flops_are_its_products():
    layers = conv_layers()
    assert [la.out_shape for la in layers] == [(20, 12, 12), (40, 4, 4), (100,), (10,)]
    case = wl.conv_case(wl.Device("cpu"), 10, "float32")
    info = throughput_info(case, 2.0, None)
    # conv 1: 20·25 weights at 24·24 positions (no ∂C/∂a below it), conv 2: 40·500 at 8·8,
    # then 640·100 and 100·10; 2 FLOPs a product, 3 products in training
    want = 2 * (2 * 500 * 576 + 3 * 20_000 * 64 + 3 * 64_000 + 3 * 1_000)
    assert info["flops_per_sample"] == want == 9_222_000
    assert info["samples_per_s"] == case.samples / 2.0


def test_a_conv_case_runs_one_epoch():
    case = wl.conv_case(wl.Device("cpu"), 10, "float64", epoch_samples=20)
    assert case.samples == 20
    prepared = prepare(case, wl.data_source("synthetic"))
    prepared.run()
    assert "ConvPool((20, 1, 5, 5)" in prepared.info["network"]


@pytest.mark.slow
def test_fastbp_bench_times_the_conv_net(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["bench", "--kinds", "conv", "--devices", "cpu", "--samples", "100",
                 "--target-s", "0.001", "--out", str(out)])
    assert code == 0
    doc = json.loads((out / "bench.json").read_text())
    rows = [(b["params"]["kind"], b["params"]["batch_size"]) for b in doc["benchmarks"]]
    assert rows == [("conv", 10), ("conv", 100)]
    assert all(b["extra_info"]["samples_per_s"] > 0 for b in doc["benchmarks"])
    assert "conv" in capsys.readouterr().out


def test_bad_kinds_name_conv(capsys):
    assert main(["bench", "--kinds", "lunch", "--out", "none"]) != 0
    assert "--kinds takes step, epoch and/or conv" in capsys.readouterr().err
