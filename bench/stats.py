"""Stats benchmark, run inside tests/integration/run-harness by bench/run-stats.

Host-network pods with running busybox containers (`sleep 1000`): 30 containers (10 pods of 3),
then 300 (10 pods of 30). For each size, ListContainerStats and ListPodSandboxStats are called one
at a time by the C client (bench/bench-grpc.c: h2c on nghttp2, ~25 µs of its own per call), and the
table gives the round trip's p50 and p90 and the CPU the daemon spent per call (from
/proc/<pid>/stat), alone and with its children (the background walks of the writable layers, which
the calls trigger at most once per container per 10 s)."""

import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.environ["RKTLET_SOURCE_DIR"], "tests", "integration"))
sys.path.insert(0, os.path.join(os.environ["RKTLET_SOURCE_DIR"], "bench"))
from rktlet_test import BUILD_DIR, stubs  # noqa: E402
from containers import registry_and_daemon  # noqa: E402

pb, _ = stubs()
T = 60
PODS = 10
SIZES = (30, 300)
CALLS = {30: int(os.environ.get("BENCH_CALLS_30", "2000")), 300: int(os.environ.get("BENCH_CALLS_300", "300"))}
TARGET_MS = 5.0  # ListContainerStats p50 with 30 containers
CLIENT = os.path.join(BUILD_DIR, "bench", "rktlet-bench-grpc")


def cpu_ticks(pid):
    """(utime + stime, cutime + cstime) of pid, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def make_pod(d, i):
    cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name=f"bench{i}", namespace="bench", uid=f"uid-{i}"),
                              hostname=f"bench{i}", labels={"app": f"bench{i}"})
    cfg.linux.security_context.namespace_options.network = pb.NODE
    cfg.linux.security_context.namespace_options.pid = pb.CONTAINER
    cfg.linux.security_context.namespace_options.ipc = pb.POD
    cfg.log_directory = os.path.join(d.dir, "logs", f"bench{i}")
    os.makedirs(cfg.log_directory, exist_ok=True)
    return d.runtime().RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=T).pod_sandbox_id, cfg


def add_container(d, ref, pod, name):
    pod_id, cfg = pod
    c = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image=ref), log_path=f"{name}.log")
    c.command.extend(["sleep", "1000"])
    stub = d.runtime()
    cid = stub.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=pod_id, config=c, sandbox_config=cfg),
                               timeout=T).container_id
    stub.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=T)
    return cid


def measure(d, method, calls):
    """(p50 µs, p90 µs, daemon ms per call, daemon + children ms per call)"""
    own0, kids0 = cpu_ticks(d.pid)
    out = subprocess.run([CLIENT, "--socket", d.socket, "--mode", "latency", "--empty", "--calls", str(calls),
                          "--warmup", str(max(calls // 10, 5)), "--path", f"/runtime.v1.RuntimeService/{method}"],
                         capture_output=True, text=True)
    own1, kids1 = cpu_ticks(d.pid)
    if out.returncode != 0:
        raise RuntimeError(f"{method}: {out.stdout}{out.stderr}")
    result = dict(kv.split("=", 1) for kv in out.stdout.splitlines()[-1].split()[1:])
    total = calls + max(calls // 10, 5)
    hz = os.sysconf("SC_CLK_TCK")
    return (float(result["p50_us"]), float(result["p90_us"]), (own1 - own0) / hz * 1000 / total,
            (own1 - own0 + kids1 - kids0) / hz * 1000 / total)


def main():
    work = tempfile.mkdtemp(prefix="bench-stats-")
    _, _, ref, d = registry_and_daemon(work)
    rows, problems = [], []
    try:
        d.images().PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=120)
        pods = [make_pod(d, i) for i in range(PODS)]
        made = 0
        with ThreadPoolExecutor(4) as pool:
            for size in SIZES:
                names = [(pods[i % PODS], f"c{i}") for i in range(made, size)]
                list(pool.map(lambda a: add_container(d, ref, *a), names))
                made = size
                n = len(d.runtime().ListContainerStats(pb.ListContainerStatsRequest(), timeout=T).stats)
                if n != size:
                    problems.append(f"ListContainerStats answered {n} containers, not {size}")
                for method in ("ListContainerStats", "ListPodSandboxStats"):
                    rows.append((method, size, *measure(d, method, CALLS[size])))
        for p in d.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=T).items:
            d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p.id), timeout=300)
    finally:
        d.stop()

    print()
    print(f"Stats calls, one at a time (C client; {os.cpu_count()} CPUs, {os.uname().release}; {PODS} host-network pods; "
          f"cgroup {'v2' if os.path.exists('/sys/fs/cgroup/cgroup.controllers') else 'v1 (hybrid)'})")
    print()
    print(f"{'call':<22} {'containers':>10} {'calls':>6} {'p50':>10} {'p90':>10} {'daemon CPU/call':>16} {'+ children':>11}")
    print(f"{'-' * 22} {'-' * 10} {'-' * 6} {'-' * 10} {'-' * 10} {'-' * 16} {'-' * 11}")
    for method, size, p50, p90, own, allc in rows:
        print(f"{method:<22} {size:>10} {CALLS[size]:>6} {p50 / 1000:>7.2f} ms {p90 / 1000:>7.2f} ms {own:>13.3f} ms "
              f"{allc:>8.3f} ms")
    p50_30 = next(r[2] for r in rows if r[0] == "ListContainerStats" and r[1] == 30) / 1000
    lcs = {r[1]: r[2] for r in rows if r[0] == "ListContainerStats"}
    print()
    print(f"ListContainerStats p50 with 30 containers: {p50_30:.2f} ms (target <= {TARGET_MS} ms: "
          f"{'ok' if p50_30 <= TARGET_MS else 'MISS'}); 300/30 ratio {lcs[300] / lcs[30]:.1f} (linear: 10)")
    if problems:
        print("\nPROBLEMS:")
        for p in problems[:20]:
            print("   ", p)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
