#!/usr/bin/env python3
"""Concurrent readers for ferry's load test, loopback only.

    loadgen.py files --file F --ref R [--threads N] [--reads K]
                     [--max-len B] [--seed S]
    loadgen.py http --port P --token T --disk NAME --ref R [--clients N]
                    [--requests K] [--max-len B] [--seed S]

files: N threads, each with its own descriptors, read K random ranges (up
to B bytes) of F and of the reference R and compare them.
http: N clients connect to the ferry-export on 127.0.0.1:P at once (TLS,
each its own keep-alive connection) and each asks K random ranges of disk
NAME, comparing every 206 body with R.

Prints one line: reads, bytes, mismatches, errors and the latency p50/p99,
and exits 1 if any read was wrong or failed.
"""
import argparse
import http.client
import os
import random
import ssl
import sys
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("mode", choices=("files", "http"))
ap.add_argument("--file")
ap.add_argument("--ref", required=True)
ap.add_argument("--threads", type=int, default=64)
ap.add_argument("--clients", type=int, default=200)
ap.add_argument("--reads", type=int, default=20)
ap.add_argument("--requests", type=int, default=5)
ap.add_argument("--max-len", type=int, default=1 << 20)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--port", type=int)
ap.add_argument("--token")
ap.add_argument("--disk")
args = ap.parse_args()

size = os.path.getsize(args.ref)
lock = threading.Lock()
lat = []
stats = {"reads": 0, "bytes": 0, "bad": 0, "errors": 0}
first_problem = []


def note(ok, n, t, what):
    with lock:
        stats["reads"] += 1
        stats["bytes"] += n
        lat.append(t)
        if ok is None:
            stats["errors"] += 1
        elif not ok:
            stats["bad"] += 1
        if ok is not True and not first_problem:
            first_problem.append(what)


def pick(rng):
    off = rng.randrange(size)
    return off, rng.randint(1, min(args.max_len, size - off))


def files_reader(i, start):
    rng = random.Random(args.seed * 1000 + i)
    fd = os.open(args.file, os.O_RDONLY)
    ref = os.open(args.ref, os.O_RDONLY)
    start.wait()
    try:
        for _ in range(args.reads):
            off, n = pick(rng)
            t0 = time.monotonic()
            try:
                got = os.pread(fd, n, off)
            except OSError as e:
                note(None, 0, time.monotonic() - t0, f"{off}+{n}: {e}")
                continue
            t = time.monotonic() - t0
            note(got == os.pread(ref, n, off), len(got), t,
                 f"{off}+{n}: wrong bytes")
    finally:
        os.close(fd)
        os.close(ref)


def http_client(i, start):
    rng = random.Random(args.seed * 1000 + i)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ref = os.open(args.ref, os.O_RDONLY)
    conn = http.client.HTTPSConnection("127.0.0.1", args.port, context=ctx,
                                       timeout=120)
    start.wait()
    try:
        for _ in range(args.requests):
            off, n = pick(rng)
            t0 = time.monotonic()
            try:
                conn.request("GET", f"/v1/disks/{args.disk}", headers={
                    "Authorization": f"Bearer {args.token}",
                    "Range": f"bytes={off}-{off + n - 1}"})
                r = conn.getresponse()
                body = r.read()
            except (OSError, http.client.HTTPException) as e:
                note(None, 0, time.monotonic() - t0, f"{off}+{n}: {e!r}")
                conn.close()
                continue
            t = time.monotonic() - t0
            if r.status != 206:
                note(None, 0, t, f"{off}+{n}: HTTP {r.status}")
                continue
            note(body == os.pread(ref, n, off), len(body), t,
                 f"{off}+{n}: wrong bytes")
    finally:
        conn.close()
        os.close(ref)


n = args.threads if args.mode == "files" else args.clients
start = threading.Barrier(n)
work = files_reader if args.mode == "files" else http_client
threads = [threading.Thread(target=work, args=(i, start)) for i in range(n)]
t0 = time.monotonic()
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.monotonic() - t0
lat.sort()
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else 0
print(f"{args.mode}: {n} concurrent, {stats['reads']} reads, "
      f"{stats['bytes'] >> 20} MiB in {elapsed:.1f} s, {stats['bad']} wrong, "
      f"{stats['errors']} failed, p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms"
      + (f"; first problem: {first_problem[0]}" if first_problem else ""))
sys.exit(1 if stats["bad"] or stats["errors"] or
         stats["reads"] != n * (args.reads if args.mode == "files"
                                else args.requests) else 0)
