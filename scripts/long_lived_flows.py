#!/usr/bin/env python3
"""Flow logs with realistic repetition: long-lived connections (database pools, service
meshes, replication) reported once a minute by their interface, the default aggregation
interval, among one-off flows (DNS, health checks). v2 format, no header.

usage: long_lived_flows.py LINES [--connections N] [--one-off M] [--seed S] > out.log
Each minute: N long-lived reports (default 2000) and M one-off flows (default 80).
"""
import random
import sys


def main():
    lines = int(sys.argv[1])
    args = sys.argv[2:]
    opt = lambda name, default: int(args[args.index(name) + 1]) if name in args else default
    connections, one_off, seed = opt("--connections", 2000), opt("--one-off", 80), opt("--seed", 7)
    r = random.Random(seed)
    t0 = 1763799600  # a ten-minute boundary
    enis = ["eni-%017x" % r.getrandbits(68) for _ in range(200)]
    conns = []
    for _ in range(connections):
        eni = r.randrange(len(enis))
        conns.append((enis[eni], "10.0.%d.%d" % (eni // 50, eni % 50 + 10),
                      "10.1.%d.%d" % (r.randrange(16), r.randrange(1, 250)),
                      r.randrange(32768, 61000), r.choice([5432, 3306, 6379, 443, 9092, 2049]),
                      r.randrange(5, 500)))
    out, written, minute = sys.stdout, 0, 0
    while written < lines:
        start = t0 + minute * 60
        for eni, src, dst, sport, dport, rate in conns:
            pk = max(1, int(rate * r.uniform(0.5, 1.5)))
            out.write("2 123456789012 %s %s %s %d %d 6 %d %d %d %d ACCEPT OK\n" % (
                eni, src, dst, sport, dport, pk, pk * r.randrange(60, 1400), start, start + 59))
            written += 1
            if written == lines:
                return
        for _ in range(one_off):
            eni = r.randrange(len(enis))
            s = start + r.randrange(60)
            out.write("2 123456789012 %s 10.0.%d.%d 10.0.0.2 %d 53 17 1 %d %d %d ACCEPT OK\n" % (
                enis[eni], eni // 50, eni % 50 + 10, r.randrange(32768, 61000), r.randrange(60, 300), s, s + 1))
            written += 1
            if written == lines:
                return
        minute += 1


main()
