#!/usr/bin/env python3
"""Time from process start to ready (admin /readyz answers 200) with three Python policies, on a
second start (plugins already built and precompiled in the cache), as the issue's target states.

Usage: .venv/bin/python benches/startup.py [--binary target/release/edgewarden] [--repeats 7]

The first start fills a fresh cache directory (componentize-py build + native precompile of
geo_router, identity_headers, require_claim) and is reported separately; then each repeat starts
the gateway on the warm cache and polls /readyz every 2 ms.
"""
import argparse
import os
import pathlib
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(directory, cache):
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
upstreams = ["127.0.0.1:9"]
[[origins]]
name = "uk"
upstreams = ["127.0.0.1:9"]
[[origins]]
name = "fr"
upstreams = ["127.0.0.1:9"]

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
    return path, admin


def time_to_ready(binary, config, admin, limit=900.0):
    started = time.monotonic()
    proc = subprocess.Popen(
        [binary, "run", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "EDGEWARDEN_LOG": "warn"},
    )
    try:
        while time.monotonic() - started < limit:
            if proc.poll() is not None:
                raise SystemExit(f"gateway exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.002)
        raise SystemExit("gateway not ready in time")
    finally:
        proc.terminate()
        proc.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=str(ROOT / "target/release/edgewarden"))
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        cache = tmp / "cache"
        config, admin = write_config(tmp, cache)
        first = time_to_ready(args.binary, config, admin)
        print(f"first start (build + precompile 3 plugins): {first * 1000:.0f} ms")
        times = []
        for _ in range(args.repeats):
            config, admin = write_config(tmp, cache)
            times.append(time_to_ready(args.binary, config, admin))
        shown = ", ".join(f"{t * 1000:.0f}" for t in times)
        print(f"second start, ready: median {statistics.median(times) * 1000:.0f} ms "
              f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}; all: {shown})")


if __name__ == "__main__":
    main()
