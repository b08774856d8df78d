"""The CUDA source of fastbp-cupy, checked without a GPU: every raw kernel compiles with ``nvcc``
for sm_80 (A100) and sm_90 (H100) in float and double, with no register spills; every fused
elementwise operation compiles as CUDA; the raw module compiles through NVRTC (what CuPy's
``RawModule`` calls) where ``libnvrtc`` is found. Each skips with the reason where its compiler
is absent. And the GEMM epilogue's β = 0 rule on the emulator: ``C`` is not read.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

fastbp_cupy = pytest.importorskip("fastbp_cupy")
from fastbp_cupy import emulator, graph  # noqa: E402
from fastbp_cupy import kernels as K  # noqa: E402

NVCC = shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="no nvcc (CUDA compiler) on this machine")


def nvcc(source: str, arch: str, tmp_path: Path, name: str) -> str:
    """``nvcc -cubin`` of ``source`` for ``arch`` with ptxas's resource report; its output."""
    cu = tmp_path / f"{name}.cu"
    cu.write_text(source)
    proc = subprocess.run([NVCC, f"-arch={arch}", "-cubin", "-std=c++17", "-Xptxas", "-v",
                           "-o", str(tmp_path / f"{name}.cubin"), str(cu)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@needs_nvcc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("real", ["float", "double"])
def test_every_raw_kernel_compiles_with_nvcc_without_spills(tmp_path, arch, real):
    report = nvcc(K.raw_source(real), arch, tmp_path, f"raw_{real}")
    entries = set(re.findall(r"Compiling entry function '(\w+)'", report))
    assert set(K.RAW_KERNELS) <= entries, sorted(set(K.RAW_KERNELS) - entries)
    spills = [int(n) for n in re.findall(r"(\d+) bytes spill (?:stores|loads)", report)]
    assert spills and not any(spills), report[-3000:]


def elementwise_source(real: str) -> str:
    """Every operation of :data:`fastbp_cupy.kernels.ELEMENTWISE` as a CUDA kernel of its own,
    an element per thread, the way CuPy binds the parameters (inputs by value, outputs by
    reference)."""
    parts = [f"typedef {real} T;"]
    for ins, outs, operation, name in K.ELEMENTWISE.values():
        params, body = [], []
        for decl, out in [(p, False) for p in ins.split(",")] + [(p, True)
                                                                for p in outs.split(",")]:
            arg = decl.split()[-1]
            params.append(f"{'' if out else 'const '}T* {arg}_p")
            body.append(f"{'T&' if out else 'const T'} {arg} = {arg}_p[i];")
        parts.append(f'extern "C" __global__ void {name}({", ".join(params)}, long long n) {{\n'
                     "  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
                     "  if (i >= n) return;\n  " + "\n  ".join(body) + f"\n  {operation};\n}}")
    return "\n".join(parts) + "\n"


@needs_nvcc
@pytest.mark.parametrize("real", ["float", "double"])
def test_every_fused_elementwise_operation_compiles_as_cuda(tmp_path, real):
    report = nvcc(elementwise_source(real), "sm_90", tmp_path, f"elementwise_{real}")
    entries = set(re.findall(r"Compiling entry function '(\w+)'", report))
    assert {spec[3] for spec in K.ELEMENTWISE.values()} <= entries


def nvrtc_library() -> ctypes.CDLL | None:
    """``libnvrtc`` from the system, else from pip's ``nvidia`` packages on ``sys.path`` (what
    ``cupy-cuda13x[ctk]`` installs: ``nvidia/cu13/lib``, ``nvidia/cuda_nvrtc/lib``)."""
    wheels = sorted(str(p) for entry in sys.path if entry and Path(entry).is_dir()
                    for p in Path(entry).glob("nvidia/*/lib/libnvrtc.so*")
                    if "builtins" not in p.name)
    for name in (ctypes.util.find_library("nvrtc"), "libnvrtc.so", "libnvrtc.so.13",
                 "libnvrtc.so.12", *wheels):
        if name:
            try:
                return ctypes.CDLL(name)
            except OSError:
                continue
    return None


NVRTC = nvrtc_library()


@pytest.mark.skipif(NVRTC is None, reason="no libnvrtc (CUDA's runtime compiler) here")
@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])
@pytest.mark.parametrize("real", ["float", "double"])
def test_the_raw_module_compiles_through_nvrtc_as_cupy_compiles_it(real, arch):
    """The source and options :func:`fastbp_cupy.kernels.raw_module` gives ``RawModule``."""
    assert NVRTC is not None
    prog = ctypes.c_void_p()
    src = K.raw_source(real).encode()
    assert NVRTC.nvrtcCreateProgram(ctypes.byref(prog), src, b"fastbp.cu", 0, None, None) == 0
    opts = [b"-std=c++17", f"--gpu-architecture={arch}".encode()]
    arr = (ctypes.c_char_p * len(opts))(*opts)
    rc = NVRTC.nvrtcCompileProgram(prog, len(opts), arr)
    size = ctypes.c_size_t()
    NVRTC.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    NVRTC.nvrtcGetProgramLog(prog, log)
    NVRTC.nvrtcDestroyProgram(ctypes.byref(prog))
    assert rc == 0, log.value.decode(errors="replace")


