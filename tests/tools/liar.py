#!/usr/bin/env python3
"""A lying man in the middle for ferry's tests, loopback only.

    liar.py --upstream PORT --port-file FILE --cert CERT --key KEY
            --lie KIND [--count K]

Ends TLS with CERT/KEY (the exporter's own key: the man in the middle the
pin cannot catch), forwards each request to the ferry-export on
127.0.0.1:PORT over TLS, reads the whole answer and, for the first K answers
the lie applies to (all of them with K = 0), rewrites it into well-formed
HTTP that says something false:

    range-start    a data 206 whose Content-Range starts 512 bytes later
    range-total    a data 206 whose Content-Range gives another disk size
    status-200     a data 206 turned into a 200 (a server ignoring Range)
    status-500     a data answer replaced by a 500
    extra          a data body with 4096 bytes more (Content-Length too)
    short          a data body cut in half (Content-Length too)
    listing-json   GET /v1/disks answered with truncated JSON
    extents-json   GET .../extents answered with something not JSON
    extents-overlap  an extent map whose second entry overlaps the first
    extents-oob    an extent map with an entry past the end of the disk
    digests-json   GET .../digests answered with garbage
    digests-wrong  GET .../digests with the first digest changed
                   (both also take every data answer's in-band
                   Ferry-Digests out, as an exporter without them would,
                   so that the client asks .../digests)
    small-flip     a data answer with in-band digests (Ferry-Digests, a
                   small read's) with its first byte changed
    inband-wrong   the same answer with the first of those digests changed

Answers are sent back with Content-Length (never chunked). On SIGTERM it
exits, printing on stderr how many answers it forwarded, how many lies it
told and how many GET .../digests it saw.
"""
import argparse
import asyncio
import json
import os
import signal
import ssl
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--upstream", type=int, required=True)
ap.add_argument("--port-file", required=True)
ap.add_argument("--cert", required=True)
ap.add_argument("--key", required=True)
ap.add_argument("--lie", required=True)
ap.add_argument("--count", type=int, default=0)
args = ap.parse_args()

DATA = {"range-start", "range-total", "status-200", "status-500", "extra",
        "short"}
INBAND = {"small-flip", "inband-wrong"}
LIES = DATA | INBAND | {"listing-json", "extents-json", "extents-overlap",
                        "extents-oob", "digests-json", "digests-wrong"}
if args.lie not in LIES:
    sys.exit(f"liar: unknown lie {args.lie!r}")

answers = 0
lies = 0
asked_digests = 0	# GET .../digests requests seen


