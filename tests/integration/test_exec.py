"""ExecSync: a command in a running container, with the container's process settings, its output
capped at 16 MiB, its exit code, and a timeout that kills what it started.

rktlet runs `runc exec --detach`: runc starts the command and exits, and the command's process is
the daemon's (child subreaper) until it exits. While it runs, no runtime process is left.
"""

import concurrent.futures
import os
import signal
import threading
import time

import grpc
import pytest

from rktlet_test import wait_until
from test_containers import (SERVICE, T, caps_of, cd, cgroup_pids, ctr_registry, cleanup, cstatus, ctr_config,  # noqa: F401
                             make_pod, no_container_leftovers, run, runtime_processes, security, stop, unit_of,
                             wait_log, wait_state)
from test_containers import pytestmark  # noqa: F401
from test_pods import cni, no_leftovers  # noqa: F401


def exec_sync(d, pb, cid, cmd, timeout=0, deadline=30):
    # kubelet's limit: the reply may be as big as 16 MiB of output.
    ch = d.channel(**{"grpc.max_receive_message_length": 16 * 1024 * 1024 + 4096})
    return d.runtime(ch).ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=cmd, timeout=timeout), timeout=deadline)


def exec_error(d, pb, cid, cmd, code, **kw):
    with pytest.raises(grpc.RpcError) as e:
        exec_sync(d, pb, cid, cmd, **kw)
    assert e.value.code() == code, e.value.details()
    return e.value.details()


def live_comms(unit):
    """The commands of the live (not zombie) processes in a unit's cgroup."""
    out = []
    for pid in cgroup_pids(unit):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        state = stat[stat.rindex(")") + 2]
        if state != "Z":
            out.append(comm)
    return sorted(out)


def daemon_children(d):
    kids = []
    for tid in os.listdir(f"/proc/{d.pid}/task"):
        with open(f"/proc/{d.pid}/task/{tid}/children") as f:
            kids += [int(p) for p in f.read().split()]
    return kids


@pytest.fixture
def svc(cd, pb):
    """A running pod with one running container (sh as init, waiting); yields (pod, id, config)."""
    pod = make_pod(cd, pb, name="exec")
    cfg = ctr_config(pb, "svc", cd.ref(), command=SERVICE, envs={"FROM_CRI": "cri"}, working_dir="/tmp",
                     linux=security(pb, run_as_user=1000))
    cid = run(cd, pb, pod, cfg)
    wait_log(pod, cfg, "ready")
    yield pod, cid, cfg


