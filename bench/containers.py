"""Container benchmark, run inside tests/integration/run-harness (its own systemd user manager,
journald, D-Bus and network namespace) by bench/run-containers.

A docker-registry on loopback serves the full busybox image of the integration tests; rktlet pulls
it and runs one host-network pod. Then, in the same run:

1. serial CreateContainer, StartContainer, StopContainer (timeout 0) and RemoveContainer latency,
   command `sleep 1000`;
2. the OCI runtime alone on the bundle of a container rktlet created: `runc run -d`, and
   `runc create` + `runc start` (what the unit's ExecStart and ExecStartPost run), each followed by
   an untimed `runc delete -f`;
3. 50 containers started at concurrency 10: wall time, the daemon's RSS and fds, and the processes
   besides the containers' own (OCI runtime, shims, anything else in a container's unit cgroup);
   then all are stopped and removed and nothing may be left.

Python's grpcio costs well under a millisecond per call, small next to what is measured here."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.environ["RKTLET_SOURCE_DIR"], "tests", "integration"))
import registry as reg  # noqa: E402
from registry import Registry  # noqa: E402
from rktlet_test import Daemon, stubs, wait_until  # noqa: E402

pb, _ = stubs()
SERIAL = int(os.environ.get("BENCH_SERIAL", "30"))
WARMUP = 2
CONCURRENT, CONCURRENCY = int(os.environ.get("BENCH_CONCURRENT", "50")), 10
T = 60  # gRPC timeout of every call that waits on systemd or the runtime
COMMAND = ["sleep", "1000"]
RATIO_TARGET = 1.3


def registries_config(insecure):
    """rktlet.conf declaring plain-HTTP registries (as tests/integration/test_images.py writes it)."""
    return "[Registries]\nInsecure=" + ",".join(insecure) + "\n"


# --- statistics, /proc, systemd --------------------------------------------------------------------

def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def daemon_memory(pid):
    """(VmRSS, RssAnon) in KiB."""
    s = proc_status(pid)
    return int(s["VmRSS"].split()[0]), int(s["RssAnon"].split()[0])


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def show(unit, prop):
    return subprocess.run(["systemctl", "--user", "show", "-P", prop, unit], capture_output=True, text=True,
                          timeout=10).stdout.strip()


def units(prefix):
    out = subprocess.run(["systemctl", "--user", "list-units", "--all", "--plain", "--no-legend", f"{prefix}*"],
                         capture_output=True, text=True, timeout=10).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def cgroup_pids(unit):
    """Processes in a unit's cgroup and below (cgroup v2, or the name=systemd hierarchy)."""
    cg = show(unit, "ControlGroup")
    for root in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup"):
        if cg and os.path.isdir(root + cg):
            pids = set()
            for dirpath, _, files in os.walk(root + cg):
                if "cgroup.procs" in files:
                    with open(os.path.join(dirpath, "cgroup.procs")) as f:
                        pids |= {int(p) for p in f.read().split()}
            return pids
    raise RuntimeError(f"control group {cg!r} of {unit} found in no hierarchy")


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def runtime_processes():
    """Every process of this PID namespace that is an OCI runtime, its init, conmon or a shim."""
    found = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            c = comm(p)
            if c and (c.startswith("runc") or c == "crun" or c == "conmon" or "shim" in c):
                found[int(p)] = c
    return found


def mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path)]


def listdir(path):
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


