"""Faults, and proof that none loses or leaks anything.

test_chaos_short runs the chaos workload (chaos.py) in its short form: about 200 operations at
concurrency 5 and 10 SIGKILLs of rktlet (run as the packaged service, restarted by systemd), each
followed by checks against systemd's and the kernel's view; the seed is printed, and
RKTLET_CHAOS_SEED replays it (RKTLET_CHAOS_OPS and RKTLET_CHAOS_KILLS change the size).
scripts/chaos runs the long form.

Then crashes at the instants the chaos runs found wanting, provoked on purpose (a SIGSTOP or a
runtime held at a gate pins the instant, then SIGKILL), and faults that are not a crash of rktlet:
systemd's manager re-executed underneath, the bus to systemd dropped, the registry cutting a blob,
ENOSPC on the state directory. Each ends in a clear error or in success, and leaves nothing behind.
(A CNI plugin hanging past its timeout is test_pods.py's.)
"""

import errno
import json
import os
import signal
import subprocess
import time

import grpc
import pytest

import chaos
import registry as reg
from rktlet_test import wait_until
from test_containers import (RUNC, SERVICE, T, cd, cleanup, cmdline, create, cstatus, ctr_config,  # noqa: F401
                             ctr_registry, kill_with_call_pending, main_pid, make_pod, no_container_leftovers,
                             listdir, nothing_left_of, log_file, records, remove, run, show, start, stop, text,
                             unit_of, wait_log, wait_state)
from test_packaged_units import packaged, systemctl  # noqa: F401
from test_images import (assert_stored, idaemon, list_images, proxy, pull, registries_config, registry,  # noqa: F401
                         remove_image, store_contents, wait_store_empty)
from test_pods import (CNI_BIN, cni, cni_available, ipam_ips, mounts_under, no_leftovers,  # noqa: F401
                       pod_daemon, run_pod, status, units)

pytestmark = [
    pytest.mark.skipif(RUNC is None, reason="runc (Debian package runc) is not installed"),
    pytest.mark.skipif(not cni_available(), reason="CNI plugins (containernetworking-plugins) not installed"),
    pytest.mark.skipif(not os.access(reg.DOCKER_REGISTRY, os.X_OK),
                       reason="docker-registry (Debian package docker-registry) is not installed"),
]


def test_chaos_short(tmp_path):
    seed = chaos.seed_from_env()
    print(f"chaos seed {seed} (replay with RKTLET_CHAOS_SEED={seed})")
    c = chaos.run(tmp_path / "chaos", ops=int(os.environ.get("RKTLET_CHAOS_OPS", 200)),
                  kills=int(os.environ.get("RKTLET_CHAOS_KILLS", 10)), seed=seed)
    print(c.table())


# --- crashes at the instants the chaos runs found -------------------------------------------------

def pod_record(d, pod_id):
    with open(os.path.join(d.dir, "lib", "pods", pod_id, "state.json")) as f:
        return json.load(f)


def bridge_ports(bridge="rkt0"):
    out = subprocess.run(["ip", "-j", "link", "show", "master", bridge], capture_output=True, text=True).stdout
    return [link["ifname"] for link in json.loads(out or "[]")]


