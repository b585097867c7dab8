"""ExecSync benchmark, run inside tests/integration/run-harness by bench/run-exec.

One host-network pod with one running busybox container (`sleep 1000`). Then, interleaved in the
same run so that both see the same machine:

1. ExecSync of `true`, serial: p50 and p90 round trip from the gRPC client;
2. the OCI runtime alone on the same container: `runc exec <id> true` (in the foreground, as a
   shell would) and `runc exec --detach` (what rktlet runs), timed around the process;
3. 20 ExecSyncs in flight at once, 200 in all: their p50, calls/s, and the CPU the daemon spent per
   call, alone and with its children (the runtime it runs), from /proc/<pid>/stat.

Python's grpcio costs ~0.2 ms per call, small next to the ~50 ms of a runtime exec."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.environ["RKTLET_SOURCE_DIR"], "tests", "integration"))
sys.path.insert(0, os.path.join(os.environ["RKTLET_SOURCE_DIR"], "bench"))
from rktlet_test import stubs  # noqa: E402
from containers import Bench, pct, registry_and_daemon  # noqa: E402

pb, _ = stubs()
SERIAL = int(os.environ.get("BENCH_SERIAL", "50"))
WARMUP = 3
CONCURRENT, CONCURRENCY = int(os.environ.get("BENCH_CONCURRENT", "200")), 20
TARGET = 1.2  # ExecSync p50 / bare `runc exec` p50


def cpu_ticks(pid):
    """(utime + stime, cutime + cstime) of pid, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def main():
    work = tempfile.mkdtemp(prefix="bench-exec-")
    _, _, ref, d = registry_and_daemon(work)
    problems = []
    try:
        d.images().PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=120)
        b = Bench(d, ref)
        cid, _, _ = b.run("exec")
        runtime = b.runtime_binary(cid) or shutil.which("runc")
        root = os.path.join(d.dir, "run", "runc")
        stub = d.runtime()

        def exec_sync():
            t0 = time.perf_counter()
            resp = stub.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["true"], timeout=10), timeout=30)
            if resp.exit_code != 0:
                problems.append(f"ExecSync true exited {resp.exit_code}")
            return time.perf_counter() - t0

        def bare(detach):
            pidfile = os.path.join(work, "bare.pid")
            args = [runtime, "--root", root, "exec"] + (["--detach", "--pid-file", pidfile] if detach else []) + [cid, "true"]
            t0 = time.perf_counter()
            p = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            t = time.perf_counter() - t0
            if p.returncode != 0:
                problems.append(f"{' '.join(args)}: exit {p.returncode}: {p.stderr.decode()[-200:]}")
            return t

        syncs, fg, det = [], [], []
        for i in range(SERIAL + WARMUP):
            s, f, t = exec_sync(), bare(False), bare(True)
            if i >= WARMUP:
                syncs.append(s), fg.append(f), det.append(t)

        pid = d.pid
        own0, kids0 = cpu_ticks(pid)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            conc = list(pool.map(lambda _: exec_sync(), range(CONCURRENT)))
        wall = time.perf_counter() - t0
        own1, kids1 = cpu_ticks(pid)
        hz = os.sysconf("SC_CLK_TCK")
        own_ms = (own1 - own0) / hz * 1000 / CONCURRENT
        all_ms = (own1 - own0 + kids1 - kids0) / hz * 1000 / CONCURRENT
        b.stop(cid)
        b.remove(cid)
    finally:
        d.stop()

    def ms(v):
        return f"{v * 1000:7.1f} ms"

    print()
    print(f"ExecSync of `true` ({os.path.basename(runtime)}, systemd user manager in the harness; "
          f"{os.cpu_count()} CPUs, {os.uname().release}; {SERIAL} serial calls per row after {WARMUP} warm-up)")
    print()
    print(f"{'metric':<44} {'p50':>10} {'p90':>10} {'max':>10}")
    print(f"{'-' * 44} {'-' * 10} {'-' * 10} {'-' * 10}")
    for label, v in (("ExecSync true (gRPC round trip)", syncs), (f"bare {os.path.basename(runtime)} exec true", fg),
                     (f"bare {os.path.basename(runtime)} exec --detach true", det)):
        print(f"{label:<44} {ms(pct(v, 50)):>10} {ms(pct(v, 90)):>10} {ms(max(v)):>10}")
    ratio = pct(syncs, 50) / pct(fg, 50)
    print()
    print(f"ExecSync p50 / bare exec p50: {ratio:.2f} (target <= {TARGET}: {'ok' if ratio <= TARGET else 'MISS'})")
    print(f"{CONCURRENT} ExecSyncs, {CONCURRENCY} in flight: p50 {ms(pct(conc, 50)).strip()}, p90 {ms(pct(conc, 90)).strip()}, "
          f"{CONCURRENT / wall:.1f} calls/s")
    print(f"daemon CPU per call: {own_ms:.2f} ms alone, {all_ms:.1f} ms with its children (the runtime)")
    if problems:
        print("\nPROBLEMS:")
        for p in problems[:20]:
            print("   ", p)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
