"""Start latency waterfall and CPU per pod (issue #16), run inside tests/integration/run-harness by
bench/trace-start. Nothing in the product changes: what is shown comes from strace, dbus-monitor,
/proc and the harness's cgroups.

1. Baseline, untraced: BENCH_REPS pods (CNI bridge + host-local + portmap), each with one busybox
   container (`sleep 1000`): RunPodSandbox, CreateContainer, StartContainer as the client sees them,
   interleaved with a bare `runc create` + `runc start` of the bundle of a container rktlet created
   (bench/containers.py's BareRuntime), so both see the same machine.
2. Traced: a second daemon runs under `strace -f --seccomp-bpf` (its children too: the overlay mount
   child, the namespace child, the CNI plugins, the runtime's spawns), the systemd user manager gets
   `strace -f -p` (and so the runc processes it forks for ExecStart and ExecStartPost), and
   `dbus-monitor` watches the bus. BENCH_TRACED pods are run the same way; the waterfall of the
   one with the median total is printed, every step relative to the client's sending of the call
   (CLOCK_REALTIME for all three sources: strace -ttt, dbus-monitor's time= and time.time()).
   The same bare runc create + start is run under the same strace (ptrace without a seccomp filter,
   as the manager is attached) to show how much the tracing itself stretches runc.
3. CPU at concurrency 10: a third daemon, whose CNI bin dir holds bash wrappers that run the real
   plugin and append bash's `times` (the plugin's own CPU, its IPAM child included) to a file.
   BENCH_CPU_PODS pods with one container each, in BENCH_CPU_ROUNDS rounds; per pod: the daemon
   (/proc/<pid>/stat utime+stime), its reaped children (cutime+cstime) split into CNI (from the
   wrappers) and the rest (overlay mount and namespace children, the runtime's spawns), the user
   manager and its reaped children, the D-Bus broker and journald, and from the unified
   hierarchy's cpu.stat of each unit's cgroup: runc create + start, and the container's process
   (runc init before its exec, then the workload) from /proc/<MainPID>/stat; the pod's init unit
   from its slice."""

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.environ["RKTLET_SOURCE_DIR"], "tests", "integration"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import registry as reg  # noqa: E402
from containers import BareRuntime, registries_config  # noqa: E402
from registry import Registry  # noqa: E402
from rktlet_test import Daemon, stubs, wait_until  # noqa: E402

pb, _ = stubs()
REPS = int(os.environ.get("BENCH_REPS", "7"))
TRACED = int(os.environ.get("BENCH_TRACED", "3"))
CPU_PODS = int(os.environ.get("BENCH_CPU_PODS", "20"))
CPU_ROUNDS = int(os.environ.get("BENCH_CPU_ROUNDS", "3"))
CONCURRENCY = 10
T = 120
COMMAND = ["sleep", "1000"]
CLK_TCK = os.sysconf("SC_CLK_TCK")
STRACE_SET = "process,fsync,fdatasync,sendmsg,recvmsg,connect,mount,umount2,unshare,setns,rename,renameat,renameat2"
MANAGER_PID = int(os.environ["RKTLET_USER_MANAGER_PID"])
STATE_DIR = None


def ms(s):
    return f"{s * 1000:.1f}"


def med(values):
    return statistics.median(values) if values else float("nan")


# --- CRI -------------------------------------------------------------------------------------------

class Pods:
    def __init__(self, d, image):
        self.d, self.image, self.stub = d, image, d.runtime()
        self.logs = os.path.join(d.dir, "logs")

    def config(self, name):
        cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name=name, namespace="bench", uid=f"uid-{name}"),
                                  hostname=name)
        cfg.linux.security_context.namespace_options.network = pb.POD
        cfg.linux.security_context.namespace_options.pid = pb.CONTAINER
        cfg.linux.security_context.namespace_options.ipc = pb.POD
        cfg.log_directory = os.path.join(self.logs, name)
        os.makedirs(cfg.log_directory, exist_ok=True)  # kubelet makes it before RunPodSandbox
        return cfg

    def pod(self, name, start=True):
        """Runs a pod and creates (and starts) its container: ids and the client's (send, reply)
        times of each call, time.time()."""
        times = {}
        cfg = self.config(name)
        t0 = time.time()
        pod_id = self.stub.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=T).pod_sandbox_id
        times["RunPodSandbox"] = (t0, time.time())
        c = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"), image=pb.ImageSpec(image=self.image),
                               log_path="c.log")
        c.command.extend(COMMAND)
        t0 = time.time()
        cid = self.stub.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=pod_id, config=c, sandbox_config=cfg),
                                        timeout=T).container_id
        times["CreateContainer"] = (t0, time.time())
        if start:
            t0 = time.time()
            self.stub.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=T)
            times["StartContainer"] = (t0, time.time())
        return pod_id, cid, times

    def teardown(self, pod_id):
        self.stub.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=T)
        self.stub.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=T)