@pytest.mark.parametrize("call", ["StopPodSandbox", "RemovePodSandbox"])
@pytest.mark.parametrize("stopped", ["slice", "init"])
def test_a_kill_after_the_teardown_began_leaves_the_pod_notready(pod_daemon, make_daemon, pb, call,  # noqa: F811
                                                                 stopped):
    """rktlet is SIGKILLed in a StopPodSandbox (or RemovePodSandbox) after systemd stopped the pod's
    slice (and with it every container), or, for a pod sharing its PID namespace, the pod's init
    (the teardown's first step), but before the teardown ended. The restarted rktlet must not
    report the pod READY: its slice, or the PID 1 of its containers, is gone. NOTREADY (or
    finishing the teardown) lets kubelet stop it again and make a new sandbox; READY tells kubelet
    to start containers in a pod that is half torn down. Found by the chaos runs (seed 1252936694,
    kill 1: a StopPodSandbox in flight; with a shared PID namespace the same after the pod's init
    was stopped, every start in the pod then failing "can't get final child's PID from pipe");
    fixed by afccc2d (NOTREADY saved before a teardown's first step)."""
    d = pod_daemon
    for attempt in range(10):
        pod = run_pod(d, pb, name=f"halfstopped{attempt}", share_pid=stopped == "init")
        slice_ = f"rktlet-pod{pod}.slice"
        unit = slice_ if stopped == "slice" else f"rktlet-init-{pod}.service"
        assert show(unit, "ActiveState") == "active"
        req = getattr(pb, call + "Request")(pod_sandbox_id=pod)
        pending = getattr(d.runtime(), call).future(req, timeout=60)
        # The init stops first, then the slice; CNI DEL (plugins forked, ~100 ms) and the
        # namespaces come after.
        wait_until(lambda: show(unit, "ActiveState") != "active" or pending.done(), 30, interval=0.001,
                   what=f"{unit} to stop")
        d.send_signal(signal.SIGSTOP)  # frozen, it changes nothing: what is on disk is what it leaves
        record = pod_record(d, pod) if os.path.exists(os.path.join(d.dir, "lib", "pods", pod)) else {}
        if not pending.done() and record and show(unit, "ActiveState") != "active":
            break
        d.send_signal(signal.SIGCONT)
        pending.exception()
        d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60)
    else:
        pytest.fail(f"never caught a {call} between the stop of the pod's {stopped} and its end in 10 attempts")
    d.stopped = True
    d.proc.kill()
    d.proc.wait()
    d.close_channels()
    assert record["cniAdded"] and record["nsCreated"], record  # what the restarted daemon must still undo

    d2 = make_daemon("rktlet", start=False, args=["--cni-conf-dir", d.cni["conf"], "--cni-bin-dir", CNI_BIN])
    d2.start()
    try:
        listed = {p.id: p.state for p in d2.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items}
        assert show(unit, "ActiveState") != "active"
        assert listed.get(pod, pb.SANDBOX_NOTREADY) == pb.SANDBOX_NOTREADY, \
            f"pod {pod[:12]} is listed READY, its {unit} is {show(unit, 'ActiveState')}"
        if pod in listed:
            assert status(d2, pb, pod).status.state == pb.SANDBOX_NOTREADY
        # kubelet's way out: stop and remove. Then nothing is left.
        d2.runtime().StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
        d2.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60)
        assert units() == []
        assert ipam_ips(d.cni) == []
        assert bridge_ports() == []
        assert mounts_under(os.path.join(d.dir, "run")) == []
        assert os.listdir(os.path.join(d.dir, "lib", "pods")) == []
    finally:
        cleanup(d2, pb)


def gated_daemon(make_daemon, ctr_registry, cni, tmp_path, pb, name="gated"):  # noqa: F811
    """A daemon whose OCI runtime's create waits while <tmp>/gate exists (a wrapper of runc): a start
    stays in systemd's hands (the unit activating, no main PID yet) as long as the test likes.
    Returns (daemon, gate path, the daemon's make_daemon arguments, busybox reference)."""
    r, images = ctr_registry
    gate = tmp_path / "gate"
    wrapper = tmp_path / "bin" / "gated-runc"
    wrapper.parent.mkdir(exist_ok=True)
    wrapper.write_text(f'#!/bin/sh\ncase " $* " in *" create "*) while [ -e {gate} ]; do sleep 0.05; done;; esac\n'
                       f'exec {RUNC} "$@"\n')
    wrapper.chmod(0o755)
    kwargs = dict(config=registries_config([r.url]) + f"[Containers]\nRuntime={wrapper}\n",
                  args=["--cni-conf-dir", cni["conf"], "--cni-bin-dir", CNI_BIN])
    d = make_daemon(name, **kwargs)
    ref, image = images["busybox"]
    assert pull(d, pb, ref) == image.id
    return d, gate, kwargs, ref


