"""What the benchmarks time: one :class:`Case` (workload, device, implementation, sizes, batch,
dtype) and the names of fastbp's two implementations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

MATRIX, LOOP = "matrix", "loop"  # fastbp's matrix form, and the book's per-sample loop


def sizes_label(sizes: Sequence[int]) -> str:
    """``[784, 30, 10]`` → ``784-30-10`` (how sizes appear in names and tables)."""
    return "-".join(str(s) for s in sizes)


@dataclass(frozen=True)
class Case:
    """One thing to time. ``workload`` is ``step`` or ``epoch`` (written as ``kind`` in result
    files); ``device`` is a fastbp device for ``matrix``, the hardware (``cpu``, ``cuda``) for the
    loop and the peers; ``samples`` is what one call processes (``m`` or ``N``)."""

    workload: str
    device: str
    impl: str
    sizes: tuple[int, ...]
    batch_size: int
    dtype: str
    samples: int
    hardware: str = "cpu"

    @property
    def sizes_label(self) -> str:
        return sizes_label(self.sizes)

    @property
    def group(self) -> str:
        """Cases that compare like with like: same work, same shapes, same dtype."""
        return f"{self.workload} {self.sizes_label} batch {self.batch_size} {self.dtype}"

    @property
    def param_id(self) -> str:
        return f"{self.device}-{self.impl}-{self.sizes_label}-b{self.batch_size}-{self.dtype}"

    @property
    def name(self) -> str:
        return f"test_{self.workload}[{self.param_id}]"

    @property
    def params(self) -> dict[str, Any]:
        return {"kind": self.workload, "device": self.device, "impl": self.impl,
                "sizes": self.sizes_label, "batch_size": self.batch_size, "dtype": self.dtype}