def cni_conf(work):
    conf = os.path.join(work, "net.d")
    os.makedirs(conf, exist_ok=True)
    with open(os.path.join(conf, "10-bench.conflist"), "w") as f:
        json.dump({"cniVersion": "1.0.0", "name": "bench", "plugins": [
            {"type": "bridge", "bridge": "bench0", "isGateway": True, "ipMasq": False,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.89.0.0/16"}]],
                      "dataDir": os.path.join(work, "ipam")}},
            {"type": "portmap", "capabilities": {"portMappings": True}}]}, f)
    return conf


def start_daemon(work, name, ref_registry, cni_bin="/usr/lib/cni", wrapper=()):
    # The harness's TMPDIR is a tmpfs, where fsync costs nothing; BENCH_STATE_DIR puts the daemons'
    # state and root directories on a disk instead.
    d = Daemon(os.path.join(STATE_DIR or work, name), log_level="warning", config=registries_config([ref_registry.url]),
               args=["--cni-conf-dir", cni_conf(work), "--cni-bin-dir", cni_bin], wrapper=wrapper)
    d.start()
    return d


def daemon_pid(d):
    """The rktlet process: the Popen child, or strace's child when it runs under strace."""
    if comm(d.proc.pid) == "rktlet":
        return d.proc.pid
    for p in os.listdir("/proc"):
        if p.isdigit() and comm(p) == "rktlet" and ppid(int(p)) == d.proc.pid:
            return int(p)
    raise RuntimeError("no rktlet process under strace")


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(") ", 1)[1].split()


def ppid(pid):
    try:
        return int(stat_fields(pid)[1])
    except OSError:
        return 0


def cpu(pid):
    """(self, reaped children) CPU seconds of a process."""
    f = stat_fields(pid)
    return (int(f[11]) + int(f[12])) / CLK_TCK, (int(f[13]) + int(f[14])) / CLK_TCK


def show(unit, prop):
    return subprocess.run(["systemctl", "--user", "show", "-P", prop, unit], capture_output=True, text=True,
                          timeout=10).stdout.strip()


def cgroup_usage(unit):
    """usage_usec of the unit's cgroup in the unified hierarchy (kept for tasks that exited), in s."""
    cg = show(unit, "ControlGroup")
    for root in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        path = root + cg + "/cpu.stat"
        if cg and os.path.exists(path):
            with open(path) as f:
                for line in f:
                    k, v = line.split()
                    if k == "usage_usec":
                        return int(v) / 1e6
    raise RuntimeError(f"no cpu.stat for {unit} ({cg!r})")


def pids_named(name):
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and comm(p) == name]


# --- traces ----------------------------------------------------------------------------------------

DBUS_MEMBERS = ("StartTransientUnit", "StopUnit", "KillUnit", "ResetFailedUnit", "GetAll", "GetUnit", "AddMatch",
                "RemoveMatch", "Subscribe", "JobRemoved", "JobNew", "PropertiesChanged", "UnitNew", "UnitRemoved",
                "NameOwnerChanged", "Hello", "Get")
DBUS_TYPES = {"1": "call", "2": "return", "3": "error", "4": "signal"}
LINE = re.compile(r"^(\d+)\s+(\d+\.\d+) (.*)$")


def dbus_label(payload):
    """What D-Bus messages a sendmsg/recvmsg buffer (strace's escaped string) holds, in order."""
    out = []
    for m in re.finditer(r'l\\([1-4])\\[0-7]{1,3}\\1', payload):
        kind = DBUS_TYPES[m.group(1)]
        rest = payload[m.end():m.end() + 600]
        nxt = re.search(r'l\\[1-4]\\[0-7]{1,3}\\1', rest)
        if nxt:
            rest = rest[:nxt.start()]
        member = next((x for x in DBUS_MEMBERS if x in rest), "")
        detail = ""
        if member == "PropertiesChanged":
            st = re.search(r"ActiveState.{0,40}?(active|activating|inactive|deactivating|failed)",
                           rest + payload[m.end() + 600:m.end() + 1400])
            detail = f" ActiveState={st.group(1)}" if st else ""
        if member == "JobRemoved":
            r = re.search(r"\\0(done|failed|canceled|timeout|dependency|skipped)\\0", payload[m.end():m.end() + 900])
            detail = f" {r.group(1)}" if r else ""
        out.append(f"{kind} {member}{detail}".strip())
    return ", ".join(out)