def test_a_kill_while_systemd_still_starts_the_container(ctr_registry, cni, make_daemon, pb, tmp_path):  # noqa: F811
    """rktlet is SIGKILLed in StartContainer while systemd is still starting the unit (ExecStart, the
    OCI runtime's create, has not returned: the unit is activating, no main PID yet). The restarted
    rktlet must follow the unit to its end: once systemd says it runs, the container is RUNNING with
    that main process, and it stops and is removed as any other. Found by the chaos runs (seed 55,
    kill 6: three StartContainer in flight, the units activating when the new rktlet asked; it
    called them EXITED 128 'systemd never ran it' while they ran, one exiting 3 later)."""
    d, gate, kwargs, ref = gated_daemon(make_daemon, ctr_registry, cni, tmp_path, pb)
    pod = make_pod(d, pb, name="slowstart")
    cid = create(d, pb, pod, ctr_config(pb, "svc", ref, command=SERVICE))
    unit = unit_of(cid)
    gate.write_text("")
    pending = d.runtime().StartContainer.future(pb.StartContainerRequest(container_id=cid), timeout=T)
    wait_until(lambda: show(unit, "ActiveState") == "activating", 30, what=f"{unit} to be activating")
    assert not pending.done()
    kill_with_call_pending(d, pending)

    d2 = make_daemon("gated", start=False, **kwargs)
    d2.start()
    try:
        early = cstatus(d2, pb, cid).status
        assert show(unit, "ActiveState") == "activating"
        gate.unlink()
        wait_until(lambda: show(unit, "ActiveState") == "active", 30, what=f"{unit} to be active")
        pid = main_pid(cid)
        assert pid and cmdline(pid)[:2] == SERVICE[:2]
        try:
            st = wait_state(d2, pb, cid, pb.CONTAINER_RUNNING)
        except TimeoutError:
            st = cstatus(d2, pb, cid).status
            pytest.fail(f"systemd runs the container (main pid {pid}), rktlet says "
                        f"{pb.ContainerState.Name(st.state)} {st.exit_code} {st.reason!r} {st.message!r} "
                        f"(while the unit was activating it said {pb.ContainerState.Name(early.state)} "
                        f"{early.reason!r} {early.message!r})")
        assert main_pid(cid) == pid
        stop(d2, pb, cid, timeout=10)
        st = cstatus(d2, pb, cid).status
        assert st.state == pb.CONTAINER_EXITED and st.exit_code == 0, st
        remove(d2, pb, cid)
        nothing_left_of(d2, cid)
    finally:
        if gate.exists():
            gate.unlink()
        cleanup(d2, pb)


def cleanup_when_idle(d, pb, timeout=60):
    """cleanup(), retried while rktlet is still busy with an operation a failed test left going."""
    def done():
        try:
            cleanup(d, pb)
            return True
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.ABORTED:
                raise
            return False
    wait_until(done, timeout, interval=0.5, what="rktlet to be done with the pods")


