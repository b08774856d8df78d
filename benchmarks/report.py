"""Tables and charts from saved benchmark runs (``fastbp bench`` or ``pytest benchmarks/
--benchmark-json``)::

    python benchmarks/report.py RUN.json                 # the results table
    python benchmarks/report.py RUN.json --chart out.png # and the chart
    python benchmarks/report.py A.json B.json            # ratio table B / A (same as
                                                         # fastbp bench --compare A.json B.json)
    python benchmarks/report.py RUN.json AGAIN.json --merge OUT.json
        # RUN with its disturbed cases (other processes took > 0.25 cores) replaced by
        # their less disturbed retimings in AGAIN (pytest benchmarks/ NODE-IDS ...)
"""

from __future__ import annotations

import argparse
import json
import sys

from fastbp.bench import report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("::")[0].strip(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="one run (table) or two runs A B (ratio table)")
    p.add_argument("--markdown", action="store_true", help="Markdown tables")
    p.add_argument("--chart", default=None, help="also draw the chart of one run to this PNG")
    p.add_argument("--merge", default=None, metavar="OUT.json",
                   help="with two runs: write the first with its disturbed cases replaced by "
                   "the second's retimings")
    p.add_argument("--pivot", action="store_true",
                   help="one table per kind × sizes × dtype: batch sizes down, implementations "
                   "across (samples/s), and the same as % of the GEMM peak")
    args = p.parse_args(argv)
    if len(args.runs) > 2:
        p.error("give one run (table) or two runs (comparison)")
    docs = [report.load(r) for r in args.runs]
    if len(docs) == 2 and args.merge:
        merged, replaced = report.merge(docs[0], docs[1])
        with open(args.merge, "w", encoding="utf-8") as f:
            json.dump(merged, f, indent=1)
        report.write_companions(args.merge)
        print(f"{args.merge}: {len(replaced)} disturbed case(s) replaced by their retimings; "
              "machine.json, table.md and chart.png beside it")
        return 0
    if len(docs) == 2:
        print(report.compare(docs[0], docs[1], markdown=args.markdown))
        return 0
    rows = report.rows_of(docs[0])
    if args.pivot:
        seen = dict.fromkeys((r.workload, r.sizes, r.dtype) for r in rows)
        for kind, sizes, dtype in seen:
            for peak in (False, True):
                what = "% of GEMM peak" if peak else "samples/s"
                print(f"\n{kind}, [{sizes.replace('-', ',')}], {dtype}, {what}\n")
                print(report.pivot(rows, kind, sizes, dtype, args.markdown, peak))
    else:
        print(report.table(rows, markdown=args.markdown))
    if args.chart and not report.chart(rows, args.chart):
        print("no chart: matplotlib is not installed (pip install 'fastbp[bench]')",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