def test_output_and_exit_code(cd, pb, svc):
    d = cd
    _, cid, _ = svc
    r = exec_sync(d, pb, cid, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (r.stdout, r.stderr, r.exit_code) == (b"out\n", b"err\n", 3)
    r = exec_sync(d, pb, cid, ["true"])
    assert (r.stdout, r.stderr, r.exit_code) == (b"", b"", 0)
    # Bytes are bytes: no encoding, no NUL cut.
    r = exec_sync(d, pb, cid, ["printf", "a\\000b\\377"])
    assert r.stdout == b"a\x00b\xff"
    # A command killed by a signal: 128 + the signal, as a shell reports it.
    r = exec_sync(d, pb, cid, ["sh", "-c", "kill -9 $$"])
    assert r.exit_code == 128 + signal.SIGKILL
    # A unique prefix of the id is enough, as for every container call.
    assert exec_sync(d, pb, cid[:12], ["echo", "hi"]).stdout == b"hi\n"
    # Nothing is left: no runtime process, no child of the daemon, no exec file.
    assert runtime_processes() == []
    assert daemon_children(d) == []
    ed = os.path.join(d.dir, "run", "containers", cid, "exec")
    assert not os.path.exists(ed), os.listdir(ed)


def test_the_containers_process_settings(cd, pb, svc):
    """User, environment, working directory, capabilities, no_new_privs and cgroup: those of the
    container's own process."""
    d = cd
    _, cid, _ = svc
    init = _main_pid(cid)
    r = exec_sync(d, pb, cid, ["sh", "-c", "id -u; pwd; echo $FROM_CRI; grep -E '^(Cap|NoNewPrivs)' /proc/self/status;"
                               " cat /proc/self/cgroup"])
    lines = r.stdout.decode().splitlines()
    assert lines[:3] == ["1000", "/tmp", "cri"], lines
    with open(f"/proc/{init}/status") as f:
        init_status = f.read()
    want, got = caps_of(init_status), caps_of(r.stdout.decode())
    for k in ("CapBnd", "CapEff", "CapPrm", "CapInh"):
        assert got[k] == want[k], k
    nnp = [line for line in init_status.splitlines() if line.startswith("NoNewPrivs")]
    assert [line for line in lines if line.startswith("NoNewPrivs")] == nnp
    with open(f"/proc/{init}/cgroup") as f:
        want_cg = sorted(f.read().splitlines())
    assert sorted(line for line in lines if line[:1].isdigit() and line.count(":") >= 2) == want_cg


def _main_pid(cid):
    from test_containers import main_pid
    return main_pid(cid)


def test_output_past_16_mib_is_cut_and_the_command_goes_on(cd, pb, svc):
    d = cd
    _, cid, _ = svc
    # 20 MiB on stdout, then a line on stderr and an exit code: the command is not stopped at the cap.
    r = exec_sync(d, pb, cid, ["sh", "-c", "head -c 20971520 /dev/zero; echo done >&2; exit 5"], deadline=60)
    assert r.exit_code == 5
    total = len(r.stdout) + len(r.stderr)
    assert 16 * 1024 * 1024 - 8192 <= total <= 16 * 1024 * 1024, total
    assert set(r.stdout) == {0}


def test_timeout_kills_the_command_and_what_it_started(cd, pb, svc):
    d = cd
    _, cid, _ = svc
    unit = unit_of(cid)
    before = live_comms(unit)
    began = time.monotonic()
    details = exec_error(d, pb, cid, ["sh", "-c", "sleep 60 & sleep 61 & setsid sleep 62 & wait"],
                         grpc.StatusCode.DEADLINE_EXCEEDED, timeout=1, deadline=30)
    took = time.monotonic() - began
    assert took < 10, took
    assert "timed out" in details
    # Nothing of the exec is alive in the container afterwards (the container's own processes are).
    wait_until(lambda: live_comms(unit) == before, 5, what=f"the exec's processes to go (left: {live_comms(unit)})")
    assert daemon_children(d) == []
    # The container goes on.
    assert cstatus(d, pb, cid).status.state == pb.CONTAINER_RUNNING
    assert exec_sync(d, pb, cid, ["echo", "after"]).stdout == b"after\n"


def test_grpc_deadline_kills_the_command(cd, pb, svc):
    """Without a timeout of its own, the call's deadline ends the command."""
    d = cd
    _, cid, _ = svc
    unit = unit_of(cid)
    before = live_comms(unit)
    exec_error(d, pb, cid, ["sleep", "60"], grpc.StatusCode.DEADLINE_EXCEEDED, deadline=2)
    wait_until(lambda: live_comms(unit) == before, 5, what=f"the exec's sleep to go (left: {live_comms(unit)})")


def test_refusals(cd, pb, svc):
    d = cd
    pod, cid, _ = svc
    exec_error(d, pb, "0" * 64, ["true"], grpc.StatusCode.NOT_FOUND)
    assert "container_id" in exec_error(d, pb, "", ["true"], grpc.StatusCode.INVALID_ARGUMENT)
    assert "cmd" in exec_error(d, pb, cid, [], grpc.StatusCode.INVALID_ARGUMENT)
    assert "cmd" in exec_error(d, pb, cid, [""], grpc.StatusCode.INVALID_ARGUMENT)
    exec_error(d, pb, cid, ["true"], grpc.StatusCode.INVALID_ARGUMENT, timeout=-1)
    # A command the image lacks: the runtime's own error, as containerd reports it (UNKNOWN).
    details = exec_error(d, pb, cid, ["/no/such/binary"], grpc.StatusCode.UNKNOWN)
    assert "/no/such/binary" in details and "exec failed" in details, details
    # A container that is not running.
    created = d.runtime().CreateContainer(pb.CreateContainerRequest(
        pod_sandbox_id=pod.id, config=ctr_config(pb, "created", d.ref(), command=["true"]), sandbox_config=pod.config),
        timeout=T).container_id
    assert "not running" in exec_error(d, pb, created, ["true"], grpc.StatusCode.FAILED_PRECONDITION)
    stop(d, pb, cid)
    assert "not running" in exec_error(d, pb, cid, ["true"], grpc.StatusCode.FAILED_PRECONDITION)
    assert daemon_children(d) == []


def test_100_concurrent_on_10_containers_while_other_calls_go_on(cd, pb):
    d = cd
    pod = make_pod(d, pb, name="many")
    cids = []
    for i in range(10):
        cfg = ctr_config(pb, f"c{i}", d.ref(), command=SERVICE)
        cids.append(run(d, pb, pod, cfg))
        wait_log(pod, cfg, "ready")
    versions, stop_versions = [], threading.Event()

    def version_loop():
        while not stop_versions.is_set():
            t0 = time.monotonic()
            d.runtime().Version(pb.VersionRequest(), timeout=10)
            versions.append(time.monotonic() - t0)
            time.sleep(0.01)

    vt = threading.Thread(target=version_loop)
    vt.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(100) as pool:
            futures = [pool.submit(exec_sync, d, pb, cids[i % 10], ["sh", "-c", f"echo {i}; echo e{i} >&2; exit {i % 7}"],
                                   0, 120) for i in range(100)]
            results = [f.result() for f in futures]
    finally:
        stop_versions.set()
        vt.join()
    for i, r in enumerate(results):
        assert (r.stdout, r.stderr, r.exit_code) == (f"{i}\n".encode(), f"e{i}\n".encode(), i % 7)
    # Answered meanwhile, not after the execs: 100 runc processes on this machine's cores make each
    # answer wait for a CPU, so only a generous bound.
    print(f"Version during 100 ExecSyncs: {len(versions)} calls, max {max(versions) * 1000:.1f} ms")
    assert len(versions) >= 5 and max(versions) < 15, versions
    assert daemon_children(d) == []


def test_a_daemon_killed_during_an_exec(cd, make_daemon, pb, svc):
    """The exec fails with the connection; the restarted daemon kills the session left in the
    container, which itself is untouched and keeps logging."""
    d = cd
    pod, cid, cfg = svc
    unit = unit_of(cid)
    before = live_comms(unit)
    fut = concurrent.futures.ThreadPoolExecutor(1).submit(exec_sync, d, pb, cid, ["sh", "-c", "sleep 300 & sleep 301"],
                                                           0, 60)
    wait_until(lambda: live_comms(unit).count("sleep") >= before.count("sleep") + 2, 10, what="the exec to run")
    init = _main_pid(cid)
    d.kill()
    with pytest.raises(grpc.RpcError):
        fut.result()
    d2 = make_daemon("rktlet", start=False, **d.kwargs)
    d2.start()
    try:
        wait_until(lambda: live_comms(unit) == before, 10, what=f"the old exec to be killed (left: {live_comms(unit)})")
        st = cstatus(d2, pb, cid).status
        assert st.state == pb.CONTAINER_RUNNING and _main_pid(cid) == init
        assert exec_sync(d2, pb, cid, ["echo", "again"]).stdout == b"again\n"
        ed = os.path.join(d.dir, "run", "containers", cid, "exec")
        assert not os.path.exists(ed), os.listdir(ed)
    finally:
        cleanup(d2, pb)