def parse_strace(path, root_name):
    """Events of a strace -f -ttt -yy log: (t, pid, name, text). Threads (CLONE_THREAD) are folded
    into their process; exits are those of processes."""
    names, events, threads, pending, header_only = {}, [], set(), {}, {}
    with open(path, errors="replace") as f:
        lines = f.read().splitlines()
    first_pid = None
    for line in lines:
        m = LINE.match(line)
        if not m:
            continue
        pid, t, rest = int(m.group(1)), float(m.group(2)), m.group(3)
        if first_pid is None:
            first_pid = pid
            names[pid] = root_name
        if rest.endswith("<unfinished ...>"):
            pending[pid] = (t, rest)
            continue
        rm = re.match(r"<\.\.\. (\w+) resumed>(.*)", rest)
        if rm and pid in pending:
            t0, head = pending.pop(pid)
            rest = head[:-len("<unfinished ...>")] + rm.group(2)
            t_call = t0
        else:
            t_call = t
        name = names.get(pid, f"pid {pid}")
        if rest.startswith("+++"):
            if pid in threads:
                continue
            em = re.match(r"\+\+\+ (exited with \d+|killed by \w+)", rest)
            events.append((t, pid, name, f"exit ({em.group(1) if em else rest})"))
            continue
        sm = re.match(r"(\w+)\((.*)\) = (-?\d+|\?)", rest)
        if not sm:
            continue
        call, args, ret = sm.groups()
        if call in ("clone", "clone3", "fork", "vfork") and ret.lstrip("-").isdigit() and int(ret) > 0:
            child = int(ret)
            if "CLONE_THREAD" in args:
                threads.add(child)
                names[child] = name
                continue
            names[child] = name + " (forked)"
            events.append((t, pid, name, f"fork -> {child}"))
        elif call == "execve" and ret == "0":
            prog = os.path.basename(args.split('"')[1]) if '"' in args else "?"
            argv = re.findall(r'"((?:[^"\\]|\\.)*)"', args.split("], ")[0])[1:]
            argv = [a for a in argv if not a.startswith("--root") and "/" not in a or a.endswith(".json")]
            if prog == "exe" and argv[:1] == ["init"]:
                prog = "runc-init"  # runc re-executes itself as the container's init
            names[pid] = prog
            events.append((t_call, pid, prog, "exec " + " ".join([prog] + argv[1:6])))
        elif call in ("fsync", "fdatasync"):
            fm = re.match(r"\d+<([^>]*)>", args)
            dm = re.search(r"<(\d+\.\d+)>$", rest)
            what = fm.group(1).split("/")[-1] if fm else args
            what = re.sub(r"([0-9a-f]{12})[0-9a-f]{52}", r"\1…", what)
            events.append((t_call, pid, name, f"{call} {what} ({float(dm.group(1)) * 1000 if dm else 0:.2f} ms)"))
        elif call in ("sendmsg", "recvmsg") and ret.isdigit():
            label = dbus_label(args)
            # sd-bus reads the 16-byte fixed header and the fields' length first, then the rest.
            if call == "recvmsg" and not label and pid in header_only:
                i, kind = header_only.pop(pid)
                member = next((x for x in DBUS_MEMBERS if x in args[:1500]), "")
                detail = ""
                if member == "PropertiesChanged":
                    st = re.search(r"ActiveState.{0,40}?(active|activating|inactive|deactivating|failed)", args)
                    detail = f" ActiveState={st.group(1)}" if st else ""
                elif member == "JobRemoved":
                    r = re.search(r"\\0(done|failed|canceled|timeout|dependency|skipped)\\0", args)
                    detail = f" {r.group(1)}" if r else ""
                ev = events[i]
                events[i] = (ev[0], ev[1], ev[2], f"recvmsg D-Bus {kind} {member}{detail}".rstrip())
                continue
            if call == "recvmsg" and ret == "24" and label:
                header_only[pid] = (len(events), label)
            if "MESSAGE=" in args:
                mm = re.search(r"MESSAGE=((?:[^\\\"]|\\[^n])*)", args)
                label = "journal: " + (mm.group(1)[:70] if mm else "?")
            if not label:
                continue  # netlink and other traffic of the CNI plugins: not D-Bus, left out
            events.append((t_call, pid, name, f"{call} D-Bus {label}" if not label.startswith("journal") else label))
        elif call == "connect":
            cm = re.search(r'sun_path="([^"]+)"', args)
            if cm:
                events.append((t_call, pid, name, f"connect {cm.group(1)}"))
        elif call in ("mount", "umount2", "unshare", "setns"):
            if not name.startswith(root_name) or (root_name == "systemd" and call == "umount2"):
                continue  # runc init's dozens of mounts, systemd's credential-directory checks
            events.append((t_call, pid, name, f"{call}({args[:70]}) = {ret}"))
        elif call.startswith("rename") and ret == "0":
            paths = re.findall(r'"([^"]+)"', args)
            if paths:
                events.append((t_call, pid, name, f"rename -> {paths[-1].split('/')[-1]}"))
    return events


def parse_dbus_monitor(path):
    """(t, text) of the messages dbus-monitor saw, with ActiveState of PropertiesChanged."""
    out = []
    cur = None
    with open(path, errors="replace") as f:
        for line in f:
            hm = re.match(r"^(method call|method return|signal|error) time=(\d+\.\d+) sender=(\S+) -> "
                          r"destination=(\S+).*?(?:path=([^;]+); interface=([^;]+); member=(\w+))?\s*$", line)
            if hm:
                if cur:
                    out.append(cur)
                kind, t, snd, dst, pth, _, member = hm.groups()
                cur = {"t": float(t), "kind": kind, "sender": snd, "dest": dst, "path": pth or "",
                       "member": member or "", "body": ""}
            elif cur is not None:
                cur["body"] += line
    if cur:
        out.append(cur)
    return out


