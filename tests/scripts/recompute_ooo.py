#!/usr/bin/env python3
"""Recompute out_of_order_rounds from `mpcomm log dump --csv` output, independently of mpcomm.

usage: recompute_ooo.py N M FILE.csv...   (one CSV per peer; prints the count)

A position k in 0..N*M is out of order when not every one of the N peers delivered the same
(sender, seq) at k; a peer whose log is shorter than k+1 counts as different.
"""
import csv
import sys


def main():
    n, m = int(sys.argv[1]), int(sys.argv[2])
    logs = {}
    for path in sys.argv[3:]:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        assert rows, f"{path}: empty"
        receiver = int(rows[0]["receiver"])
        rows.sort(key=lambda r: int(r["position"]))
        logs[receiver] = [(int(r["sender"]), int(r["seq"])) for r in rows]
    count = 0
    for k in range(n * m):
        seen = set()
        for peer in range(n):
            log = logs.get(peer, [])
            seen.add(log[k] if k < len(log) else None)
        if len(seen) != 1 or None in seen:
            count += 1
    print(count)


if __name__ == "__main__":
    main()