def test_a_pod_removal_is_not_held_up_by_a_container_ignoring_sigterm(ctr_registry, cni, make_daemon, pb,  # noqa: F811
                                                                    tmp_path):
    """RemovePodSandbox must forcibly terminate what runs in the pod (CRI), however rktlet came to
    think of its containers. Here, as in the chaos runs (seed 305 and 501: the removals at the end
    timed out), a container that ignores SIGTERM runs while rktlet has it EXITED (its start was cut
    short by a kill while the unit was activating, see the test above): the removal stops the pod's
    slice, systemd sends SIGTERM and waits its default 90 s TimeoutStopSec= before SIGKILL, and the
    call outlives its deadline; meanwhile every start in the pod fails ('Requested transaction
    contradicts existing jobs'). The removal must end within its deadline and leave nothing."""
    d, gate, kwargs, ref = gated_daemon(make_daemon, ctr_registry, cni, tmp_path, pb)
    pod = make_pod(d, pb, name="stubbornpod", host_network=False)
    cid = create(d, pb, pod, ctr_config(pb, "stubborn", ref, command=chaos.COMMANDS["stubborn"]))
    unit = unit_of(cid)
    gate.write_text("")
    pending = d.runtime().StartContainer.future(pb.StartContainerRequest(container_id=cid), timeout=T)
    wait_until(lambda: show(unit, "ActiveState") == "activating", 30, what=f"{unit} to be activating")
    kill_with_call_pending(d, pending)
    d2 = make_daemon("gated", start=False, **kwargs)
    d2.start()
    d2.cni = cni
    try:
        cstatus(d2, pb, cid)
        gate.unlink()
        wait_until(lambda: show(unit, "ActiveState") == "active", 30, what=f"{unit} to be active")
        began = time.monotonic()
        try:
            d2.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=30)
        except grpc.RpcError as e:
            st = cstatus(d2, pb, cid).status
            pytest.fail(f"RemovePodSandbox: {e.code().name} after {time.monotonic() - began:.1f} s: {e.details()} "
                        f"(rktlet has the container {pb.ContainerState.Name(st.state)} {st.reason!r}, its unit is "
                        f"{show(unit, 'ActiveState')}/{show(unit, 'SubState')})")
        nothing_left_of(d2, cid)
        assert units() == [] and ipam_ips(cni) == [] and bridge_ports() == []
    finally:
        if gate.exists():
            gate.unlink()
        # What the removal did not kill, killed here, so that it ends and the rest of the suite
        # finds nothing left.
        subprocess.run(["systemctl", "--user", "kill", "--signal=SIGKILL", unit], capture_output=True, timeout=30)
        cleanup_when_idle(d2, pb)


def test_a_kill_during_remove_container_leaves_nothing_to_start_on_an_empty_rootfs(cd, make_daemon, pb):  # noqa: F811
    """rktlet is SIGKILLed in RemoveContainer of a CREATED container after the rootfs was unmounted
    but before the record went. The restarted rktlet must not list a CREATED container whose rootfs
    is not mounted: StartContainer would run the runtime on an empty directory. (It may finish the
    removal at start, as it does for a create cut short, or keep it in a state that cannot start.)
    Found by the chaos runs (seed 703, kill 3: the next StartContainer failed with runc's 'exec:
    "sh": executable file not found in $PATH')."""
    d = cd
    pod = make_pod(d, pb, name="rmcrash")
    for attempt in range(20):
        cid = create(d, pb, pod, ctr_config(pb, f"half{attempt}", d.ref(), command=["sleep", "1000"]))
        rootfs = os.path.join(d.dir, "run", "containers", cid, "rootfs")
        record = os.path.join(d.dir, "lib", "containers", cid, "state.json")
        assert os.path.ismount(rootfs)
        pending = d.runtime().RemoveContainer.future(pb.RemoveContainerRequest(container_id=cid), timeout=T)
        wait_until(lambda: not os.path.ismount(rootfs) or pending.done(), 30, interval=0.0002,
                   what="the rootfs to be unmounted")
        d.send_signal(signal.SIGSTOP)
        if not pending.done() and os.path.exists(record) and not os.path.ismount(rootfs):
            break
        d.send_signal(signal.SIGCONT)
        pending.exception()
    else:
        d.send_signal(signal.SIGCONT)
        pytest.fail("never caught a RemoveContainer between the unmount and the record's deletion in 20 attempts")
    kill_with_call_pending(d, pending)

    d2 = make_daemon("rktlet", start=False, **d.kwargs)
    d2.start()
    d2.ref = d.ref
    try:
        listed = {c.id: c.state for c in d2.runtime().ListContainers(pb.ListContainersRequest(),
                                                                      timeout=10).containers}
        if listed.get(cid) == pb.CONTAINER_CREATED:
            assert os.path.ismount(rootfs), \
                f"container {cid[:12]} is listed CREATED, its rootfs {rootfs} is not mounted"
        if cid in listed:
            remove(d2, pb, cid)
        wait_until(lambda: cid not in listdir(os.path.join(d.dir, "lib", "containers")), 30,
                   what="the container to be gone")
        nothing_left_of(d2, cid)
    finally:
        cleanup(d2, pb)