def unit_of(path):
    m = re.search(r"/unit/(rktlet_2d(?:ctr|pod)\w*?)_2e(service|slice)", path)
    if not m:
        return path.split("/")[-1].replace("_2d", "-").replace("_2e", ".")
    return m.group(1).replace("_2d", "-")[:26] + "…" + "." + m.group(2)


def waterfall(calls, sources):
    """Rows (t, who, text) of every source, between the first call's sending and the last reply,
    printed per call relative to that call's sending."""
    rows = []
    for src in sources:
        rows += src
    rows.sort(key=lambda r: r[0])
    lines = []
    for call, (t0, t1) in calls:
        lines.append(f"\n{call}: {ms(t1 - t0)} ms at the client")
        lines.append(f"  {'+ms':>8} {'who':<24} event")
        lines.append(f"  {ms(0):>8} {'client':<24} sends {call}")
        prev = t0
        inside = [r for r in rows if t0 <= r[0] <= t1]
        i = 0
        while i < len(inside):
            t, who, text = inside[i]
            j = i + 1
            # Broadcasts systemd sends in a burst (UnitNew, UnitRemoved for each unit it loads).
            while j < len(inside) and inside[j][1] == who and inside[j][2].endswith(("UnitNew", "UnitRemoved")) \
                    and text.endswith(("UnitNew", "UnitRemoved")):
                j += 1
            if j - i > 1:
                text = (f"sendmsg D-Bus signal UnitNew/UnitRemoved x{j - i}"
                        f" (broadcasts, until +{ms(inside[j - 1][0] - t0)})")
            gap = t - prev
            mark = "  <-- " + ms(gap) + " ms since the previous step" if gap > 0.004 else ""
            lines.append(f"  {ms(t - t0):>8} {who[:24]:<24} {text}{mark}")
            prev = inside[j - 1][0]
            i = j
        lines.append(f"  {ms(t1 - t0):>8} {'client':<24} reply received")
    return lines


def spans(events, names, t0, t1):
    """(name, ms) from exec to exit of each process whose program is in names, exec'd in [t0, t1]."""
    start, out = {}, []
    for t, pid, name, text in events:
        if text.startswith("exec ") and name in names and t0 <= t <= t1:
            start[pid] = (t, name, text)
        elif text.startswith("exit") and pid in start:
            ts, nm, tx = start.pop(pid)
            out.append((ts, nm, tx, t - ts))
    return out


# --- the run -------------------------------------------------------------------------------------

def baseline(work, r, ref):
    d = start_daemon(work, "daemon-base", r)
    try:
        d.images().PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=120)
        p = Pods(d, ref)
        # The bare runtime's bundle: a created, never started container of its own pod.
        pod_b, cid_b, _ = p.pod("bundle", start=False)
        runtime = json.loads(p.stub.ContainerStatus(pb.ContainerStatusRequest(container_id=cid_b, verbose=True),
                                                    timeout=30).info["info"])["runtime"]
        bare = BareRuntime(runtime, d.dir, cid_b, os.path.join(work, "bare"))
        res = {"RunPodSandbox": [], "CreateContainer": [], "StartContainer": [], "bare": [], "total": []}
        for i in range(REPS + 2):
            pod_id, _, times = p.pod(f"b{i}")
            t = bare.create_start(f"bare-{i}")
            bare.delete(f"bare-{i}")
            p.teardown(pod_id)
            if i >= 2:  # warm-up: plugin binaries, systemd, the image
                for k, (a, b) in times.items():
                    res[k].append(b - a)
                res["total"].append(sum(b - a for a, b in times.values()))
                res["bare"].append(t)
        # The same bare create + start under strace -f (ptrace stops at every syscall, as for the
        # attached manager and its runc children): how much tracing stretches runc.
        traced_bare = []
        for i in range(3):
            logs = [os.path.join(work, f"bare-strace-{i}-{what}.log") for what in ("create", "start")]
            strace_argv = ["strace", "-f", "-ttt", "-q", "-e", "trace=" + STRACE_SET, "-e", "signal=none"]
            io = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if os.path.exists(bare.pidfile):
                os.unlink(bare.pidfile)
            # strace follows the container's init, which waits for `start`: not waited for here.
            create = subprocess.Popen(strace_argv + ["-o", logs[0], bare.runtime, "--root", bare.root, "create",
                                                     "--bundle", bare.bundle, "--pid-file", bare.pidfile, f"bt-{i}"],
                                      **io)
            wait_until(lambda: os.path.exists(bare.pidfile) and root_exited(logs[0]), 30, what="runc create")
            subprocess.run(strace_argv + ["-o", logs[1], bare.runtime, "--root", bare.root, "start", f"bt-{i}"],
                           check=True, timeout=60, **io)
            bare.delete(f"bt-{i}")
            create.wait(30)
            traced_bare.append(root_span(logs[0]) + root_span(logs[1]))
        res["bare traced"] = traced_bare
        p.teardown(pod_b)
        return res, runtime
    finally:
        d.stop()


