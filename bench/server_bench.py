#!/usr/bin/env python3
"""server_bench.py SDRT [MODEL] - request overhead and throughput of `sdrt serve`
on the tiny model (run by `make bench` with build/testenv's Python).

Overhead: 40 sequential A1111 txt2img requests (64x64, 2 steps, PNG in
base64): the client's wall time minus the job's own run time measured in the
server (generation + PNG encoding, i.e. what in-process generation costs),
p50/p99. Throughput: 48 jobs from 8 concurrent clients through POST
/v1/jobs + poll + image fetch, with 1 and 2 CPU workers (--threads 1 each)."""
import json
import subprocess
import sys
import threading
import time
import urllib.request

sdrt = sys.argv[1]
model = sys.argv[2] if len(sys.argv) > 2 else "tests/models/tiny-sd1"
BODY = {"prompt": "a red cube", "steps": 2, "width": 64, "height": 64, "seed": 1, "preview_every": 0}


def start(devices):
    p = subprocess.Popen([sdrt, "serve", "--model", model, "--port", "0", "--threads", "1", "--devices", devices,
                          "--queue-max", "1000", "--keep-jobs", "1000"], stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        if "serving on" in line:
            return p, line.strip().split()[-1]
    raise SystemExit("server did not start")


def req(url, body=None, method=None):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(r, timeout=120) as f:
        return f.read()


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


p, base = start("cpu")
try:
    for _ in range(3):
        req(base + "/sdapi/v1/txt2img", BODY)
    lat = []
    for i in range(40):
        t = time.perf_counter()
        req(base + "/sdapi/v1/txt2img", dict(BODY, seed=i))
        lat.append(time.perf_counter() - t)
    jobs = json.loads(req(base + "/v1/jobs"))["jobs"][-40:]
    run = [j["run_seconds"] for j in jobs]
    over = [(a - b) * 1e3 for a, b in zip(lat, run)]
    print(f"request overhead (A1111 txt2img 64x64 2 steps, client wall - in-server generation): "
          f"p50 {pct(over, 0.5):.2f} ms, p99 {pct(over, 0.99):.2f} ms; generation p50 {pct(run, 0.5) * 1e3:.1f} ms")
finally:
    p.terminate()
    p.wait()

for devices in ("cpu", "cpu,cpu"):
    p, base = start(devices)
    try:
        n, lock, idx = 48, threading.Lock(), [0]

        def client():
            while True:
                with lock:
                    i = idx[0]
                    idx[0] += 1
                if i >= n:
                    return
                jid = json.loads(req(base + "/v1/jobs", dict(BODY, seed=i, steps=8)))["id"]
                while json.loads(req(base + "/v1/jobs/" + jid))["status"] not in ("done", "failed", "cancelled"):
                    time.sleep(0.005)
                req(base + f"/v1/jobs/{jid}/images/0.png")

        t = time.perf_counter()
        th = [threading.Thread(target=client) for _ in range(8)]
        [x.start() for x in th]
        [x.join() for x in th]
        dt = time.perf_counter() - t
        print(f"throughput ({devices.count(',') + 1} worker{'s' if ',' in devices else ''}, 64x64 8 steps, 8 clients): "
              f"{n / dt:.1f} jobs/s ({n} jobs in {dt:.2f} s)")
    finally:
        p.terminate()
        p.wait()
