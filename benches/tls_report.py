"""Writes benches/tls.sh's results as the TLS section of BENCHMARKS.md.

results.tsv: side, round, order, producer summary "N records/sec (M MB/sec)", consumer
CSV line, broker CPU-s producing, broker CPU-s consuming, mirrorgate CPU-s producing,
mirrorgate CPU-s consuming, 1-minute load average.
"""

import pathlib
import re
import statistics
import sys

from svg_chart import bars

SIDES = ("broker-tls", "mirrorgate-tls", "plaintext")
BEGIN, END = "<!-- tls:begin -->", "<!-- tls:end -->"


def rows(path):
    out = []
    for line in pathlib.Path(path).read_text().splitlines():
        side, rnd, order, produced, consumed, bp, bc, mp, mc, load = line.split("\t")
        produce_mb = float(re.search(r"\(([\d.]+) MB/sec\)", produced).group(1))
        # start.time, end.time, MB, MB.sec, nMsg, nMsg.sec, rebalance ms, fetch ms, fetch.MB.sec, ...
        fetch_mb = float(consumed.split(",")[8])
        out.append(dict(side=side, round=int(rnd), order=int(order), produce=produce_mb,
                        consume=fetch_mb, broker_cpu=float(bp) + float(bc),
                        mg_produce=float(mp), mg_consume=float(mc),
                        mg_cpu=float(mp) + float(mc), load=float(load)))
    return out


def main():
    results, rounds, records, rss_kb, report = sys.argv[1:]
    data = rows(results)
    gb_per_side_round = 2 * int(records) * 1024 / 1e9  # produced, then consumed

    def med(side, key):
        return statistics.median(r[key] for r in data if r["side"] == side)

    def cpu_per_gb(side, key, gb=gb_per_side_round):
        # The median round, like the rates: a first round's JIT warm-up stays out.
        return statistics.median(r[key] for r in data if r["side"] == side) / gb

    base_p, base_c = med("broker-tls", "produce"), med("broker-tls", "consume")
    lines = [BEGIN, "## TLS: mirrorgate against the brokers' own TLS (benches/tls.sh)", "",
             f"One broker (`--security ssl`), a new 6-partition topic per run: "
             f"{int(records):,} records of 1 KiB produced with `kafka-producer-perf-test` "
             "(acks=all, lz4, unthrottled), then read back with `kafka-consumer-perf-test`. "
             "\"broker-tls\": the clients speak TLS to the broker's own listener. "
             "\"mirrorgate-tls\": they speak TLS to mirrorgate (rustls, release build), which "
             "reaches the broker in plaintext. \"plaintext\": no TLS anywhere. The clients "
             f"verify the certificates against one development CA. Medians of {rounds} "
             "rounds; the sides take turns and the order rotates each round. CPU-seconds "
             "per GB (median round) count the record bytes produced plus consumed "
             "(10^9 bytes per GB).", "",
             "| side | produce MB/s | vs broker-tls | consume MB/s | vs broker-tls | broker CPU-s/GB | mirrorgate CPU-s/GB |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for side in SIDES:
        p, c = med(side, "produce"), med(side, "consume")
        mg = f"{cpu_per_gb(side, 'mg_cpu'):.2f}" if side == "mirrorgate-tls" else "–"
        lines.append(f"| {side} | {p:.1f} | {p / base_p:.2f}x | {c:.0f} | {c / base_c:.2f}x | "
                     f"{cpu_per_gb(side, 'broker_cpu'):.2f} | {mg} |")
    half = gb_per_side_round / 2
    lines += ["", "mirrorgate terminating TLS, per phase: "
              f"{cpu_per_gb('mirrorgate-tls', 'mg_produce', half):.2f} CPU-s/GB producing, "
              f"{cpu_per_gb('mirrorgate-tls', 'mg_consume', half):.2f} CPU-s/GB consuming; "
              f"peak RSS (VmHWM) over the run {int(rss_kb) / 1024:.1f} MiB.", "",
              "| round | side | order | load | produce MB/s | consume MB/s | broker CPU-s | mirrorgate CPU-s (produce / consume) |",
              "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in sorted(data, key=lambda r: (r["round"], r["order"])):
        lines.append(f"| {r['round']} | {r['side']} | {r['order']} | {r['load']:.2f} | "
                     f"{r['produce']:.1f} | {r['consume']:.0f} | {r['broker_cpu']:.1f} | "
                     f"{r['mg_produce']:.2f} / {r['mg_consume']:.2f} |")
    chart = pathlib.Path("benches/charts/tls.svg")
    lines += ["", f"![TLS sides compared]({chart})"]
    lines.append(END)
    text = "\n".join(lines)
    print(text)
    if report == "1":
        chart.parent.mkdir(parents=True, exist_ok=True)
        bars("TLS: mirrorgate against the brokers' own TLS (medians)",
             [("produce", {s: med(s, "produce") for s in SIDES}),
              ("consume", {s: med(s, "consume") for s in SIDES}),
              ("broker CPU per GB", {s: cpu_per_gb(s, "broker_cpu") for s in SIDES}),
              ("mirrorgate CPU per GB", {"mirrorgate-tls": cpu_per_gb("mirrorgate-tls", "mg_cpu")})],
             list(SIDES), lambda m: "CPU-s/GB" if "CPU" in m else "MB/s", chart)
        bench = pathlib.Path("BENCHMARKS.md")
        current = bench.read_text() if bench.exists() else ""
        if BEGIN in current:
            head, rest = current.split(BEGIN, 1)
            current = head + text + rest.split(END, 1)[1]
        else:
            current = current.rstrip("\n") + "\n\n" + text + "\n"
        bench.write_text(current)


if __name__ == "__main__":
    main()