class Answer:
    def __init__(self, status, reason, headers, body):
        self.status, self.reason = status, reason
        self.headers, self.body = headers, body

    def get(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def set(self, name, value):
        self.drop(name)
        if value is not None:
            self.headers.append((name, value))

    def drop(self, name):
        self.headers = [(k, v) for k, v in self.headers
                        if k.lower() != name.lower()]


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")[:-2]
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    return lines[0], headers


async def read_answer(reader, head_only):
    first, headers = await read_head(reader)
    _, status, reason = (first.split(" ", 2) + [""])[:3]
    a = Answer(int(status), reason, headers, b"")
    if head_only or a.status in (204, 304):
        return a
    if (a.get("Transfer-Encoding") or "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        a.body = bytes(body)
        a.drop("Transfer-Encoding")
    elif a.get("Content-Length") is not None:
        a.body = await reader.readexactly(int(a.get("Content-Length")))
    else:
        a.body = await reader.read()
    return a


def applies(path, a):
    base = path.split("?")[0]
    if args.lie in INBAND:
        return a.status == 206 and a.get("Ferry-Digests") is not None
    if args.lie in DATA:
        return (base.startswith("/v1/disks/") and base.count("/") == 3
                and a.status in (200, 206))
    if args.lie.startswith("listing"):
        return base == "/v1/disks"
    if args.lie.startswith("extents"):
        return base.endswith("/extents")
    return base.endswith("/digests")


def lie(a):
    kind = args.lie
    if kind in ("range-start", "range-total"):
        unit, _, spec = (a.get("Content-Range") or "").partition(" ")
        rng, _, total = spec.partition("/")
        start, _, end = rng.partition("-")
        start, end, total = int(start), int(end), int(total)
        if kind == "range-start":
            start, end = start + 512, end + 512
        else:
            total += 1 << 20
        a.set("Content-Range", f"bytes {start}-{end}/{total}")
    elif kind == "status-200":
        a.status, a.reason = 200, "OK"
        a.drop("Content-Range")
    elif kind == "status-500":
        a.status, a.reason = 500, "Internal Server Error"
        a.drop("Content-Range")
        a.drop("Content-Encoding")
        a.body = b"the liar says no\n"
    elif kind == "extra":
        a.body += os.urandom(4096)
    elif kind == "short":
        a.body = a.body[:len(a.body) // 2]
    elif kind == "listing-json":
        a.body = a.body[:len(a.body) // 2]
    elif kind == "extents-json":
        a.body = b"<html>no</html>"
    elif kind in ("extents-overlap", "extents-oob"):
        m = json.loads(a.body)
        ext = m["extents"]
        if kind == "extents-overlap":
            off, length, what = ext[0]
            ext.insert(1, [off + length // 2, length, what])
        else:
            ext.append([m["size"], 1 << 20, "data"])
        a.body = json.dumps(m).encode()
    elif kind == "small-flip":
        a.body = bytes([a.body[0] ^ 0xff]) + a.body[1:]
    elif kind == "inband-wrong":
        alg, block, first, hexes = a.get("Ferry-Digests").split(" ")
        h = ("0" if hexes[0] != "0" else "1") + hexes[1:]
        a.set("Ferry-Digests", f"{alg} {block} {first} {h}")
    elif kind == "digests-json":
        a.body = b'{"algorithm":"xxh3-128","digests":[1,2'
    elif kind == "digests-wrong":
        m = json.loads(a.body)
        d = m["digests"][0]
        m["digests"][0] = ("0" if d[0] != "0" else "1") + d[1:]
        a.body = json.dumps(m).encode()


def encode(a, head_only):
    out = [f"HTTP/1.1 {a.status} {a.reason}"]
    a.drop("Content-Length")
    for k, v in a.headers:
        out.append(f"{k}: {v}")
    if not head_only:
        out.append(f"Content-Length: {len(a.body)}")
    data = ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")
    return data if head_only else data + a.body


async def handle(creader, cwriter):
    global answers, lies, asked_digests
    up = ssl.create_default_context()
    up.check_hostname = False
    up.verify_mode = ssl.CERT_NONE
    try:
        ureader, uwriter = await asyncio.open_connection(
            "127.0.0.1", args.upstream, ssl=up)
    except OSError:
        cwriter.close()
        return
    try:
        while True:
            first, headers = await read_head(creader)
            method, path = first.split(" ")[:2]
            if path.split("?")[0].endswith("/digests"):
                asked_digests += 1
            req = [first] + [f"{k}: {v}" for k, v in headers]
            uwriter.write(("\r\n".join(req) + "\r\n\r\n").encode("latin-1"))
            await uwriter.drain()
            a = await read_answer(ureader, method == "HEAD")
            answers += 1
            if args.lie.startswith("digests-"):
                a.drop("Ferry-Digests")
            if applies(path, a) and (args.count == 0 or lies < args.count):
                lies += 1
                lie(a)
            cwriter.write(encode(a, method == "HEAD"))
            await cwriter.drain()
    except (asyncio.IncompleteReadError, ConnectionError, OSError,
            ssl.SSLError, ValueError):
        pass
    finally:
        cwriter.close()
        uwriter.close()


async def main():
    srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    srv.load_cert_chain(args.cert, args.key)
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=srv,
                                        limit=1 << 20)
    port = server.sockets[0].getsockname()[1]
    with open(args.port_file + ".tmp", "w") as f:
        f.write(f"{port}\n")
    os.rename(args.port_file + ".tmp", args.port_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    server.close()
    print(f"liar: {answers} answers, {lies} lies, {asked_digests} digests "
          "asked", file=sys.stderr)


asyncio.run(main())
