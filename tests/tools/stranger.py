#!/usr/bin/env python3
"""Strangers at ferryfs --listen, for its refusal tests; loopback only.

    stranger.py PORT silent       TCP, send nothing: print the seconds until
                                  the transit closed it ("open" after 40 s)
    stranger.py PORT tls-silent   a TLS handshake, then nothing: the same
    stranger.py PORT junk N       N connections at once: random bytes on a
                                  third, a TLS handshake and a bad hello on
                                  a third, nothing on the rest; hold them
                                  2 s, close them; print what each kind saw
"""
import os
import socket
import ssl
import sys
import time

port = int(sys.argv[1])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE


def until_closed(s):
    t0 = time.monotonic()
    s.settimeout(40)
    try:
        while s.recv(4096):
            pass
    except socket.timeout:
        return "open"
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    return "%.1f" % (time.monotonic() - t0)


def tcp():
    return socket.create_connection(("127.0.0.1", port), timeout=10)


mode = sys.argv[2]
if mode == "silent":
    print(until_closed(tcp()))
elif mode == "tls-silent":
    s = ctx.wrap_socket(tcp())
    print(until_closed(s))
elif mode == "junk":
    n = int(sys.argv[3])
    conns, seen = [], {"random": 0, "badhello": 0, "silent": 0, "refused": 0}
    for i in range(n):
        kind = ("random", "badhello", "silent")[i % 3]
        try:
            s = tcp()
            if kind == "random":
                s.sendall(os.urandom(512))
            elif kind == "badhello":
                s = ctx.wrap_socket(s)
                s.sendall(b"FERRY-SOURCE/1 \x00\xff junk junk\n")
            conns.append(s)
            seen[kind] += 1
        except (ConnectionError, ssl.SSLError, OSError):
            seen["refused"] += 1
    time.sleep(2)
    for s in conns:
        s.close()
    print(" ".join("%s=%d" % kv for kv in seen.items()))
