#!/usr/bin/env python3
"""A fault-injecting TCP proxy for ferry's tests, loopback only.

    faultproxy.py --upstream PORT --port-file FILE [--fault KIND:N] [--count K]
                  [--mitm CERT KEY]

Listens on 127.0.0.1 (a free port, written to FILE once listening) and
forwards each connection to 127.0.0.1:PORT. The first K connections (all of
them with K = 0) get the fault, in the server-to-client direction, once N
bytes have passed:

    reset:N     the connection is reset (RST)
    truncate:N  the connection is closed cleanly (FIN) mid-stream
    stall:N     nothing more is forwarded; the connection stays open
    flip:N      byte N is inverted, then forwarding goes on

With --mitm the proxy ends TLS itself with CERT/KEY (the man in the middle
who has the right key) and talks TLS to the upstream, so the faults hit
the plaintext HTTP stream: a flipped byte reaches the client as data.

On SIGTERM it closes everything and exits. Counts of connections and faults
are printed on stderr.
"""
import argparse
import asyncio
import os
import signal
import socket
import ssl
import struct
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--upstream", type=int, required=True)
ap.add_argument("--port-file", required=True)
ap.add_argument("--fault", default="")
ap.add_argument("--count", type=int, default=0)
ap.add_argument("--mitm", nargs=2, metavar=("CERT", "KEY"))
args = ap.parse_args()

kind, _, at = args.fault.partition(":")
at = int(at) if at else 0
if kind not in ("", "reset", "truncate", "stall", "flip"):
    sys.exit(f"faultproxy: unknown fault {kind!r}")

conns = 0
faults = 0
stalled = []


def reset(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, 0))
    writer.transport.abort()


async def pump(reader, writer, faulty):
    global faults
    sent = 0
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            if faulty and sent <= at < sent + len(data):
                k = at - sent
                faults += 1
                if kind == "flip":
                    data = data[:k] + bytes([data[k] ^ 0xFF]) + data[k + 1:]
                else:
                    writer.write(data[:k])
                    await writer.drain()
                    if kind == "reset":
                        reset(writer)
                    elif kind == "truncate":
                        writer.close()
                    else:  # stall: hold the connection, send nothing
                        stalled.append(writer)
                        await asyncio.Event().wait()
                    return
            writer.write(data)
            await writer.drain()
            sent += len(data)
    except (ConnectionError, OSError, ssl.SSLError):
        pass
    finally:
        if writer not in stalled:
            writer.close()


async def client_up(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def handle(creader, cwriter):
    global conns
    conns += 1
    faulty = bool(kind) and (args.count == 0 or conns <= args.count)
    try:
        up_ssl = None
        if args.mitm:
            up_ssl = ssl.create_default_context()
            up_ssl.check_hostname = False
            up_ssl.verify_mode = ssl.CERT_NONE
        ureader, uwriter = await asyncio.open_connection(
            "127.0.0.1", args.upstream, ssl=up_ssl)
    except OSError:
        reset(cwriter)
        return
    try:
        await asyncio.gather(client_up(creader, uwriter),
                             pump(ureader, cwriter, faulty))
    except asyncio.CancelledError:  # shutting down with stalled streams
        pass


async def main():
    srv_ssl = None
    if args.mitm:
        srv_ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        srv_ssl.load_cert_chain(args.mitm[0], args.mitm[1])
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=srv_ssl)
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
    print(f"faultproxy: {conns} connections, {faults} faults",
          file=sys.stderr)


asyncio.run(main())
