#!/usr/bin/python3
"""Memory per idle keep-alive connection of a running corecast (issue 4: aim < 4 KB in user space).

    bench/idle-memory.py --url http://127.0.0.1:8080/live/demo/source/index.m3u8 --pid PID -n 10000

Opens N connections, asks for the URL once on each (so every connection slot has served a
response and holds its warm buffers), reads every answer, then leaves them idle. Reports the
server's RSS before and after (from /proc/PID/status) and the kernel's TCP memory from
/proc/net/sockstat (pages of 4 KiB), each per connection. Connections are spread over source
addresses 127.0.0.2 and up (one per 10,000). Stops by itself: everything is closed at the end.
"""
import argparse
import os
import socket
import sys
import time
from urllib.parse import urlparse


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit(f"no VmRSS for pid {pid}")


def sockstat():
    """(TCP sockets in use, TCP memory pages) from /proc/net/sockstat."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                fields = line.split()
                values = dict(zip(fields[1::2], map(int, fields[2::2])))
                return values.get("inuse", 0), values.get("mem", 0)
    return 0, 0


def slab_bytes():
    """Bytes of the kernel's per-socket slab objects (TCP, socket inode), from /proc/slabinfo
    (root only; None otherwise)."""
    try:
        with open("/proc/slabinfo") as f:
            total = 0
            for line in f:
                fields = line.split()
                if fields and fields[0] in ("TCP", "sock_inode_cache"):
                    total += int(fields[1]) * int(fields[3])
            return total
    except OSError:
        return None


def read_response(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    status = int(head.split(b" ")[1])
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside the body")
        body += chunk
    return status


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("-n", type=int, default=10000)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds idle before measuring")
    args = parser.parse_args()
    url = urlparse(args.url)
    target = (url.hostname, url.port or 80)
    request = f"GET {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\n\r\n".encode()

    time.sleep(args.settle)
    rss_before = rss_kib(args.pid)
    tcp_before, pages_before = sockstat()
    slab_before = slab_bytes()
    socks = []
    started = time.time()
    try:
        for i in range(args.n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if target[0].startswith("127."):
                s.bind((f"127.0.0.{2 + i // 10000}", 0))
            s.connect(target)
            socks.append(s)
        for s in socks:
            s.sendall(request)
        bad = sum(read_response(s) != 200 for s in socks)
        if bad:
            raise SystemExit(f"{bad} of {len(socks)} requests were not answered 200")
        time.sleep(args.settle)
        rss_after = rss_kib(args.pid)
        tcp_after, pages_after = sockstat()
        slab_after = slab_bytes()
    finally:
        for s in socks:
            s.close()
    n = len(socks)
    user = (rss_after - rss_before) * 1024 / n
    # sockstat counts both ends of each loopback connection; the client side is idle and empty.
    kernel = (pages_after - pages_before) * 4096 / n
    print(f"connections: {n} idle keep-alive (each served one {url.path} first), "
          f"opened in {time.time() - started:.1f} s")
    print(f"server RSS: {rss_before} KiB -> {rss_after} KiB: {user:.0f} B per connection (user space)")
    print(f"TCP sockets in use: {tcp_before} -> {tcp_after}; TCP memory pages: {pages_before} -> "
          f"{pages_after}: {kernel:.0f} B per connection (kernel, both ends, buffers only)")
    if slab_before is not None and slab_after is not None:
        print(f"kernel socket objects (TCP + sock_inode_cache slabs): "
              f"{(slab_after - slab_before) / n:.0f} B per connection, both ends "
              f"(about half is the server's)")


if __name__ == "__main__":
    sys.exit(main())