def traced(work, r, ref):
    dlog = os.path.join(work, "strace-daemon.log")
    mlog = os.path.join(work, "strace-manager.log")
    blog = os.path.join(work, "dbus-monitor.log")
    opts = ["-f", "-ttt", "-T", "-yy", "-q", "-s", "1500", "-e", "trace=" + STRACE_SET, "-e", "signal=none"]
    d = start_daemon(work, "daemon-traced", r, wrapper=["strace", "--seccomp-bpf", *opts, "-o", dlog])
    mon = subprocess.Popen(["dbus-monitor", "--session"], stdout=open(blog, "w"), stderr=subprocess.DEVNULL)
    ms_ = None
    try:
        d.images().PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=120)
        p = Pods(d, ref)
        for i in range(2):  # warm-up, under the daemon's strace but before the manager's
            pod_id, _, _ = p.pod(f"w{i}")
            p.teardown(pod_id)
        runs, detail = [], []
        for i in range(TRACED):
            pod_id, cid, times = p.pod(f"t{i}")
            runs.append((pod_id, cid, times))
            p.teardown(pod_id)
        # Then with the manager traced too: its forks, runc's execs and exits, but every syscall of
        # systemd and runc stops under ptrace (no seccomp filter for an attached process).
        ms_ = subprocess.Popen(["strace", *opts, "-o", mlog, "-p", str(MANAGER_PID)], stderr=subprocess.DEVNULL)
        wait_until(lambda: tracer_of(MANAGER_PID), 10, what="strace attached to the user manager")
        for i in range(TRACED):
            pod_id, cid, times = p.pod(f"m{i}")
            detail.append((pod_id, cid, times))
            p.teardown(pod_id)
    finally:
        if ms_:
            ms_.send_signal(signal.SIGINT)  # detaches from the manager
            ms_.wait(30)
        # SIGTERM to rktlet itself; strace exits with it.
        d.close_channels()
        try:
            os.kill(daemon_pid(d), signal.SIGTERM)
        except (RuntimeError, ProcessLookupError):
            d.proc.terminate()
        d.wait(30)
        time.sleep(0.5)  # dbus-monitor flushes what it has read; nothing waits on it
        mon.terminate()
        mon.wait(10)
    return runs, detail, parse_strace(dlog, "rktlet"), parse_strace(mlog, "systemd"), parse_dbus_monitor(blog)


def root_span(path):
    """Seconds from the first execve to the exit of the process strace started, in its log."""
    lines = [LINE.match(x) for x in open(path).read().splitlines()]
    lines = [m for m in lines if m]
    root = lines[0].group(1)
    end = next(float(m.group(2)) for m in lines if m.group(1) == root and m.group(3).startswith("+++"))
    return end - float(lines[0].group(2))


def root_exited(path):
    try:
        lines = [LINE.match(x) for x in open(path).read().splitlines()]
    except FileNotFoundError:
        return False
    lines = [m for m in lines if m]
    return bool(lines) and any(m.group(1) == lines[0].group(1) and m.group(3).startswith("+++") for m in lines)


def tracer_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("TracerPid:"):
                return int(line.split()[1]) != 0
    return False


WRAPPER = """#!/bin/bash
# The real plugin (IPAM children unwrapped), then bash's `times` (line 2: the plugin's CPU), in a
# file of this invocation's own: no other process, and ten plugins may finish at once.
CNI_PATH={real} {real}/{name}
rc=$?
times >{log}.$$
exit $rc
"""


def parse_times(prefix):
    """Seconds of CPU over the files prefix.*: (plugins, the wrappers' bash itself)."""
    plugins = wrappers = 0.0

    def secs(s):
        m, s = s.split("m")
        return int(m) * 60 + float(s.rstrip("s"))
    d, base = os.path.split(prefix)
    for name in os.listdir(d):
        if name.startswith(base + "."):
            f = open(os.path.join(d, name)).read().split()
            if len(f) != 4:
                raise RuntimeError(f"{name}: not bash's times: {f!r}")
            wrappers += secs(f[0]) + secs(f[1])
            plugins += secs(f[2]) + secs(f[3])
    return plugins, wrappers