# --- CRI -------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, d, image):
        self.d = d
        self.image = image
        self.stub = d.runtime()
        cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="bench", namespace="bench", uid="uid-bench"),
                                  hostname="bench")
        cfg.linux.security_context.namespace_options.network = pb.NODE
        cfg.linux.security_context.namespace_options.pid = pb.CONTAINER
        cfg.linux.security_context.namespace_options.ipc = pb.POD
        cfg.log_directory = os.path.join(d.dir, "logs", "bench_bench_uid-bench")
        os.makedirs(cfg.log_directory, exist_ok=True)  # kubelet makes it before RunPodSandbox
        self.pod_config = cfg
        self.pod_id = self.stub.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=T).pod_sandbox_id

    def create(self, name):
        c = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image=self.image),
                               log_path=f"{name}.log")
        c.command.extend(COMMAND)
        t0 = time.perf_counter()
        cid = self.stub.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=self.pod_id, config=c,
                                                                  sandbox_config=self.pod_config),
                                        timeout=T).container_id
        return cid, time.perf_counter() - t0

    def start(self, cid):
        t0 = time.perf_counter()
        self.stub.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=T)
        return time.perf_counter() - t0

    def run(self, name):
        """(id, create s, start s)"""
        cid, c = self.create(name)
        return cid, c, self.start(cid)

    def stop(self, cid):
        t0 = time.perf_counter()
        self.stub.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=0), timeout=T)
        return time.perf_counter() - t0

    def remove(self, cid):
        t0 = time.perf_counter()
        self.stub.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=T)
        return time.perf_counter() - t0

    def state(self, cid):
        return self.stub.ContainerStatus(pb.ContainerStatusRequest(container_id=cid), timeout=30).status.state

    def runtime_binary(self, cid):
        info = self.stub.ContainerStatus(pb.ContainerStatusRequest(container_id=cid, verbose=True), timeout=30).info
        try:
            return json.loads(info["info"])["runtime"]
        except (KeyError, ValueError):
            return shutil.which("runc")


# --- the OCI runtime alone -------------------------------------------------------------------------

class BareRuntime:
    """The bundle of a container rktlet created, for the runtime alone: same config.json, root.path
    pointing at rktlet's rootfs mount, no cgroupsPath (the runtime makes its own cgroup) and no
    namespace paths (it makes its own namespaces instead of joining the pod's)."""

    def __init__(self, runtime, daemon_dir, cid, work):
        self.runtime = runtime
        src = os.path.join(daemon_dir, "run", "containers", cid)
        with open(os.path.join(src, "config.json")) as f:
            spec = json.load(f)
        spec["root"]["path"] = os.path.join(src, "rootfs")
        spec.get("linux", {}).pop("cgroupsPath", None)
        for ns in spec.get("linux", {}).get("namespaces", []):
            ns.pop("path", None)
        spec["process"]["terminal"] = False
        self.bundle = os.path.join(work, "bundle")
        self.root = os.path.join(work, "state")
        self.log = os.path.join(work, "runtime.log")
        self.pidfile = os.path.join(work, "pid")
        os.makedirs(self.bundle)
        with open(os.path.join(self.bundle, "config.json"), "w") as f:
            json.dump(spec, f)
        self.stderr = open(os.path.join(work, "stderr"), "w+")

    def _exec(self, *args):
        # Detached containers inherit the runtime's stdio: no pipes, or waiting for EOF would hang.
        argv = [self.runtime, "--root", self.root, "--log", self.log, "--log-format", "json", *args]
        self.stderr.seek(0)
        self.stderr.truncate()
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.stderr, timeout=60)
        if r.returncode != 0:
            self.stderr.seek(0)
            tail = open(self.log).read()[-2000:] if os.path.exists(self.log) else ""
            raise RuntimeError(f"{' '.join(argv)} exited with {r.returncode}: {self.stderr.read()}{tail}")

    def run(self, name):
        t0 = time.perf_counter()
        self._exec("run", "-d", "--bundle", self.bundle, name)
        return time.perf_counter() - t0

    def create_start(self, name):
        t0 = time.perf_counter()
        self._exec("create", "--bundle", self.bundle, "--pid-file", self.pidfile, name)
        self._exec("start", name)
        return time.perf_counter() - t0

    def delete(self, name):
        self._exec("delete", "--force", name)


# --- the benchmark ---------------------------------------------------------------------------------

def registry_and_daemon(work):
    """A registry on loopback with the full busybox image, and a started daemon that knows it:
    (registry, image, reference, daemon)."""
    r = Registry(os.path.join(work, "registry"))
    image = reg.full_busybox_image()
    image.push(r, "bench/busybox", "v1")
    d = Daemon(os.path.join(work, "daemon"), log_level="warning", config=registries_config([r.url]))
    d.start()
    return r, image, f"{r.url}/bench/busybox:v1", d


