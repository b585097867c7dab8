"""Pod sandbox benchmark, run inside tests/integration/run-harness (its own systemd user manager,
journald, D-Bus and network namespace) by bench/run-pods.

Measures RunPodSandbox latency serially without CNI (host network) and with the CNI bridge
plugin, 50 pods at concurrency 10, the daemon's RSS with 50 pods up and the processes per pod.
Python's grpcio costs well under a millisecond per call, small next to what is measured here."""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.environ["RKTLET_SOURCE_DIR"], "tests", "integration"))
from rktlet_test import Daemon, stubs  # noqa: E402

pb, _ = stubs()
SERIAL = int(os.environ.get("BENCH_SERIAL", "30"))
CONCURRENT_PODS, CONCURRENCY = 50, 10


def pod_config(name, host_network):
    cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name=name, namespace="bench", uid=f"uid-{name}"),
                              hostname=name)
    cfg.linux.security_context.namespace_options.network = pb.NODE if host_network else pb.POD
    cfg.linux.security_context.namespace_options.pid = pb.CONTAINER
    cfg.linux.security_context.namespace_options.ipc = pb.POD
    return cfg


def run(stub, name, host_network):
    t0 = time.perf_counter()
    pod_id = stub.RunPodSandbox(pb.RunPodSandboxRequest(config=pod_config(name, host_network)), timeout=120).pod_sandbox_id
    return pod_id, time.perf_counter() - t0


def stop_remove(stub, pod_id):
    t0 = time.perf_counter()
    stub.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=120)
    t1 = time.perf_counter()
    stub.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=120)
    return t1 - t0, time.perf_counter() - t1


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def processes_in(unit):
    cg = subprocess.run(["systemctl", "--user", "show", "-P", "ControlGroup", unit],
                        capture_output=True, text=True).stdout.strip()
    for root in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup"):
        if cg and os.path.isdir(root + cg):
            n = 0
            for dirpath, _, files in os.walk(root + cg):
                if "cgroup.procs" in files:
                    n += len(open(os.path.join(dirpath, "cgroup.procs")).read().split())
            return n
    return -1


def main():
    work = tempfile.mkdtemp(prefix="bench-pods-")
    conf = os.path.join(work, "net.d")
    os.makedirs(conf)
    with open(os.path.join(conf, "10-bench.conflist"), "w") as f:
        json.dump({"cniVersion": "1.0.0", "name": "bench", "plugins": [
            {"type": "bridge", "bridge": "bench0", "isGateway": True, "ipMasq": False,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.89.0.0/16"}]],
                      "dataDir": os.path.join(work, "ipam")}},
            {"type": "portmap", "capabilities": {"portMappings": True}}]}, f)
    d = Daemon(os.path.join(work, "daemon"), log_level="warning",
               args=["--cni-conf-dir", conf, "--cni-bin-dir", "/usr/lib/cni"])
    d.start()
    stub = d.runtime()
    stub.Version(pb.VersionRequest(), timeout=5)
    rows = []
    try:
        for label, host in (("without CNI (host network)", True), ("with CNI bridge", False)):
            runs, stops, removes = [], [], []
            for i in range(SERIAL + 2):
                pod_id, t = run(stub, f"s{int(host)}-{i}", host)
                s, r = stop_remove(stub, pod_id)
                if i >= 2:  # the first two warm caches (plugin binaries, systemd)
                    runs.append(t), stops.append(s), removes.append(r)
            rows.append((f"RunPodSandbox {label}", runs))
            rows.append((f"StopPodSandbox {label}", stops))
            rows.append((f"RemovePodSandbox {label}", removes))

        rss_before = rss_kib(d.pid)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(CONCURRENCY) as ex:
            ids = [p for p, _ in ex.map(lambda i: run(stub, f"c{i}", False), range(CONCURRENT_PODS))]
        elapsed = time.perf_counter() - t0
        rss_up = rss_kib(d.pid)
        per_pod = [processes_in(f"rktlet-pod{p}.slice") for p in ids]
        daemon_children = len([p for p in os.listdir("/proc") if p.isdigit() and
                               open(f"/proc/{p}/stat").read().split(") ")[-1].split()[1] == str(d.pid)])
        t1 = time.perf_counter()
        with ThreadPoolExecutor(CONCURRENCY) as ex:
            list(ex.map(lambda p: stop_remove(stub, p), ids))
        teardown = time.perf_counter() - t1
    finally:
        d.stop()

    print()
    print("rktlet pod sandboxes (systemd user manager in the harness, CNI bridge + host-local + portmap)")
    print(f"({os.cpu_count()} CPUs, {os.uname().release}, {SERIAL} serial pods per row after 2 warm-up)")
    print()
    print(f"{'metric':<46} {'p50':>9} {'p90':>9} {'max':>9} {'target':>10}")
    print(f"{'-' * 46} {'-' * 9} {'-' * 9} {'-' * 9} {'-' * 10}")
    targets = {"RunPodSandbox without CNI (host network)": 15, "RunPodSandbox with CNI bridge": 40}
    for label, values in rows:
        ms = [v * 1000 for v in values]
        target = targets.get(label)
        verdict = "" if target is None else (f"< {target} ms " + ("met" if pct(ms, 50) < target else "MISSED"))
        print(f"{label:<46} {pct(ms, 50):7.1f}ms {pct(ms, 90):7.1f}ms {max(ms):7.1f}ms {verdict:>10}")
    print()
    print(f"{'50 pods, concurrency 10, with CNI':<46} {CONCURRENT_PODS / elapsed:7.1f} pods/s ({elapsed:.2f} s)")
    print(f"{'stop + remove of those 50, concurrency 10':<46} {teardown:7.2f} s")
    print(f"{'daemon RSS idle / with 50 pods up':<46} {rss_before} KiB / {rss_up} KiB")
    print(f"{'processes per pod (in its slice)':<46} min {min(per_pod)} max {max(per_pod)} (target 0)")
    print(f"{'daemon children with 50 pods up':<46} {daemon_children}")


if __name__ == "__main__":
    main()