def test_a_kill_just_after_a_start_loses_no_line(packaged, pb):  # noqa: F811
    """rktlet (the packaged service, its log pipes in the fd store) is SIGKILLed in StartContainer
    just after systemd started the unit: the container's first lines are in the pipe or in the log,
    and the restarted rktlet must log every line, from the first. Found by the chaos runs (seed 304,
    kill 2: a counter's line-0 missing, line-1 on)."""
    d = packaged
    systemctl("start", "rktlet.socket")
    ref, image = d.test_images["busybox"]
    assert pull(d, pb, ref) == image.id
    pod = make_pod(d, pb, name="firstline")
    cfg = ctr_config(pb, "counter", ref, command=chaos.COMMANDS["counter"])
    cid = create(d, pb, pod, cfg)
    unit = unit_of(cid)
    old = int(show("rktlet.service", "MainPID"))
    pending = d.runtime().StartContainer.future(pb.StartContainerRequest(container_id=cid), timeout=T)
    wait_until(lambda: show(unit, "ActiveState") == "active", 30, interval=0.001, what=f"{unit} to be active")
    os.kill(old, signal.SIGKILL)
    try:
        pending.result()
    except grpc.RpcError:
        pass
    d.close_channels()
    try:
        wait_until(lambda: show("rktlet.service", "MainPID") not in ("0", "", str(old)), 30, what="the restart")
        st = wait_state(d, pb, cid, pb.CONTAINER_RUNNING)
        assert st.state == pb.CONTAINER_RUNNING
        wait_log(pod, cfg, "line-10\n")
        lines = text(records(log_file(pod, cfg))).splitlines()
        assert lines[:10] == [f"line-{i}" for i in range(10)], lines[:12]
        remove(d, pb, cid)
    finally:
        cleanup(d, pb)


# --- faults that are not a crash of rktlet --------------------------------------------------------

START_DEADLINE = 30  # the start in flight's: the runtime's create takes a second, systemd answers at once


def disagreements(d, pb, cids):
    """Containers whose state rktlet tells otherwise than systemd: RUNNING exactly when the unit's
    main process runs, never UNKNOWN once systemd answers."""
    out = []
    for c in cids:
        pid = main_pid(c)
        running = bool(pid) and chaos.alive(pid)
        st = cstatus(d, pb, c).status
        if (st.state == pb.CONTAINER_RUNNING) != running or st.state == pb.CONTAINER_UNKNOWN:
            out.append(f"container {c[:12]}: rktlet says {pb.ContainerState.Name(st.state)} {st.reason!r}, its unit is "
                       f"{show(unit_of(c), 'ActiveState')} with main pid {pid}")
    return out


