#!/usr/bin/env python3
"""Recompute the ordering metrics of one run from `mpcomm log dump --csv` output, independently
of mpcomm, by the plainest algorithms (explicit predecessor sets; meant for small runs).

usage: recompute_order.py N M FILE.csv...   (one CSV per peer; prints one JSON object)

Printed: causal_violations (null when happened-before is cyclic), total_order,
out_of_order_rounds and first_divergence of the delivery order, and of the arrival order
(records sorted by the `arrival` column, ties by position) out_of_order_rounds,
first_divergence and fifo_violations.

Definitions (the comparator's): (p,k) precedes (q,j) if p = q and k < j, or q's log delivered
(p,k) at a deliver_ns earlier than send_ns(q,j), or transitively; send_ns(q,j) is that of the
first record of (q,j) in q's own log (none there: no such delivery edges into it). A causal
violation is a first delivery of x at a receiver before some predecessor of x was delivered
there. Records with seq >= M are ignored. A CSV without rows is an empty log.
"""
import csv
import json
import sys
from collections import deque


def read(paths):
    logs = {}
    for path in paths:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            continue
        rows.sort(key=lambda r: int(r["position"]))
        logs[int(rows[0]["receiver"])] = [
            {k: int(v) for k, v in r.items()} for r in rows
        ]
    return logs


def positional(orders, n, m):
    """(out_of_order_rounds, first_divergence) over N peers; a missing log is empty."""
    count, first = 0, None
    for k in range(n * m):
        seen = set()
        for peer in range(n):
            o = orders.get(peer, [])
            x = o[k] if k < len(o) else None
            seen.add(None if x is None or x[1] >= m else x)
        if len(seen) != 1 or None in seen:
            count += 1
            if first is None:
                first = k
    return count, first


def fifo(order, m):
    nxt, bad = {}, 0
    for s, q in order:
        if q >= m:
            continue
        if q + 1 < nxt.get(s, 0):
            bad += 1
        else:
            nxt[s] = max(nxt.get(s, 0), q + 1)
    return bad


def firsts(rows, m):
    out, seen = [], set()
    for r in rows:
        x = (r["sender"], r["seq"])
        if r["seq"] < m and x not in seen:
            seen.add(x)
            out.append(x)
    return out


def causal(logs, m):
    own_send = {}
    for q, rows in logs.items():
        for r in rows:
            x = (r["sender"], r["seq"])
            if r["sender"] == q and r["seq"] < m and x not in own_send:
                own_send[x] = r["send_ns"]

    def immediate(y):
        p, k = y
        out = [(p, k - 1)] if k > 0 else []
        if y in own_send:
            out += [
                (r["sender"], r["seq"])
                for r in logs.get(p, [])
                if r["seq"] < m and r["deliver_ns"] < own_send[y]
            ]
        return out

    def preds(x):
        seen, todo = set(), deque(immediate(x))
        while todo:
            y = todo.popleft()
            if y not in seen:
                seen.add(y)
                todo.extend(immediate(y))
        return seen

    logged = {(r["sender"], r["seq"]) for rows in logs.values() for r in rows if r["seq"] < m}
    before = {x: preds(x) for x in logged}
    if any(x in before[x] for x in logged):
        return None
    count = 0
    for rows in logs.values():
        delivered = set()
        for r in rows:
            x = (r["sender"], r["seq"])
            if r["seq"] >= m or x in delivered:
                continue
            if not before[x] <= delivered:
                count += 1
            delivered.add(x)
    return count


def total_order(logs, m):
    orders = [firsts(rows, m) for rows in logs.values()]
    for a in range(len(orders)):
        for b in range(a + 1, len(orders)):
            common = set(orders[a]) & set(orders[b])
            if [x for x in orders[a] if x in common] != [x for x in orders[b] if x in common]:
                return False
    return True


def main():
    n, m = int(sys.argv[1]), int(sys.argv[2])
    logs = read(sys.argv[3:])
    delivery = {p: [(r["sender"], r["seq"]) for r in rows] for p, rows in logs.items()}
    arrival = {
        p: [
            (r["sender"], r["seq"])
            for r in sorted(rows, key=lambda r: (r["arrival"], r["position"]))
        ]
        for p, rows in logs.items()
    }
    ooo, first = positional(delivery, n, m)
    a_ooo, a_first = positional(arrival, n, m)
    print(
        json.dumps(
            {
                "causal_violations": causal(logs, m),
                "total_order": total_order(logs, m),
                "out_of_order_rounds": ooo,
                "first_divergence": first,
                "arrival": {
                    "out_of_order_rounds": a_ooo,
                    "first_divergence": a_first,
                    "fifo_violations": sum(fifo(o, m) for o in arrival.values()),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
