"""Charts of a proxy-bound run (`cargo bench --bench proxy_bound -- --write` calls this
with the run's medians as JSON): latency CDFs of the fixed-rate workloads, one line per
middle, and CPU per GB (bulk) or per request (fixed rate) per middle."""

import json
import sys
from pathlib import Path

import svg_chart


def main(data_path, out_dir):
    rows = json.loads(Path(data_path).read_text())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    middles = list(dict.fromkeys(r["middle"] for r in rows))
    rate_workloads = list(dict.fromkeys(r["workload"] for r in rows if r["fixed_rate"]))
    for n, workload in enumerate(rate_workloads):
        series = [(r["middle"], [(ms, q) for q, ms in r["curve"] if ms > 0])
                  for r in rows if r["workload"] == workload]
        svg_chart.lines(f"Latency CDF: {workload}", series, "latency, ms (log scale)",
                        "fraction of requests", out / f"proxy_bound_latency_{n + 1}.svg",
                        x_log=True, y_max=1.0)
    bulk = [(w, {r["middle"]: r["cpu_s_per_gb"] for r in rows
                 if r["workload"] == w and r["cpu_s_per_gb"] is not None})
            for w in dict.fromkeys(r["workload"] for r in rows if not r["fixed_rate"])]
    per_request = [(w, {r["middle"]: r["cpu_us_per_request"] for r in rows
                        if r["workload"] == w and r["cpu_us_per_request"] is not None})
                   for w in rate_workloads]
    sides = [m for m in middles if any(m in v for _, v in bulk + per_request)]
    svg_chart.bars("CPU of the middle, by workload", bulk + per_request, sides,
                   lambda w: "CPU-µs per request" if w in rate_workloads else "CPU-s per GB",
                   out / "proxy_bound_cpu.svg")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