def a_fault_under_a_start(d, pb, gate, ref, fault, name):
    """A pod with running containers and a start in flight (the unit activating, its create held at
    the gate) when fault() strikes; then the start is let go. rktlet must answer the start (success,
    or an error saying why) within its deadline, tell each container's truth, keep the running
    one's log going, see an exit that happens after the fault, and run, stop and remove as before.
    Returns the problems found (each check is made, whatever the ones before found)."""
    problems = []
    pod = make_pod(d, pb, name=name, host_network=False)
    cfg = ctr_config(pb, "counter", ref, command=chaos.COMMANDS["counter"])
    running = run(d, pb, pod, cfg)
    wait_log(pod, cfg, "line-3\n")
    pid = main_pid(running)
    victim = run(d, pb, pod, ctr_config(pb, "victim", ref, command=SERVICE))
    wait_state(d, pb, victim, pb.CONTAINER_RUNNING)
    starting = create(d, pb, pod, ctr_config(pb, "starting", ref, command=SERVICE))
    gate.write_text("")
    pending = d.runtime().StartContainer.future(pb.StartContainerRequest(container_id=starting), timeout=START_DEADLINE)
    wait_until(lambda: show(unit_of(starting), "ActiveState") == "activating", 30,
               what="the start to be in systemd's hands")
    fault()
    gate.unlink()
    try:
        pending.result()
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            problems.append(f"the StartContainer in flight got no answer within its {START_DEADLINE} s deadline")
        elif not e.details():
            problems.append(f"the StartContainer in flight failed with {e.code().name} and no message")
    # An exit after the fault is seen: the unit is watched.
    victim_pid = main_pid(victim)
    os.kill(victim_pid, signal.SIGKILL)
    try:
        st = wait_state(d, pb, victim, pb.CONTAINER_EXITED)
        if st.exit_code != 137:
            problems.append(f"container {victim[:12]}, SIGKILLed, exited {st.exit_code}")
    except TimeoutError:
        problems.append(f"container {victim[:12]}, SIGKILLed after the fault, is still "
                        f"{pb.ContainerState.Name(cstatus(d, pb, victim).status.state)} for rktlet: its unit is "
                        f"not watched any more")
    try:
        wait_until(lambda: not disagreements(d, pb, [running, starting]), 20, interval=0.1, what="agreement")
    except TimeoutError:
        problems += disagreements(d, pb, [running, starting])
    if main_pid(running) != pid:
        problems.append(f"container {running[:12]} ran as pid {pid}, now {main_pid(running)}")
    seen = len(text(records(log_file(pod, cfg))).splitlines())
    try:
        wait_log(pod, cfg, f"line-{seen + 3}\n")
    except TimeoutError:
        problems.append(f"container {running[:12]}'s log stopped at line {seen}")
    # Everything works as before, and is removed.
    again = run(d, pb, pod, ctr_config(pb, "again", ref, command=SERVICE))
    wait_state(d, pb, again, pb.CONTAINER_RUNNING)
    stop(d, pb, running, timeout=10)
    d.runtime().StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=T)
    d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=T)
    for c in (running, victim, starting, again):
        nothing_left_of(d, c)
    assert ipam_ips(d.cni) == [] and bridge_ports() == []
    assert mounts_under(os.path.join(d.dir, "run")) == []
    return problems


def survives_a_fault_under_a_start(d, pb, gate, ref, fault, name, what):
    """a_fault_under_a_start(), then everything removed whatever it found; fails listing its problems."""
    try:
        problems = a_fault_under_a_start(d, pb, gate, ref, fault, name)
    finally:
        if gate.exists():
            gate.unlink()
        cleanup(d, pb)
    if problems:
        pytest.fail(f"after {what}:\n" + "\n".join(problems))


@pytest.mark.disturbs_systemd
def test_the_systemd_manager_reexecuted_underneath(ctr_registry, cni, make_daemon, pb, tmp_path,  # noqa: F811
                                                   user_manager_pid):
    """`systemctl --user daemon-reexec` with pods and containers running and a start in flight: the
    manager serializes itself, execs and comes back with its units and jobs. rktlet's calls end
    (the start succeeds or fails saying why), its containers are what systemd says, their units
    are still watched (an exit afterwards is seen), and everything works and is removed."""
    d, gate, _, ref = gated_daemon(make_daemon, ctr_registry, cni, tmp_path, pb)
    d.cni = cni

    def reexec():
        subprocess.run(["systemctl", "--user", "daemon-reexec"], check=True, capture_output=True, timeout=60)
        assert user_manager_pid == int(subprocess.run(["systemctl", "--user", "show", "-P", "MainPID"],
                                                      capture_output=True, text=True).stdout or user_manager_pid)
    survives_a_fault_under_a_start(d, pb, gate, ref, reexec, "reexec", "daemon-reexec")


@pytest.mark.disturbs_systemd
def test_the_bus_to_systemd_dropped(ctr_registry, cni, make_daemon, pb, tmp_path):  # noqa: F811
    """The bus daemon restarted (`systemctl --user restart dbus.service`: the user manager's bus,
    which the harness's session bus is) with pods and containers running and a start in flight:
    every connection drops, rktlet's and systemd's. rktlet connects again and watches its
    containers again ("the watches were written for this"): the start in flight ends, saying why if
    it failed, the containers are what systemd says, an exit afterwards is seen, and everything
    works and is removed."""
    d, gate, _, ref = gated_daemon(make_daemon, ctr_registry, cni, tmp_path, pb)
    d.cni = cni

    def drop_the_bus():
        subprocess.run(["systemctl", "--user", "restart", "dbus.service"], check=True, capture_output=True, timeout=60)
        wait_until(lambda: subprocess.run(["busctl", "--user", "--timeout=2", "call", "org.freedesktop.systemd1",
                                           "/org/freedesktop/systemd1", "org.freedesktop.DBus.Peer", "Ping"],
                                          capture_output=True).returncode == 0, 30, what="systemd back on the bus")
    survives_a_fault_under_a_start(d, pb, gate, ref, drop_the_bus, "busdrop", "the bus dropped")


