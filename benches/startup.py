#!/usr/bin/env python3
"""Start-up time and memory of the gateway with three Python policies on two worker threads.

Usage: .venv/bin/python benches/startup.py [--binary target/release/edgewarden] [--repeats 7]
                                           [--requests 3000] [--connections 16]

1. Time from process start to ready (admin /readyz answers 200). The first start fills a fresh
   cache directory (componentize-py build + native precompile of geo_router, identity_headers,
   require_claim) and is reported separately; then each repeat starts the gateway on the warm
   cache and polls /readyz every 2 ms.
2. Memory: one more start, then `--requests` requests spread over the three policy routes from
   `--connections` keep-alive connections at once, to a real origin on loopback (a threaded
   Python HTTP server), so every policy's instance pool grows to what concurrency demands. Reports
   the gateway's resident memory when ready and its peak (VmHWM) after the traffic, from
   /proc/PID/status, and checks every answer (200 forwarded, 403 from require_claim).
"""
import argparse
import http.client
import http.server
import os
import pathlib
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(directory, cache, origin_port=9):
    listen, admin = free_port(), free_port()
    text = f"""
[server]
listen = ["127.0.0.1:{listen}"]
admin_listen = "127.0.0.1:{admin}"
threads = 2
policies_dir = "{ROOT / 'policies'}"
plugins_dir = "{ROOT / 'python-plugins'}"
plugin_cache_dir = "{cache}"

[[origins]]
name = "global"
upstreams = ["127.0.0.1:{origin_port}"]
[[origins]]
name = "uk"
upstreams = ["127.0.0.1:{origin_port}"]
[[origins]]
name = "fr"
upstreams = ["127.0.0.1:{origin_port}"]

[[routes]]
name = "geo"
path_prefix = "/geo"
origin = "global"
auth = "off"
policies = ["geo"]

[[routes]]
name = "identity"
path_prefix = "/me"
origin = "global"
auth = "off"
policies = ["identity", "admins-only"]
"""
    path = directory / "startup.toml"
    path.write_text(text)
    return path, admin, listen


def start_ready(binary, config, admin, limit=900.0):
    """Start the gateway and wait for /readyz; returns the process and the seconds it took."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [binary, "run", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "EDGEWARDEN_LOG": "warn"},
    )
    while time.monotonic() - started < limit:
        if proc.poll() is not None:
            raise SystemExit(f"gateway exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc, time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.002)
    proc.terminate()
    raise SystemExit("gateway not ready in time")


def time_to_ready(binary, config, admin):
    proc, seconds = start_ready(binary, config, admin)
    proc.terminate()
    proc.wait()
    return seconds


def memory_kib(pid, field):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise SystemExit(f"no {field} in /proc/{pid}/status")


class Origin(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


class OriginServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default (5) drops bursts of new upstream connections


def drive(port, requests, connections):
    """Send `requests` GETs over `connections` keep-alive connections; returns status counts."""
    paths = ["/geo/a", "/me/a", "/me/b"]
    counts = {}
    lock = threading.Lock()

    def worker(share):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        seen = {}
        for i in range(share):
            conn.request("GET", paths[i % len(paths)])
            response = conn.getresponse()
            response.read()
            seen[response.status] = seen.get(response.status, 0) + 1
        conn.close()
        with lock:
            for status, n in seen.items():
                counts[status] = counts.get(status, 0) + n

    threads = [threading.Thread(target=worker, args=(requests // connections,)) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def measure_memory(binary, tmp, cache, requests, connections):
    origin = OriginServer(("127.0.0.1", 0), Origin)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    config, admin, listen = write_config(tmp, cache, origin.server_address[1])
    proc, _ = start_ready(binary, config, admin)
    try:
        ready = memory_kib(proc.pid, "VmRSS")
        counts = drive(listen, requests, connections)
        peak = memory_kib(proc.pid, "VmHWM")
        now = memory_kib(proc.pid, "VmRSS")
    finally:
        proc.terminate()
        proc.wait()
        origin.shutdown()
    # /geo is forwarded (200 from the origin); /me runs identity then require_claim, which
    # answers 403 (auth is off: no claims).
    share = requests // connections
    forwarded = (share + 2) // 3
    expected = {200: forwarded * connections, 403: (share - forwarded) * connections}
    if counts != expected:
        raise SystemExit(f"unexpected answers: {counts}, expected {expected}")
    print(f"memory (3 policies, 2 threads): {ready / 1024:.0f} MiB resident when ready; "
          f"after {sum(counts.values())} requests from {connections} connections "
          f"({counts[200]} forwarded, {counts[403]} answered 403 by require_claim): "
          f"{now / 1024:.0f} MiB resident, peak {peak / 1024:.0f} MiB")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=str(ROOT / "target/release/edgewarden"))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        cache = tmp / "cache"
        config, admin, _ = write_config(tmp, cache)
        first = time_to_ready(args.binary, config, admin)
        print(f"first start (build + precompile 3 plugins): {first * 1000:.0f} ms")
        times = []
        for _ in range(args.repeats):
            config, admin, _ = write_config(tmp, cache)
            times.append(time_to_ready(args.binary, config, admin))
        shown = ", ".join(f"{t * 1000:.0f}" for t in times)
        print(f"second start, ready: median {statistics.median(times) * 1000:.0f} ms "
              f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}; all: {shown})")
        measure_memory(args.binary, tmp, cache, args.requests, args.connections)


if __name__ == "__main__":
    main()