def main():
    work = tempfile.mkdtemp(prefix="bench-containers-")
    t_begin = time.perf_counter()
    r, image, ref, d = registry_and_daemon(work)
    rows, info, problems = [], [], []
    exit_status = None
    try:
        t0 = time.perf_counter()
        got = d.images().PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=120).image_ref
        info.append(("PullImage (busybox, 1 layer)", f"{(time.perf_counter() - t0) * 1000:.1f} ms"))
        if got != image.id:
            problems.append(f"PullImage answered {got}, the image's id is {image.id}")
        b = Bench(d, ref)

        # 1. Serial lives.
        creates, starts, runs, stops, removes = [], [], [], [], []
        for i in range(SERIAL + WARMUP):
            cid, c, s = b.run(f"s{i}")
            if b.state(cid) != pb.CONTAINER_RUNNING:
                problems.append(f"serial container {i} is not RUNNING after StartContainer")
            st = b.stop(cid)
            rm = b.remove(cid)
            if i >= WARMUP:  # the first ones warm caches (systemd, the runtime binary, the image)
                creates.append(c), starts.append(s), runs.append(c + s), stops.append(st), removes.append(rm)
        rows += [("CreateContainer", creates), ("StartContainer", starts), ("CreateContainer + StartContainer", runs),
                 ("StopContainer (timeout 0)", stops), ("RemoveContainer", removes)]

        # 2. The runtime alone, on the bundle of a created (not started) container.
        cid, _ = b.create("bundle")
        runtime = b.runtime_binary(cid)
        bare = BareRuntime(runtime, d.dir, cid, os.path.join(work, "bare"))
        bare_runs, bare_cs = [], []
        for i in range(SERIAL + WARMUP):
            t = bare.run(f"bench-{i}")
            bare.delete(f"bench-{i}")
            t2 = bare.create_start(f"bench-cs-{i}")
            bare.delete(f"bench-cs-{i}")
            if i >= WARMUP:
                bare_runs.append(t), bare_cs.append(t2)
        b.remove(cid)
        name = os.path.basename(runtime)
        rows += [(f"{name} run -d (bare, same bundle)", bare_runs),
                 (f"{name} create + {name} start (bare)", bare_cs)]
        ratio = pct(runs, 50) / pct(bare_runs, 50)
        ratio_cs = pct(runs, 50) / pct(bare_cs, 50)

        # 3. Many at once.
        rss_idle, anon_idle = daemon_memory(d.pid)
        fds_idle = open_fds(d.pid)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(CONCURRENCY) as ex:
            started = list(ex.map(lambda i: b.run(f"c{i}"), range(CONCURRENT)))
        wall = time.perf_counter() - t0
        ids = [cid for cid, _, _ in started]
        conc_lat = [c + s for _, c, s in started]
        rss_up, anon_up = daemon_memory(d.pid)
        fds_up = open_fds(d.pid)
        not_running = [cid for cid in ids if b.state(cid) != pb.CONTAINER_RUNNING]
        if not_running:
            problems.append(f"{len(not_running)} of the {CONCURRENT} are not RUNNING: {not_running[:3]}")
        runtime_procs = runtime_processes()
        extra = {}  # pid -> comm, besides the containers' own processes
        extra.update(runtime_procs)
        per_container = []
        main_pids = set()
        for cid in ids:
            unit = f"rktlet-ctr-{cid}.service"
            main = int(show(unit, "MainPID") or 0)
            main_pids.add(main)
            if main == 0:
                problems.append(f"{unit} has no MainPID")
            others = cgroup_pids(unit) - {main}
            per_container.append(len(others))
            for p in others:
                extra[p] = comm(p)
        extra = {p: c for p, c in extra.items() if p not in main_pids}
        n_procs = len([p for p in os.listdir("/proc") if p.isdigit()])
        if extra:
            problems.append(f"processes besides the containers' own: {sorted(extra.items())[:10]}")

        t0 = time.perf_counter()
        with ThreadPoolExecutor(CONCURRENCY) as ex:
            list(ex.map(lambda cid: (b.stop(cid), b.remove(cid)), ids))
        teardown = time.perf_counter() - t0
        rss_after, anon_after = daemon_memory(d.pid)
        fds_after = open_fds(d.pid)

        # Nothing left.
        left_units = units("rktlet-ctr-")
        left_ids = [c.id for c in b.stub.ListContainers(pb.ListContainersRequest(), timeout=10).containers]
        left_mounts = mounts_under(os.path.join(d.dir, "run", "containers"))
        left_dirs = (listdir(os.path.join(d.dir, "lib", "containers")) + listdir(os.path.join(d.dir, "run", "containers"))
                     + listdir(os.path.join(d.dir, "run", "runc")))
        try:
            wait_until(lambda: not runtime_processes(), 2, what="no runtime process")
        except TimeoutError:
            pass
        left_procs = runtime_processes()
        for what, left in (("units", left_units), ("containers in ListContainers", left_ids), ("mounts", left_mounts),
                           ("container directories", left_dirs), ("runtime processes", left_procs)):
            if left:
                problems.append(f"{what} left after stop + remove: {left if len(left) < 5 else list(left)[:5]}")
        b.stub.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=b.pod_id), timeout=T)
        b.stub.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=b.pod_id), timeout=T)
    except BaseException:
        print(f"\nbench/containers.py failed; daemon log {d.logfile} (last lines):\n" +
              "\n".join(d.log().splitlines()[-30:]), file=sys.stderr)
        raise
    finally:
        exit_status = d.stop() if d.alive() else (d.proc.returncode if d.proc else None)
        r.stop()
    if exit_status != 0:
        problems.append(f"rktlet exited with {exit_status} on SIGTERM (log: {d.logfile})")
    warnings = [line for line in d.log().splitlines() if line.strip()]

    # --- the table ---------------------------------------------------------------------------------
    print()
    print(f"rktlet containers ({os.path.basename(runtime)}, systemd user manager in the harness, host-network pod,"
          f" command {' '.join(COMMAND)})")
    print(f"({os.cpu_count()} CPUs, {os.uname().release}, {SERIAL} serial containers per row after {WARMUP} warm-up)")
    print()
    print(f"{'metric':<46} {'min':>9} {'p50':>9} {'p90':>9} {'max':>9}")
    print(f"{'-' * 46} {'-' * 9} {'-' * 9} {'-' * 9} {'-' * 9}")
    for label, values in rows + [(f"create + start, {CONCURRENT} at concurrency {CONCURRENCY}", conc_lat)]:
        ms = [v * 1000 for v in values]
        print(f"{label:<46} {min(ms):7.1f}ms {pct(ms, 50):7.1f}ms {pct(ms, 90):7.1f}ms {max(ms):7.1f}ms")
    print()
    verdict = "met" if ratio <= RATIO_TARGET else "MISSED"
    info += [
        (f"create+start p50 / bare {name} run -d p50", f"{ratio:.2f}x (target <= {RATIO_TARGET}x: {verdict})"),
        (f"create+start p50 / bare {name} create+start p50", f"{ratio_cs:.2f}x"),
        (f"create+start min / bare {name} run -d min", f"{min(runs) / min(bare_runs):.2f}x"),
        (f"{CONCURRENT} containers, concurrency {CONCURRENCY}", f"{wall * 1000:.0f} ms wall ({CONCURRENT / wall:.1f}/s)"),
        (f"stop + remove of those {CONCURRENT}, concurrency {CONCURRENCY}", f"{teardown * 1000:.0f} ms wall"),
        ("daemon VmRSS idle / 50 up / after", f"{rss_idle} / {rss_up} / {rss_after} KiB"),
        ("daemon RssAnon idle / 50 up / after", f"{anon_idle} / {anon_up} / {anon_after} KiB"),
        ("daemon open fds idle / 50 up / after", f"{fds_idle} / {fds_up} / {fds_after}"),
        (f"extra processes with {CONCURRENT} up (target 0)",
         f"{len(extra)} total, {len(extra) / CONCURRENT:.2f} per container (runtime/shim: {len(runtime_procs)}, "
         f"max in one unit cgroup besides MainPID: {max(per_container)})"),
        ("processes in the harness PID namespace, 50 up", f"{n_procs}"),
        ("left after stop + remove", "nothing" if not any("left after" in p for p in problems) else "SEE BELOW"),
        ("rktlet exit on SIGTERM", f"status {exit_status}"),
        ("whole run", f"{time.perf_counter() - t_begin:.1f} s"),
    ]
    for label, value in info:
        print(f"{label:<46} {value}")
    if warnings:
        print()
        print(f"daemon log ({d.logfile}), {len(warnings)} lines at level warning and above; the first ones:")
        for line in warnings[:10]:
            print("   ", line)
    if problems:
        print()
        print("PROBLEMS:")
        for p in problems:
            print("  -", p)
        sys.exit(1)


if __name__ == "__main__":
    main()