def cpu_rounds(work, r, ref):
    bindir = os.path.join(work, "cni-wrap")
    os.makedirs(bindir)
    tlog = os.path.join(work, "cni-times")
    for name in os.listdir("/usr/lib/cni"):
        path = os.path.join(bindir, name)
        with open(path, "w") as f:
            f.write(WRAPPER.format(real="/usr/lib/cni", name=name, log=tlog))
        os.chmod(path, 0o755)
    d = start_daemon(work, "daemon-cpu", r, cni_bin=bindir)
    rounds = []
    try:
        d.images().PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=120)
        p = Pods(d, ref)
        for i in range(2):
            pod_id, _, _ = p.pod(f"w{i}")
            p.teardown(pod_id)
        for rnd in range(CPU_ROUNDS):
            buses = pids_named("dbus-daemon")
            journald = pids_named("systemd-journal")
            for name in os.listdir(work):
                if name.startswith("cni-times."):
                    os.unlink(os.path.join(work, name))
            before = {"daemon": cpu(d.pid), "manager": cpu(MANAGER_PID),
                      "bus": sum(cpu(b)[0] for b in buses), "journald": sum(cpu(j)[0] for j in journald)}
            t0 = time.perf_counter()
            with ThreadPoolExecutor(CONCURRENCY) as ex:
                made = list(ex.map(lambda i: p.pod(f"r{rnd}-{i}"), range(CPU_PODS)))
            wall = time.perf_counter() - t0
            after = {"daemon": cpu(d.pid), "manager": cpu(MANAGER_PID),
                     "bus": sum(cpu(b)[0] for b in buses), "journald": sum(cpu(j)[0] for j in journald)}
            unit_cpu = main_cpu = pod_cpu = 0.0
            outside = 0
            for pod_id, cid, _ in made:
                unit = f"rktlet-ctr-{cid}.service"
                main = int(show(unit, "MainPID") or 0)
                u = cgroup_usage(unit)
                mc = sum(cpu(main))
                unit_cpu += u
                main_cpu += mc
                cg = show(unit, "ControlGroup")
                with open(f"/proc/{main}/cgroup") as f:
                    if not any(line.startswith("0::") and line.strip().endswith(cg) for line in f):
                        outside += 1
                pod_cpu += cgroup_usage(f"rktlet-pod{pod_id}.slice") - u
            plugins, wrappers = parse_times(tlog)
            n = CPU_PODS
            rounds.append({
                "wall": wall,
                "daemon": (after["daemon"][0] - before["daemon"][0]) / n,
                "children": (after["daemon"][1] - before["daemon"][1]) / n,
                "cni": plugins / n, "wrappers": wrappers / n,
                "manager": (after["manager"][0] - before["manager"][0]) / n,
                "manager children": (after["manager"][1] - before["manager"][1]) / n,
                "bus": (after["bus"] - before["bus"]) / n, "journald": (after["journald"] - before["journald"]) / n,
                "unit": unit_cpu / n, "main": main_cpu / n, "pod": pod_cpu / n, "outside": outside,
            })
            with ThreadPoolExecutor(CONCURRENCY) as ex:
                list(ex.map(lambda m: p.teardown(m[0]), made))
    finally:
        d.stop()
    return rounds


def bus_rows(bus, t_first, t_last):
    rows = []
    for m in bus:
        if not (t_first <= m["t"] <= t_last):
            continue
        st = re.search(r'string "ActiveState"\s+variant\s+string "(\w+)"', m["body"])
        sub = re.search(r'string "SubState"\s+variant\s+string "([\w-]+)"', m["body"])
        if m["member"] == "PropertiesChanged" and st:
            rows.append((m["t"], "bus (dbus-monitor)",
                         f"signal PropertiesChanged {unit_of(m['path'])} ActiveState={st.group(1)}"
                         + (f" SubState={sub.group(1)}" if sub else "")))
        elif m["member"] == "JobRemoved":
            res = re.findall(r'string "([^"]*)"', m["body"])
            rows.append((m["t"], "bus (dbus-monitor)", f"signal JobRemoved {' '.join(res[-2:])}"))
    return rows