# --- the registry drops the connection mid-blob --------------------------------------------------

def test_the_registry_drops_the_connection_mid_blob(idaemon, registry, proxy, pb):  # noqa: F811
    """Every blob body is cut after 256 KiB and its connection reset (RST), as a registry or a load
    balancer dying mid-transfer does. The pull ends in a clear error (or, retried, in success) and
    leaves no partial download, layer or record; once the registry behaves, the same pull works and
    stores the image whole."""
    d = idaemon
    image = reg.Image([reg.base_layer(), reg.random_layer(2 << 20, name="dropped")])
    image.push(registry, "dropped", "v1")
    ref = f"{proxy.url}/dropped:v1"
    proxy.drop_after = 256 * 1024
    try:
        got = pull(d, pb, ref)
        assert got == image.id  # retried until whole: fine, if whole
        print(f"the pull through cut blobs succeeded ({proxy.dropped} bodies cut)")
    except grpc.RpcError as e:
        print(f"the pull through cut blobs failed: {e.code().name}: {e.details()}")
        assert e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED, grpc.StatusCode.DATA_LOSS), \
            (e.code(), e.details())
        assert e.details() and any(layer.digest in e.details() for layer in image.layers), e.details()
        assert list_images(d, pb) == []
        wait_store_empty(d, "the cut downloads to leave nothing")
    assert proxy.dropped >= 1
    wait_until(lambda: not any(proxy.sending.values()), what="the proxy to end its bodies")
    proxy.drop_after = None
    assert pull(d, pb, ref) == image.id
    assert_stored(d, image)
    assert store_contents(d)["blobs/tmp"] == []
    remove_image(d, pb, ref)
    wait_store_empty(d, "the removed image to leave nothing")


# --- ENOSPC on the state directory ---------------------------------------------------------------

PAGE = os.sysconf("SC_PAGESIZE")


def fill(path, leave_pages):
    """Fills the filesystem at path but for leave_pages pages (a file of zeros, allocated)."""
    filler = os.path.join(path, "filler")
    if os.path.exists(filler):
        os.unlink(filler)
    st = os.statvfs(path)
    size = st.f_bavail * st.f_frsize - leave_pages * PAGE
    if size > 0:
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
    assert os.statvfs(path).f_bavail * os.statvfs(path).f_frsize <= max(leave_pages, 0) * PAGE + PAGE


def unfill(path):
    filler = os.path.join(path, "filler")
    if os.path.exists(filler):
        os.unlink(filler)


def assert_enospc(e, what):
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, f"{what}: {e.code().name}: {e.details()}"
    assert os.strerror(errno.ENOSPC) in e.details(), f"{what}: {e.details()}"


