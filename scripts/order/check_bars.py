#!/usr/bin/env python3
"""Check the ordering bars on `mpcomm lab --json` output and print one table per loss rate.

usage: check_bars.py runs-loss-0.jsonl runs-loss-0.01.jsonl ...   (exit 1 if a bar fails)
"""
import json
import re
import statistics
import sys

MODES = ["none", "fifo", "causal", "sequencer", "lamport"]


def get(r, path):
    for k in path.split("."):
        r = r.get(k) if isinstance(r, dict) else None
    return r


def main(paths):
    failed = []
    for path in paths:
        loss = re.search(r"loss-([0-9.]+)\.jsonl", path).group(1)
        runs = [json.loads(l) for l in open(path) if l.strip()]
        runs = [r for r in runs if "summary" not in r]
        print(f"\n--wan-loss {loss}: {len(runs)} runs")
        print(f"{'mode':<10} {'transport':<9} {'runs':>4} {'ooo arr %':>9} {'ooo del %':>9} "
              f"{'fifo':>5} {'causal':>6} {'pair max':>8} {'lost':>5} {'dups':>5} "
              f"{'ctl/deliv':>9} {'delay p50':>10} {'delay p99':>10}")
        for mode in MODES:
            for tr in ["fanout", "multicast"]:
                rs = [r for r in runs if r.get("order") == mode and r["transport"] == tr]
                if not rs:
                    continue
                pct = lambda k: statistics.median(100.0 * get(r, k) / r["rounds"] for r in rs)
                mx = lambda k: max(get(r, k) or 0 for r in rs)
                med = lambda k: statistics.median(get(r, k) or 0 for r in rs)
                row = {
                    "arr": pct("arrival.out_of_order_rounds"),
                    "del": pct("out_of_order_rounds"),
                    "min_del": min(100.0 * r["out_of_order_rounds"] / r["rounds"] for r in rs),
                    "fifo": mx("fifo_violations"),
                    "causal": mx("causal_violations"),
                    "pair": mx("pairwise_disagreement.max"),
                    "lost": mx("lost"),
                    "dups": mx("duplicates"),
                    "ctl": med("overhead.per_delivery"),
                    "p50": med("ordering_delay_us.p50"),
                    "p99": med("ordering_delay_us.p99"),
                }
                print(f"{mode:<10} {tr:<9} {len(rs):>4} {row['arr']:>9.1f} {row['del']:>9.1f} "
                      f"{row['fifo']:>5} {row['causal']:>6} {row['pair']:>8.4f} {row['lost']:>5} "
                      f"{row['dups']:>5} {row['ctl']:>9.3f} {row['p50']/1000:>8.1f}ms "
                      f"{row['p99']/1000:>8.1f}ms")
                at = f"loss {loss} {mode} {tr}"
                if mode == "none" and row["min_del"] < 90:
                    failed.append(f"{at}: fewer than 90 % of rounds out of order")
                if mode != "none" and (row["lost"] or row["dups"]):
                    failed.append(f"{at}: lost {row['lost']} dups {row['dups']}")
                if mode == "fifo" and row["fifo"]:
                    failed.append(f"{at}: FIFO violations")
                if mode in ("causal", "sequencer", "lamport") and row["causal"]:
                    failed.append(f"{at}: causal violations")
                if mode == "causal" and row["del"] == 0:
                    failed.append(f"{at}: causal shows no disagreement at all (suspicious)")
                if mode in ("sequencer", "lamport") and (row["del"] or row["pair"]):
                    failed.append(f"{at}: total order broken")
                if mode in ("sequencer", "lamport") and loss == "0" and row["ctl"] > 1:
                    failed.append(f"{at}: {row['ctl']:.3f} control datagrams per delivery > 1")
    print()
    if failed:
        print("BARS FAILED:\n  " + "\n  ".join(failed))
        return 1
    print("every bar holds")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