def print_waterfall(title, runs, only, dev, mev, bus):
    """The waterfall of the run with the median total."""
    totals = [sum(b - a for a, b in t.values()) for _, _, t in runs]
    order = sorted(range(len(runs)), key=lambda i: totals[i])
    pod_id, cid, times = runs[order[len(order) // 2]]
    print()
    print(f"{title}.")
    print(f"Client totals of the runs {', '.join(ms(x) + ' ms' for x in totals)}; the median one, pod"
          f" {pod_id[:12]}, container {cid[:12]}; +ms from the client's sending of each call:")
    t_first = times["RunPodSandbox"][0]
    t_last = times["StartContainer"][1]
    who_d = [(t, f"rktlet[{pid}]" if name == "rktlet" else f"{name}[{pid}]", text)
             for t, pid, name, text in dev if t_first - 0.001 <= t <= t_last + 0.001]
    who_m = [(t, f"systemd[{pid}]" if name == "systemd" else f"{name}[{pid}]", text)
             for t, pid, name, text in mev if t_first - 0.001 <= t <= t_last + 0.001]
    calls = [(k, times[k]) for k in ("RunPodSandbox", "CreateContainer", "StartContainer") if only in (None, k)]
    for line in waterfall(calls, [who_d, who_m, bus_rows(bus, t_first, t_last)]):
        print(line)


def first_state(bus, cid, t0, sub):
    for m in bus:
        if m["t"] >= t0 and cid in m["path"].replace("_2d", "-") and m["member"] == "PropertiesChanged" \
                and re.search(r'string "SubState"\s+variant\s+string "' + sub + '"', m["body"]):
            return m["t"]
    return None


def fork_spans(events, t0, t1):
    """Seconds from fork to exit of the daemon's children forked in [t0, t1] that never exec."""
    forked, execd, out = {}, set(), []
    for t, pid, name, text in events:
        if text.startswith("fork -> ") and name == "rktlet" and t0 <= t <= t1:
            forked[int(text.split()[-1])] = t
        elif text.startswith("exec "):
            execd.add(pid)
        elif text.startswith("exit") and pid in forked and pid not in execd:
            out.append(t - forked.pop(pid))
    return out


def phases(runs, dev, bus, rname, mev=None):
    """Named spans of each run (lists of seconds, or of counts)."""
    per = {}
    for _, cid, tm in runs:
        a, b = tm["RunPodSandbox"]
        per.setdefault("RunPodSandbox at the client", []).append(b - a)
        for dur in fork_spans(dev, a, b):
            per.setdefault("  a child of rktlet that does not exec (namespaces), fork to exit", []).append(dur)
        cni = spans(dev, {"bridge", "portmap", "host-local", "loopback"}, a, b)
        for _, nm, _, dur in cni:
            per.setdefault(f"  CNI {nm} (one exec)", []).append(dur)
        if cni:
            chain = max(ts + dur for ts, _, _, dur in cni) - min(ts for ts, _, _, _ in cni)
            per.setdefault("  CNI chain, first plugin exec to last plugin exit", []).append(chain)
            per.setdefault("  RunPodSandbox without the CNI chain", []).append(b - a - chain)
        a, b = tm["CreateContainer"]
        per.setdefault("CreateContainer at the client", []).append(b - a)
        for dur in fork_spans(dev, a, b):
            per.setdefault("  a child of rktlet that does not exec (overlay mount), fork to exit", []).append(dur)
        fs = [x for x in dev if a <= x[0] <= b and x[3].startswith(("fsync", "fdatasync"))]
        per.setdefault("  fsyncs in CreateContainer (count)", []).append(len(fs))
        a, b = tm["StartContainer"]
        per.setdefault("StartContainer at the client", []).append(b - a)
        fs = [x for x in dev if a <= x[0] <= b and x[3].startswith(("fsync", "fdatasync"))]
        per.setdefault("  fsyncs in StartContainer (count)", []).append(len(fs))
        t_start = first_state(bus, cid, a, "start")
        t_post = first_state(bus, cid, a, "start-post")
        t_run = first_state(bus, cid, a, "running")
        if t_start and t_post and t_run:
            per.setdefault("  send to SubState=start (job queued, ExecStart forked)", []).append(t_start - a)
            per.setdefault(f"  start to start-post ({rname} create + PID file)", []).append(t_post - t_start)
            per.setdefault(f"  start-post to running ({rname} start)", []).append(t_run - t_post)
            per.setdefault("  running to the reply received", []).append(b - t_run)
        if mev is not None:
            rs = spans(mev, {rname}, a, b)
            creates = [x for x in rs if " create" in x[2]]
            starts = [x for x in rs if " start" in x[2]]
            if creates and starts:
                per.setdefault(f"  {rname} create exec to exit (manager traced)", []).append(creates[0][3])
                per.setdefault(f"  {rname} start exec to exit (manager traced)", []).append(starts[0][3])
                per.setdefault(f"  StartContainer send to {rname} create exec (manager traced)", []).append(
                    creates[0][0] - a)
                per.setdefault(f"  {rname} start exit to the reply (manager traced)", []).append(
                    b - (starts[0][0] + starts[0][3]))
    return per


def main():
    work = tempfile.mkdtemp(prefix="bench-trace-")
    keep = os.environ.get("BENCH_TRACE_KEEP")  # a directory to copy the raw traces to
    global STATE_DIR
    if os.environ.get("BENCH_STATE_DIR"):
        STATE_DIR = tempfile.mkdtemp(prefix="bench-trace-", dir=os.environ["BENCH_STATE_DIR"])
    r = Registry(os.path.join(work, "registry"))
    image = reg.full_busybox_image()
    image.push(r, "bench/busybox", "v1")
    ref = f"{r.url}/bench/busybox:v1"
    load = [open("/proc/loadavg").read().split()[:3]]
    try:
        base, runtime = baseline(work, r, ref)
        runs, detail, dev, mev, bus = traced(work, r, ref)
        load.append(open("/proc/loadavg").read().split()[:3])
        rounds = cpu_rounds(work, r, ref) if CPU_ROUNDS else []
        load.append(open("/proc/loadavg").read().split()[:3])
    finally:
        r.stop()
        if STATE_DIR:
            shutil.rmtree(STATE_DIR, ignore_errors=True)
        if keep:
            os.makedirs(keep, exist_ok=True)
            for f in os.listdir(work):
                if f.endswith(".log"):
                    shutil.copy(os.path.join(work, f), keep)
    rname = os.path.basename(runtime)

    print()
    print(f"rktlet start latency waterfall (#16): {os.cpu_count()} CPUs, {os.uname().release}, {rname},"
          f" CNI bridge + host-local + portmap, command {' '.join(COMMAND)}")
    print(f"state directories on {'a disk (' + STATE_DIR + ')' if STATE_DIR else 'the harness tmpfs (fsync is free)'}")
    print(f"load average at the start / after the traces / at the end: {' / '.join(' '.join(x) for x in load)}")
    print()
    print(f"untraced, {REPS} pods after 2 warm-up, each interleaved with a bare {rname} create + start:")
    print(f"{'metric':<40} {'min':>8} {'p50':>8} {'max':>8}")
    for k, label in (("RunPodSandbox", "RunPodSandbox (CNI)"), ("CreateContainer", "CreateContainer"),
                     ("StartContainer", "StartContainer"), ("total", "pod total (run + create + start)"),
                     ("bare", f"bare {rname} create + {rname} start"),
                     ("bare traced", f"the same under strace -f, exec to exit ({len(base['bare traced'])})")):
        v = base[k]
        print(f"{label:<40} {ms(min(v)):>6}ms {ms(med(v)):>6}ms {ms(max(v)):>6}ms")
    cs = [c + s for c, s in zip(base["CreateContainer"], base["StartContainer"])]
    print(f"{'CreateContainer + StartContainer':<40} {ms(min(cs)):>6}ms {ms(med(cs)):>6}ms {ms(max(cs)):>6}ms")
    for k in ("RunPodSandbox", "CreateContainer", "StartContainer"):
        tr = [t[k][1] - t[k][0] for _, _, t in runs]
        print(f"{k} traced (daemon only) p50 / untraced p50: {med(tr) / med(base[k]):.2f}x")
    print(f"create + start p50 / bare p50: {med(cs) / med(base['bare']):.2f}x;"
          f" p50 - bare p50: {ms(med(cs) - med(base['bare']))} ms")

    for title, rs, only in (("traced: rktlet and its children under strace --seccomp-bpf, the bus under dbus-monitor;"
                             " the user manager untraced", runs, None),
                            ("traced: the same, and the user manager (with the runc it forks) under strace -p"
                             " (ptrace stops at every syscall of systemd and runc: their steps are stretched)",
                             detail, "StartContainer")):
        print_waterfall(title, rs, only, dev, mev, bus)
    print()
    print("in the traced runs (median; a span is exec to exit; the runc rows come from the runs with the manager"
          " traced, the rest from those without):")
    per = phases(runs, dev, bus, rname)
    for k, v in phases(detail, dev, bus, rname, mev).items():
        if "(manager traced)" in k:
            per[k] = v
    for k, v in per.items():
        if "(count)" in k:
            print(f"  {k:<60} {med(v):.0f}")
        else:
            print(f"  {k:<60} {ms(med(v)):>7} ms  (runs: {', '.join(ms(x) for x in v)})")

    if rounds:
        print()
        print(f"CPU seconds per pod (RunPodSandbox + CreateContainer + StartContainer, one container),"
              f" {CPU_PODS} pods at concurrency {CONCURRENCY}, median of {len(rounds)} rounds:")
        rows = [
            ("rktlet daemon itself", "daemon"),
            ("rktlet's reaped children, all", "children"),
            ("  of which CNI plugins (bridge + host-local + portmap)", "cni"),
            ("  of which the CNI wrappers' bash (measurement cost)", "wrappers"),
            ("  rest: overlay mount + namespace children, spawns", None),
            ("systemd user manager itself", "manager"),
            ("systemd's reaped children (exited ExecStart/Post)", "manager children"),
            (f"container unit cgroups ({rname} + container)", "unit"),
            ("  container's process (runc init + workload)", "main"),
            (f"  rest: {rname} create + {rname} start", None),
            ("pod slices besides their containers (pod init, if any)", "pod"),
            ("D-Bus broker (dbus-daemon)", "bus"),
            ("systemd-journald", "journald"),
        ]
        for rd in rounds:
            rd["rest children"] = rd["children"] - rd["cni"] - rd["wrappers"]
            rd["rest unit"] = rd["unit"] - rd["main"]
        print(f"{'where':<56} {'ms/pod':>8}  (rounds)")
        for label, key in rows:
            if key is None:
                key = "rest children" if "overlay" in label else "rest unit"
            v = [rd[key] for rd in rounds]
            print(f"{label:<56} {med(v) * 1000:8.1f}  ({', '.join(f'{x * 1000:.1f}' for x in v)})")
        print(f"{'pods/s':<56} {med([CPU_PODS / rd['wall'] for rd in rounds]):8.2f}")
        out = sum(rd["outside"] for rd in rounds)
        if out:
            print(f"note: {out} container processes were not in their unit's unified cgroup")


if __name__ == "__main__":
    main()