# -- the epilogue's β = 0 -----------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ["fastbp_gemm_tiled", "fastbp_gemm_dot"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_sgd_epilogue_with_beta_0_never_reads_c(kernel, dtype):
    """``C ← β C − α A B`` with β = 0 is ``−α A B`` whatever ``C`` held: a NaN velocity does
    not stay NaN (cuBLAS's rule), and the source says so for the GPU's compiler."""
    rng = np.random.default_rng(0)
    M, N, Kd = 5, 7, 70
    A = rng.standard_normal((M, Kd)).astype(dtype)
    B = np.ascontiguousarray(rng.standard_normal((N, Kd)).astype(dtype)).T  # unit stride on K
    C = np.full((M, N), np.nan, dtype=dtype)
    item = graph.gemm_launch(A, B, C, C, K.GEMM_SGD, alpha=0.5, beta=0.0, kernel=kernel)
    emulator.launch(item)
    ref = -0.5 * (A.astype(np.float64) @ B.astype(np.float64))
    u = np.finfo(dtype).eps / 2
    bound = 2 * (Kd + 2) * u * 0.5 * (np.abs(A) @ np.abs(B))
    assert np.isfinite(C).all() and (np.abs(C - ref) <= bound).all()
    C[...] = 2.0  # β ≠ 0 still reads C
    item = graph.gemm_launch(A, B, C, C, K.GEMM_SGD, alpha=0.5, beta=0.5, kernel=kernel)
    emulator.launch(item)
    assert (np.abs(C - (1.0 + ref)) <= bound + 4 * u).all()
    assert "beta == real(0) ? -alpha * acc" in K.RAW_SOURCE


@needs_nvcc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_the_timing_spin_kernel_compiles_with_nvcc(tmp_path, arch):
    report = nvcc(K.SPIN_SOURCE, arch, tmp_path, "spin")
    assert "Compiling entry function 'fastbp_spin'" in report


# -- benchmarks/gpu/kernels_check.py covers every kernel, epilogue and cost ---------------------
def test_the_kernel_check_covers_every_epilogue_cost_and_raw_kernel(monkeypatch, tmp_path):
    """``kernels_check.py --quick`` on the stand-in: every GEMM epilogue mode of
    :mod:`fastbp_cupy.kernels` (and β = 0), every output-error kind, every raw kernel of
    training, all passing (on the emulator: it checks the check, the GPU checks the kernels)."""
    import importlib
    import json
    import sys

    from fastbp_fake_cupy import install

    gpu = Path(__file__).resolve().parents[3] / "benchmarks" / "gpu"
    if not (gpu / "kernels_check.py").exists():
        pytest.skip("benchmarks/gpu is not in this checkout")
    install(monkeypatch)
    monkeypatch.syspath_prepend(str(gpu))
    for name in ("kernels_check", "kernels_check_steps"):
        sys.modules.pop(name, None)
    check = importlib.import_module("kernels_check")
    modes = {v for k, v in vars(K).items() if k.startswith("GEMM_")}
    assert set(check.EPILOGUES.values()) == modes and "sgd-beta0" in check.EPILOGUES
    assert set(check.COSTS) == {v for k, v in vars(K).items() if k.startswith("COST_")}
    out = tmp_path / "kernels.json"
    assert check.main(["--quick", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    kernels = {r["kernel"] for r in rows}
    assert set(K.RAW_KERNELS) <= kernels, sorted(set(K.RAW_KERNELS) - kernels)
    cases = " ".join(r["case"] for r in rows)
    for name in [*check.EPILOGUES, *check.COSTS.values()]:
        assert f" {name}" in cases, name
