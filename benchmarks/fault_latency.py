"""How fast the local launcher reports a failure, and cleans up after its own death (issue 15):
a raising rank, a rank hanging before a world collective and before a mesh sub-group collective
(``--collective-timeout 5``), and the seconds until no process of a run is left after the
launcher is killed with SIGKILL in a hang. Also how long bad input takes to be refused by
``run``, before torch is imported and (``--device cuda`` on this CPU-only machine) after.

    .venv/bin/python benchmarks/fault_latency.py
"""

import os
import signal
import subprocess
import sys
import time

import psutil
from _machine import machine

CLI = [sys.executable, "-m", "helixlib", "run", "--json"]
CASES = {
    "raise (4x4, rank 5, out_proj_allreduce)": ["-n", "4", "-m", "4", "--inject-fault", "5:out_proj_allreduce:raise"],
    "hang, world group (4x4, rank 5, scores_allreduce)": ["-n", "4", "-m", "4", "--collective-timeout", "5",
                                                          "--inject-fault", "5:scores_allreduce:hang"],
    "hang, mesh sub-group (2x2 concat, rank 0, o_gather_groups.backward)": [
        "-n", "2", "-m", "2", "--output", "concat", "--backward", "--collective-timeout", "5",
        "--inject-fault", "0:o_gather_groups.backward:hang"],
    "bad input before torch (-n 3)": ["-n", "3"],
    "bad input after torch (--device cuda, no GPU)": ["--device", "cuda"],
}


def timed(args) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    r = subprocess.run(CLI + args, capture_output=True, text=True, timeout=600)
    return time.perf_counter() - t0, r.returncode, r.stderr.strip().splitlines()[0][:110]


def orphans_after_sigkill() -> float:
    """Seconds from SIGKILL of a hanging launcher until none of its processes is left."""
    proc = subprocess.Popen(CLI + ["-n", "2", "-m", "2", "--collective-timeout", "120", "--inject-fault",
                                   "3:scores_allreduce:hang"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tree: set[int] = set()
    while len(tree) < 6:  # 4 ranks, the fork server, the resource tracker
        tree |= {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        time.sleep(0.1)
    time.sleep(5)
    proc.send_signal(signal.SIGKILL)
    t0 = time.perf_counter()
    proc.wait()
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in tree):
        time.sleep(0.05)
    return time.perf_counter() - t0


def main():
    print(machine(), f"load average {os.getloadavg()[0]:.1f}")
    for name, args in CASES.items():
        seconds, code, first = timed(args)
        print(f"{name}: {seconds:.1f} s, exit {code}\n    {first}")
    print(f"SIGKILL of the launcher in a hang: no process left after {orphans_after_sigkill():.2f} s")


if __name__ == "__main__":
    main()