def test_enospc_on_the_state_directory(ctr_registry, cni, make_daemon, pb):  # noqa: F811
    """The state directory is a small tmpfs, filled but for 0, 1, 2, ... pages before each
    RunPodSandbox, CreateContainer and StartContainer, so that each step that writes there meets
    ENOSPC in turn. RunPodSandbox and CreateContainer succeed or fail with RESOURCE_EXHAUSTED saying
    'No space left on device'; StartContainer succeeds or fails (UNKNOWN, a StartError, as a start
    the runtime refuses) saying why: the disk, or the runtime's own reason. A failed call leaves
    nothing (record, directory, pinned namespace, unit, address, veth, mount, runtime state), and a
    full disk does not stop a removal."""
    r, images = ctr_registry
    d = make_daemon(start=False, config=registries_config([r.url]), args=["--cni-conf-dir", cni["conf"],
                                                                         "--cni-bin-dir", CNI_BIN])
    d.cni = cni
    state = os.path.join(d.dir, "run")
    os.makedirs(state)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", state], check=True)
    outcomes = {"RunPodSandbox": [], "CreateContainer": [], "StartContainer": []}
    unclear = []  # failures that do not say why
    try:
        d.start()
        ref, image = images["busybox"]
        assert pull(d, pb, ref) == image.id

        def nothing_of_pods():
            assert list(d.runtime().ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items) == []
            assert units() == [] and ipam_ips(cni) == [] and bridge_ports() == []
            assert listdir(os.path.join(state, "pods")) == [] and listdir(os.path.join(d.dir, "lib", "pods")) == []
            assert mounts_under(state + "/") == []

        for k in range(8):
            fill(state, k)
            try:
                pod = make_pod(d, pb, name=f"full{k}", host_network=False)
                outcomes["RunPodSandbox"].append((k, "ok"))
                d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=T)
            except grpc.RpcError as e:
                outcomes["RunPodSandbox"].append((k, e.code().name))
                assert_enospc(e, f"RunPodSandbox with {k} pages free")
            nothing_of_pods()

        unfill(state)
        pod = make_pod(d, pb, name="ctrs", host_network=False)
        ctr_dirs = [os.path.join(d.dir, "lib", "containers"), os.path.join(state, "containers"),
                    os.path.join(state, "runc")]
        for k in [*range(8), 12, 16, 24, 32, 64, 128]:
            fill(state, k)
            cfg = ctr_config(pb, f"c{k}", ref, command=SERVICE)
            try:
                cid = create(d, pb, pod, cfg)
            except grpc.RpcError as e:
                outcomes["CreateContainer"].append((k, e.code().name))
                assert_enospc(e, f"CreateContainer with {k} pages free")
                assert list(d.runtime().ListContainers(pb.ListContainersRequest(), timeout=10).containers) == []
                assert [listdir(p) for p in ctr_dirs] == [[], [], []]
                assert mounts_under(os.path.join(state, "containers")) == []
                continue
            outcomes["CreateContainer"].append((k, "ok"))
            try:
                start(d, pb, cid)
                outcomes["StartContainer"].append((k, "ok"))
                assert cstatus(d, pb, cid).status.state == pb.CONTAINER_RUNNING
            except grpc.RpcError as e:
                outcomes["StartContainer"].append((k, e.code().name))
                # A start the runtime refuses is UNKNOWN (as containerd), with its reason; the
                # container is then EXITED (a StartError) and its failed unit kept until removal.
                assert e.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNKNOWN), e.details()
                st = cstatus(d, pb, cid).status
                assert st.state == pb.CONTAINER_EXITED and st.reason == "StartError", st
                # The runtime's own words will do (runc 1.1 says "unable to store init state"
                # and loses the errno); a message with no reason at all will not.
                if os.strerror(errno.ENOSPC) not in e.details() and f"{os.path.basename(RUNC)} create failed" \
                        not in e.details():
                    unclear.append(f"StartContainer with {k} pages free: {e.code().name}: {e.details()} (the "
                                   f"container's stderr: {text(records(log_file(pod, cfg)), 'stderr')!r})")
            remove(d, pb, cid)  # with the disk full
            nothing_left_of(d, cid)
        unfill(state)
        d.runtime().RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=T)
        nothing_of_pods()
        print("ENOSPC outcomes (pages free, result):", outcomes)
        for call, results in outcomes.items():
            assert any(res == "ok" for _, res in results), f"{call} never succeeded: {results}"
        assert any(res != "ok" for _, res in outcomes["RunPodSandbox"]), outcomes
        assert any(res != "ok" for _, res in outcomes["CreateContainer"]), outcomes
        if unclear:
            pytest.fail("failures that do not say the disk is full:\n" + "\n".join(unclear))
    finally:
        unfill(state)
        cleanup(d, pb)
        rc = d.stop()
        subprocess.run(["umount", state], check=True)  # fails if anything is still mounted beneath
        assert rc == 0, f"rktlet exited with {rc}:\n{d.log()}"
