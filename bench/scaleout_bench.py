#!/usr/bin/env python3
"""scaleout_bench.py SDRT [MODEL] - throughput of `sdrt worker`s behind Redis
Streams on one machine, and the time from a worker's death to its job's
completion elsewhere (run by `make bench`; docs/scale-out.md).

Starts its own redis-server (unix socket in a temp dir, AOF on as in
production, appendfsync everysec), one `sdrt serve --redis` front-end and 1,
2, then 3 `sdrt worker`s (--threads 1 each) on the tiny model. Throughput: 96
native jobs (64x64, 8 steps, distinct seeds) from 8 concurrent clients through
POST /v1/jobs + its SSE stream to the end + image fetch, jobs per second of wall time. Failover: with
2 workers (--claim-idle 2000), a 128x128 60-step job is SIGKILLed on the worker
running it after its first step; measured: kill -> result (median of 3), next to
the job's own run time. Prints one line per figure."""
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sdrt = sys.argv[1]
model = sys.argv[2] if len(sys.argv) > 2 else "tests/models/tiny-sd1"
name = os.path.basename(model.rstrip("/")).removesuffix(".safetensors")
N_JOBS, N_CLIENTS, CLAIM_IDLE_MS = 96, 8, 2000
tmp = tempfile.mkdtemp(prefix="sdrt-scaleout-")
sock = os.path.join(tmp, "redis.sock")
url = "unix://" + sock
procs = []


def cli(*args):
    r = subprocess.run(["redis-cli", "-s", sock, *args], capture_output=True, text=True, timeout=10)
    return r.stdout.strip()


def start_redis():
    p = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700", "--dir", tmp,
                          "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--logfile",
                          os.path.join(tmp, "redis.log")])
    for _ in range(100):
        try:
            if cli("PING") == "PONG":
                return p
        except subprocess.SubprocessError:
            pass
        time.sleep(0.05)
    raise SystemExit("redis-server did not start")


gen = [0]


def start_worker():
    gen[0] += 1
    wname = f"bw{gen[0]}"
    log = open(os.path.join(tmp, wname + ".log"), "w")
    p = subprocess.Popen([sdrt, "worker", "--redis", url, "--model", model, "--threads", "1", "--name", wname,
                          "--claim-idle", str(CLAIM_IDLE_MS)], stderr=log)
    for _ in range(600):
        if cli("EXISTS", f"sdrt:worker:{wname}") == "1":
            return p, wname
        if p.poll() is not None:
            raise SystemExit(f"worker {wname} exited with {p.returncode} (log {log.name})")
        time.sleep(0.1)
    raise SystemExit("worker did not join")


def start_frontend():
    p = subprocess.Popen([sdrt, "serve", "--redis", url, "--model", name, "--port", "0", "--queue-max", "1000",
                          "--keep-jobs", "1000", "--preview-every", "0"], stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        if "serving on" in line:
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            return p, line.split("serving on ")[1].split()[0]
    raise SystemExit("front-end did not start")


def req(base, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(r, timeout=300) as f:
        return f.read()


def run_job(base, seed, side=64, steps=8):
    body = {"prompt": "a red cube", "steps": steps, "width": side, "height": side, "seed": seed, "preview_every": 0}
    jid = json.loads(req(base, "/v1/jobs", body))["id"]
    req(base, f"/v1/jobs/{jid}/events")  # the SSE stream ends with the job (no polling)
    st = json.loads(req(base, f"/v1/jobs/{jid}"))
    if st["status"] != "done":
        raise SystemExit(f"job {jid}: {st}")
    req(base, f"/v1/jobs/{jid}/images/0.png")
    return st


def throughput(base, seed0):
    seeds = list(range(seed0, seed0 + N_JOBS))
    lock = threading.Lock()

    def client():
        while True:
            with lock:
                if not seeds:
                    return
                s = seeds.pop()
            run_job(base, s)

    t0 = time.time()
    ts = [threading.Thread(target=client) for _ in range(N_CLIENTS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return N_JOBS / (time.time() - t0)


def stop(p, sig=signal.SIGTERM):
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


try:
    procs.append(start_redis())
    fe, base = start_frontend()
    procs.append(fe)
    workers = [start_worker()]
    run_job(base, 1)  # nothing measured before one job went through
    for n in (1, 2, 3):
        while len(workers) < n:
            workers.append(start_worker())
        run_job(base, 2)  # the new worker joined (workers warm up before they take jobs)
        print(f"throughput, {n} worker{'s' if n > 1 else ''} (--threads 1 each), {N_JOBS} jobs 64x64 8 steps, "
              f"{N_CLIENTS} clients: {throughput(base, 1000 * n):.1f} jobs/s", flush=True)
    while len(workers) > 2:
        stop(workers.pop()[0])
    alone = [run_job(base, 5000 + i, 128, 60)["run_seconds"] for i in range(2)]
    fails = []
    for i in range(3):
        body = {"prompt": "a red cube", "steps": 60, "width": 128, "height": 128, "seed": 6000 + i, "preview_every": 0}
        jid = json.loads(req(base, "/v1/jobs", body))["id"]
        while True:
            st = json.loads(req(base, f"/v1/jobs/{jid}"))
            if st["status"] == "running" and st.get("step", 0) >= 1:
                break
            time.sleep(0.005)
        victim = next(k for k, (p, w) in enumerate(workers) if st.get("device", "").startswith(w + "/") or st.get("device") == w)
        t_kill = time.time()
        workers[victim][0].send_signal(signal.SIGKILL)
        workers[victim][0].wait()
        while st["status"] not in ("done", "failed", "cancelled"):
            time.sleep(0.01)
            st = json.loads(req(base, f"/v1/jobs/{jid}"))
        if st["status"] != "done":
            raise SystemExit(f"failover job {jid}: {st}")
        fails.append(time.time() - t_kill)
        workers[victim] = start_worker()
    print(f"failover: SIGKILL of the worker running a 128x128 60-step job -> its result from the other worker: "
          f"median {statistics.median(fails):.2f} s (runs {', '.join('%.2f' % f for f in fails)}; claim idle "
          f"{CLAIM_IDLE_MS / 1000:.1f} s; the job alone runs {statistics.median(alone):.2f} s)", flush=True)
finally:
    for p in reversed(procs[1:] + [w[0] for w in locals().get("workers", [])]):
        stop(p)
    if procs:
        stop(procs[0])
    shutil.rmtree(tmp, ignore_errors=True)
