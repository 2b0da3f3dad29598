#!/usr/bin/env python3
"""Hostile HTTPS clients for ferry-export's tests, loopback only.

    rawhttp.py PORT send FILE        send FILE's bytes as a request, print
                                     the status code (or "closed")
    rawhttp.py PORT slowloris        send a request's headers a byte every
                                     0.3 s; print seconds until the server
                                     closed the connection
    rawhttp.py PORT flood N TOKEN    open N connections at once, then send
                                     a request on each; print how many got
                                     each status
    rawhttp.py PORT badtokens N      N requests with wrong tokens; print
                                     how many got 401
"""
import collections
import socket
import ssl
import sys
import time

port = int(sys.argv[1])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE


def connect():
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    return ctx.wrap_socket(s)


def status(s):
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except (OSError, ssl.SSLError):
        pass
    if not data.startswith(b"HTTP/1."):
        return "closed"
    return data.split(b" ", 2)[1].decode()


def request(path, token):
    return (f"GET {path} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {token}\r\n\r\n").encode()


cmd = sys.argv[2]
if cmd == "send":
    s = connect()
    s.sendall(open(sys.argv[3], "rb").read())
    print(status(s))
elif cmd == "slowloris":
    s = connect()
    t0 = time.monotonic()
    try:
        for b in b"GET /v1/disks HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200:
            s.sendall(bytes([b]))
            time.sleep(0.3)
        print("never closed")
        sys.exit(0)
    except (OSError, ssl.SSLError):
        pass
    print(f"{time.monotonic() - t0:.1f}")
elif cmd == "flood":
    n, token = int(sys.argv[3]), sys.argv[4]
    socks = []
    for _ in range(n):
        try:
            socks.append(connect())
        except (OSError, ssl.SSLError):
            socks.append(None)
    counts = collections.Counter()
    for s in socks:
        if s is None:
            counts["refused"] += 1
            continue
        try:
            s.sendall(request("/v1/disks", token))
            counts[status(s)] += 1
        except (OSError, ssl.SSLError):
            counts["closed"] += 1
    print(" ".join(f"{k}={v}" for k, v in sorted(counts.items())))
elif cmd == "badtokens":
    n = int(sys.argv[3])
    got = 0
    for i in range(n):
        s = connect()
        s.sendall(request("/v1/disks", f"guess-{i}"))
        got += status(s) == "401"
        s.close()
    print(got)
