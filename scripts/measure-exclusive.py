#!/usr/bin/env python3
"""How to keep a timed measurement quiet on a small machine: the options arctl's
`measure = "exclusive"` could use, measured. A ~0.16 s CPU-bound Python metric runs with
BURNERS neighbours each burning a core (an agent running its tests), under five regimes,
interleaved in random order: quiet (the neighbours stopped throughout: the reference),
none (nothing done), pin (metric pinned to core 0, neighbours to core 1), sigstop (the
neighbours stopped with SIGSTOP for the run, SIGCONT after: what arctl does) and freezer
(the cgroup v1 freezer; root only, skipped otherwise). Prints each regime's median, its
distance from quiet, its robust cv, and the freeze/thaw latencies.

Usage: scripts/measure-exclusive.py [ITERATIONS=1500000] [BURNERS=1] [RUNS=25]
"""
import os, random, signal, statistics as st, subprocess, sys, tempfile, time
N = sys.argv[1] if len(sys.argv) > 1 else "1500000"
BURNERS = int(sys.argv[2]) if len(sys.argv) > 2 else 1
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 25
FZ = "/sys/fs/cgroup/freezer/arctl-excl-test"
try:
    os.makedirs(FZ, exist_ok=True)
    FREEZER = os.access(FZ + "/freezer.state", os.W_OK)
except OSError:
    FREEZER = False
tmp = tempfile.mkdtemp(prefix="arctl-excl-")
open(tmp + "/metric.py", "w").write("""import sys
n = int(sys.argv[1])
s = 0
for i in range(n):
    s += i * i % 7
print(s)
""")
open(tmp + "/burn.py", "w").write("while True:\n    pass\n")
burners = [subprocess.Popen([sys.executable, tmp + "/burn.py"]) for _ in range(BURNERS)]
def fz(state):
    with open(FZ + "/freezer.state", "w") as f: f.write(state)
    while open(FZ + "/freezer.state").read().strip() != state: pass
def stopped(p):
    return open(f"/proc/{p.pid}/stat").read().split(") ")[1].split()[0] == "T"
def pin(cpus):
    for b in burners: os.sched_setaffinity(b.pid, cpus)
def metric(pre=None):
    cmd = [sys.executable, tmp + "/metric.py", N]
    if pre: cmd = pre + cmd
    t = time.perf_counter(); subprocess.run(cmd, stdout=subprocess.DEVNULL); return time.perf_counter() - t
res = {k: [] for k in ["quiet", "none", "pin", "sigstop"] + (["freezer"] if FREEZER else [])}
lat = {"sigstop": [], "sigcont": [], "freeze": [], "thaw": []}
for r in range(ROUNDS):
    order = list(res); random.shuffle(order)
    for o in order:
        if o == "quiet":
            for b in burners: os.kill(b.pid, signal.SIGSTOP)
            while not all(stopped(b) for b in burners): pass
            time.sleep(0.05); res[o].append(metric())
            for b in burners: os.kill(b.pid, signal.SIGCONT)
        elif o == "none":
            time.sleep(0.05); res[o].append(metric())
        elif o == "pin":
            pin({1}); time.sleep(0.05)
            res[o].append(metric(["taskset", "-c", "0"])); pin({0, 1})
        elif o == "sigstop":
            time.sleep(0.05)
            t = time.perf_counter()
            for b in burners: os.kill(b.pid, signal.SIGSTOP)
            while not all(stopped(b) for b in burners): pass
            lat["sigstop"].append(time.perf_counter() - t)
            res[o].append(metric())
            t = time.perf_counter()
            for b in burners: os.kill(b.pid, signal.SIGCONT)
            lat["sigcont"].append(time.perf_counter() - t)
        elif o == "freezer":
            for b in burners:
                with open(FZ + "/cgroup.procs", "w") as f: f.write(str(b.pid))
            time.sleep(0.05)
            t = time.perf_counter(); fz("FROZEN"); lat["freeze"].append(time.perf_counter() - t)
            res[o].append(metric())
            t = time.perf_counter(); fz("THAWED"); lat["thaw"].append(time.perf_counter() - t)
            for b in burners:
                with open("/sys/fs/cgroup/freezer/cgroup.procs", "w") as f: f.write(str(b.pid))
for b in burners: b.kill()
if FREEZER: os.rmdir(FZ)
q = st.median(res["quiet"])
print(f"burners {BURNERS}, {ROUNDS} runs each; load avg {os.getloadavg()[0]:.2f}")
for k, v in res.items():
    med = st.median(v); mad = st.median([abs(x - med) for x in v]) * 1.4826
    print(f"{k:8} median {med*1000:7.1f} ms  ({(med/q-1)*100:+5.1f}% vs quiet)  robust cv {mad/med*100:5.2f}%  max {max(v)*1000:.0f} ms")
for k, v in lat.items():
    if not v: continue
    print(f"latency {k:8} median {st.median(v)*1e6:.0f} us  max {max(v)*1e6:.0f} us")
