"""Attach: crictl (client-go's SPDY attach, as kubectl and kubelet use it) to running containers,
several clients at once, one that never reads (a raw SPDY client with a tiny receive buffer), the
CRI log beside them, stdin and stdin_once, a tty and its size, and the request's validation.

crictl is /work/shared/bin/crictl (see test_crictl.py); without it these tests are skipped with the
reason."""

import json
import os
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import time
import zlib

import grpc
import pytest

from rktlet_test import SOURCE_DIR, wait_until
from test_crictl import CNI_BIN, CRICTL, Crictl, TIMEOUT, hub, pytestmark, wait_container_state  # noqa: F401
from test_crictl import write_readme_files
from test_containers import (cleanup, create, ctr_config, ctr_registry, log_file, make_pod,  # noqa: F401
                             no_container_leftovers, records, show, text, wait_log, wait_state)
from test_containers import start as start_ctr
from test_images import pull
from test_packaged_units import packaged, systemctl  # noqa: F401
from test_images import registries_config
from test_pods import cni, no_leftovers  # noqa: F401

TICKER = "i=0; while :; do i=$((i+1)); echo tick$i; sleep 0.2; done"
ECHO = "while read l; do echo got:$l; done; echo stdin-ended"


@pytest.fixture
def ad(make_daemon, hub, cni, pb):  # noqa: F811
    """A daemon as test_crictl's with a ready pod: d.crictl, d.pod_id, d.logs (the pod's log directory)."""
    r = hub[0]
    d = make_daemon(config=registries_config([r.url], {"docker.io": [r.url]}),
                    args=["--cni-conf-dir", cni["conf"], "--cni-bin-dir", CNI_BIN])
    d.cni = cni
    d.crictl = c = Crictl(d, os.path.join(d.dir, "crictl"))
    d.logs = os.path.join(d.dir, "pod-logs")
    write_readme_files(c, d.logs)
    c("pull", "busybox")
    d.pod_id = c("runp", "pod.json").stdout.strip()
    yield d
    if d.alive():
        cleanup(d, pb)


def start(d, name, script, **cfg):
    """A running busybox container running `sh -c script`, with its log at <logs>/<name>.log."""
    c = d.crictl
    config = {"metadata": {"name": name}, "image": {"image": "busybox"}, "command": ["sh", "-c", script],
              "log_path": f"{name}.log", "linux": {}}
    config.update(cfg)
    with open(os.path.join(c.workdir, f"{name}.json"), "w") as f:
        json.dump(config, f)
    cid = c("create", d.pod_id, f"{name}.json", "pod.json").stdout.strip()
    c("start", cid)
    wait_container_state(c, cid, "CONTAINER_RUNNING")
    return cid


def attach(d, *args, stdin=subprocess.DEVNULL):
    c = d.crictl
    return subprocess.Popen([CRICTL, "--config", c.config, "attach", *args], cwd=c.workdir, env=c.env, stdin=stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def read_until(f, pattern, timeout=20):
    """Reads the pipe (or pty) fd f until pattern matches what came; returns it all."""
    fd = f if isinstance(f, int) else f.fileno()
    out = b""
    end = time.monotonic() + timeout
    while not re.search(pattern, out):
        left = end - time.monotonic()
        assert left > 0, f"no {pattern!r} in {out[-2000:]!r}"
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                b = os.read(fd, 65536)
            except OSError:
                b = b""
            if not b:
                raise AssertionError(f"EOF before {pattern!r} in {out[-2000:]!r}")
            out += b
    return out


def feed_until(write, f, pattern, timeout=30):
    """Calls write() every half second until f shows pattern (a client that is still setting up
    its streams sees nothing of what came before it)."""
    fd = f if isinstance(f, int) else f.fileno()
    out = b""
    end = time.monotonic() + timeout
    while not re.search(pattern, out):
        assert time.monotonic() < end, f"no {pattern!r} in {out[-2000:]!r}"
        write()
        stop = time.monotonic() + 0.5
        while not re.search(pattern, out) and time.monotonic() < stop:
            r, _, _ = select.select([fd], [], [], max(stop - time.monotonic(), 0))
            if r:
                b = os.read(fd, 65536)
                assert b, f"EOF before {pattern!r} in {out[-2000:]!r}"
                out += b
    return out


def line_writer(p, line):
    def write():
        p.stdin.write(line)
        p.stdin.flush()
    return write


def stop_client(p):
    p.send_signal(signal.SIGINT)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def log_ticks(d, name):
    with open(os.path.join(d.logs, f"{name}.log")) as f:
        return [int(m.group(1)) for m in re.finditer(r"^\S+ stdout F tick(\d+)$", f.read(), re.M)]


def assert_contiguous(ticks):
    assert ticks and ticks == list(range(1, len(ticks) + 1)), ticks


# --- output ----------------------------------------------------------------------------------------

def test_output_from_then_on_several_clients_and_the_log_loses_nothing(ad):
    d = ad
    cid = start(d, "ticker", TICKER)
    time.sleep(1.5)
    a = attach(d, cid)
    out = read_until(a.stdout, rb"(tick\d+\n.*){3}", timeout=20)
    first = int(re.search(rb"tick(\d+)", out).group(1))
    assert first >= 3, out  # what the container wrote from then on, not its log from the start
    ticks = [int(x) for x in re.findall(rb"tick(\d+)\n", out)]
    assert ticks == list(range(first, first + len(ticks))), out
    # A second client at once: both receive.
    b = attach(d, cid)
    now = int(re.search(rb"tick(\d+)", read_until(b.stdout, rb"tick\d+\n")).group(1))
    read_until(a.stdout, rb"tick%d\n" % (now + 2))
    read_until(b.stdout, rb"tick%d\n" % (now + 2))
    stop_client(a)
    read_until(b.stdout, rb"tick%d\n" % (now + 4))
    stop_client(b)
    time.sleep(0.5)
    c = attach(d, cid)
    read_until(c.stdout, rb"tick\d+\n")
    c.kill()
    c.wait()
    # Clients came and went: the log has every line.
    last = log_ticks(d, "ticker")[-1]
    wait_until(lambda: log_ticks(d, "ticker")[-1] >= last + 2, 10, what="the log to go on")
    assert_contiguous(log_ticks(d, "ticker"))
    # The container's exit ends the session: a plain end (Success, as containerd's), crictl exits 0.
    p = attach(d, cid)
    read_until(p.stdout, rb"tick\d+\n")
    d.crictl("stop", "-t", "1", cid)
    assert p.wait(20) == 0, p.stderr.read()
    assert d.alive()


def test_stdin_reaches_the_container_and_its_end_detaches(ad):
    d = ad
    cid = start(d, "echo", ECHO, stdin=True)
    p = attach(d, "-i", cid, stdin=subprocess.PIPE)
    p.stdin.write(b"hello\n")  # crictl sends it once its streams are open
    p.stdin.flush()
    read_until(p.stdout, rb"got:hello\n")
    # The client's stdin ends: the client is detached, the container's stdin stays open.
    p.stdin.close()
    assert p.wait(20) == 0, p.stderr.read()
    q = attach(d, "-i", cid, stdin=subprocess.PIPE)
    r = attach(d, cid)  # a second client, output only, sees what the first one's input made
    feed_until(line_writer(q, b"again\n"), r.stdout, rb"got:again\n")
    read_until(q.stdout, rb"got:again\n")
    stop_client(q)
    stop_client(r)
    assert d.crictl.json("inspect", "-o", "json", cid)["status"]["state"] == "CONTAINER_RUNNING"
    with open(os.path.join(d.logs, "echo.log")) as f:
        log = f.read()
    assert "got:hello" in log and "got:again" in log and "stdin-ended" not in log, log


def test_stdin_once_closes_the_containers_stdin(ad):
    d = ad
    cid = start(d, "once", ECHO, stdin=True, stdin_once=True)
    p = attach(d, "-i", cid, stdin=subprocess.PIPE)
    other = attach(d, cid)
    feed_until(line_writer(p, b"only\n"), other.stdout, rb"got:only\n")
    read_until(p.stdout, rb"got:only\n")
    # stdin_once: the first client's end of stdin is the container's; the output goes on until it exits.
    p.stdin.close()
    read_until(p.stdout, rb"stdin-ended\n")
    read_until(other.stdout, rb"stdin-ended\n")
    assert p.wait(20) == 0, p.stderr.read()
    assert other.wait(20) == 0, other.stderr.read()
    st = wait_container_state(d.crictl, cid, "CONTAINER_EXITED")
    assert st.get("exitCode", 0) == 0, st


def test_tty_output_input_and_resize(ad):
    d = ad
    cid = start(d, "term", "exec sh", tty=True, stdin=True)
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(d.crictl.workdir)
        os.execve(CRICTL, [CRICTL, "--config", d.crictl.config, "attach", "-it", cid], d.crictl.env)
    import fcntl
    import termios
    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
        time.sleep(1)
        os.write(fd, b"[ -t 0 ] && [ -t 1 ] && echo is-a-$((0))tty; stty size; echo mark$((6*7))\r")
        out = read_until(fd, rb"mark42")
        assert b"is-a-0tty" in out, out  # the container's terminal (its name is the daemon's: no /dev/pts/N)
        assert re.search(rb"33 101", out), out  # the resize stream's size, on the container's terminal
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        os.kill(pid, signal.SIGWINCH)  # crictl sends the new size on the resize stream
        feed_until(lambda: os.write(fd, b"stty size\r"), fd, rb"\n40 120\r")
        os.write(fd, b"exit 3\r")
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status  # a plain end
    finally:
        os.close(fd)
    wait_container_state(d.crictl, cid, "CONTAINER_EXITED")
    with open(os.path.join(d.logs, "term.log")) as f:
        assert "mark42" in f.read()


# --- a client that never reads ---------------------------------------------------------------------

def spdy_dictionary():
    with open(os.path.join(SOURCE_DIR, "src", "stream", "spdy.c")) as f:
        text = f.read()
    body = re.search(r"spdy_dictionary\[\] = \{(.*?)\};", text, re.S).group(1)
    return bytes(int(x, 16) for x in re.findall(r"0x([0-9a-f]{2})", body))


class StalledClient:
    """A SPDY attach client with a 4 KiB receive buffer that opens error, stdout and stderr, then never
    reads."""

    def __init__(self, url):
        m = re.match(r"http://([^/]+):(\d+)(/.*)", url)
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((m.group(1), int(m.group(2))))
        s.sendall(f"GET {m.group(3)} HTTP/1.1\r\nHost: {m.group(1)}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                  f"X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        z = zlib.compressobj(zdict=spdy_dictionary())
        for i, kind in enumerate(["error", "stdout", "stderr"]):
            block = struct.pack(">I", 1)
            for k, v in ((b"streamtype", kind.encode()),):
                block += struct.pack(">I", len(k)) + k + struct.pack(">I", len(v)) + v
            hb = z.compress(block) + z.flush(zlib.Z_SYNC_FLUSH)
            payload = struct.pack(">IIH", 2 * i + 1, 0, 0) + hb
            s.sendall(struct.pack(">HHI", 0x8003, 1, len(payload)) + payload)
        self.sock = s

    def connected(self):
        """False once the server closed (a read would see EOF or a reset past what is buffered)."""
        try:
            info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        except OSError:
            return False
        return info[0] == 1  # TCP_ESTABLISHED: no FIN or RST came


def test_a_client_that_never_reads_is_dropped_and_slows_nobody(ad, pb):
    d = ad
    # A line every 50 ms, with 20 KB of filler: ~400 KB/s.
    cid = start(d, "fast", "i=0; while :; do i=$((i+1)); echo tick$i; head -c 20000 /dev/zero | tr '\\0' x; echo; "
                            "sleep 0.05; done")
    url = d.runtime().Attach(pb.AttachRequest(container_id=cid, stdout=True, stderr=True), timeout=10).url
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/attach/[A-Za-z0-9_-]{43}", url), url
    stalled = StalledClient(url)
    good = attach(d, cid)
    read_until(good.stdout, rb"tick\d+\n")
    wait_until(lambda: "reads too slowly" in d.log(), 30, interval=0.2, what="the stalled client to be dropped")
    wait_until(lambda: not stalled.connected(), 10, interval=0.1, what="the stalled client's connection to close")
    # The other client and the log go on.
    out = read_until(good.stdout, rb"tick\d+\n")
    n = int(re.findall(rb"tick(\d+)\n", out)[-1])
    read_until(good.stdout, rb"tick%d\n" % (n + 10))
    stop_client(good)
    stalled.sock.close()
    ticks = log_ticks(d, "fast")
    assert_contiguous(ticks)
    assert ticks[-1] >= n + 10
    assert d.alive()


# --- the CRI call ------------------------------------------------------------------------------------

def test_attach_judges_the_request(ad, pb):
    d = ad
    cid = start(d, "plain", TICKER)
    tty_cid = start(d, "withtty", TICKER, tty=True)

    def code(**kw):
        with pytest.raises(grpc.RpcError) as e:
            d.runtime().Attach(pb.AttachRequest(**kw), timeout=10)
        return e.value.code(), e.value.details()
    assert code(container_id="0" * 64, stdout=True)[0] == grpc.StatusCode.NOT_FOUND
    assert code(container_id=cid)[0] == grpc.StatusCode.INVALID_ARGUMENT  # no stream at all
    assert code(container_id=tty_cid, tty=True, stdout=True, stderr=True)[0] == grpc.StatusCode.INVALID_ARGUMENT
    c, msg = code(container_id=cid, tty=True, stdout=True)
    assert c == grpc.StatusCode.INVALID_ARGUMENT and "without a tty" in msg, msg
    c, msg = code(container_id=tty_cid, stdout=True)
    assert c == grpc.StatusCode.INVALID_ARGUMENT and "with a tty" in msg, msg
    url = d.runtime().Attach(pb.AttachRequest(container_id=cid, stdout=True, stderr=True), timeout=10).url
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/attach/[A-Za-z0-9_-]{43}", url), url
    assert d.runtime().Attach(pb.AttachRequest(container_id=tty_cid, tty=True, stdout=True), timeout=10).url
    d.crictl("stop", "-t", "1", cid)
    assert code(container_id=cid, stdout=True)[0] == grpc.StatusCode.FAILED_PRECONDITION
    # crictl says the same.
    r = d.crictl("attach", cid, check=False)
    assert r.returncode != 0 and "FailedPrecondition" in r.stderr, r


def test_sessions_end_with_the_daemon(ad, pb):
    d = ad
    cid = start(d, "survivor", TICKER)
    a = attach(d, cid)
    read_until(a.stdout, rb"tick\d+\n")
    d.stop()
    a.wait(20)  # the session ended with the daemon
    d.start()
    # Outside systemd there is no fd store: the pipes went with the daemon, and attach says so.
    with pytest.raises(grpc.RpcError) as e:
        d.runtime().Attach(pb.AttachRequest(container_id=cid, stdout=True), timeout=10)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION, e.value


def test_attach_again_after_the_service_restarts(packaged, pb):  # noqa: F811
    """The packaged service keeps the container's stdin end in the fd store with its log pipes: a
    restarted rktlet attaches again, stdin and all, and the log goes on."""
    d = packaged
    systemctl("start", "rktlet.socket")
    ref, _ = d.test_images["busybox"]
    pull(d, pb, ref)
    pod = make_pod(d, pb, name="attach")
    cfg = ctr_config(pb, "echo", ref, command=["sh", "-c", ECHO], stdin=True)
    cid = create(d, pb, pod, cfg)
    try:
        start_ctr(d, pb, cid)
        wait_state(d, pb, cid, pb.CONTAINER_RUNNING)
        d.crictl = Crictl(d, os.path.join(d.dir, "crictl"), image_endpoint=False)
        p = attach(d, "-i", cid, stdin=subprocess.PIPE)
        p.stdin.write(b"before\n")
        p.stdin.flush()
        read_until(p.stdout, rb"got:before\n")
        old = show("rktlet.service", "MainPID")
        systemctl("restart", "rktlet.service")
        p.wait(30)  # the session ended with the daemon
        d.close_channels()
        wait_until(lambda: show("rktlet.service", "MainPID") not in ("0", "", old), 30, what="the restart")
        wait_state(d, pb, cid, pb.CONTAINER_RUNNING)
        q = attach(d, "-i", cid, stdin=subprocess.PIPE)
        q.stdin.write(b"after\n")
        q.stdin.flush()
        read_until(q.stdout, rb"got:after\n")
        stop_client(q)
        wait_log(pod, cfg, "got:after\n")
        assert "got:before" in text(records(log_file(pod, cfg)))
    finally:
        cleanup(d, pb)


def ws_attach_line(d, pb, cid, line, tty=False):
    """Attaches over a WebSocket (v5.channel.k8s.io), sends line on stdin until "got:<line>" comes
    back on stdout, then the v5 close signal; returns what stdout carried."""
    import asyncio
    import websockets
    url = d.runtime().Attach(pb.AttachRequest(container_id=cid, stdin=True, stdout=True, stderr=not tty, tty=tty),
                             timeout=10).url
    assert url.startswith("http://")
    want = b"got:" + line

    async def session():
        got = b""
        async with websockets.connect("ws://" + url[len("http://"):], subprotocols=["v5.channel.k8s.io"],
                                      max_size=None, compression=None, open_timeout=10) as conn:
            assert conn.subprotocol == "v5.channel.k8s.io"
            deadline = asyncio.get_event_loop().time() + 30
            while want not in got:
                assert asyncio.get_event_loop().time() < deadline, got
                await conn.send(b"\x00" + line + b"\n")
                try:
                    m = await asyncio.wait_for(conn.recv(), 1)
                except asyncio.TimeoutError:
                    continue
                if m[:1] == b"\x01":
                    got += m[1:]
            await conn.send(b"\xff\x00")  # v5: close stdin
            try:
                while True:
                    await asyncio.wait_for(conn.recv(), 20)
            except websockets.exceptions.ConnectionClosed:
                pass
        return got
    return asyncio.new_event_loop().run_until_complete(session())


def test_attach_over_websocket(ad, pb):
    """The same attach through a WebSocket client (python3-websockets, v5.channel.k8s.io): output
    from then on, stdin to the container, and the v5 close signal detaching the client while the
    container's stdin stays open (no stdin_once)."""
    d = ad
    cid = start(d, "wsecho", ECHO, stdin=True)
    got = ws_attach_line(d, pb, cid, b"over-ws")
    assert b"got:over-ws\n" in got
    assert d.crictl.json("inspect", "-o", "json", cid)["status"]["state"] == "CONTAINER_RUNNING"
    with open(os.path.join(d.logs, "wsecho.log")) as f:
        log = f.read()
    assert "got:over-ws" in log and "stdin-ended" not in log, log


def test_tty_attach_again_after_the_service_restarts(packaged, pb):  # noqa: F811
    """A terminal's stdin is its master, which the fd store keeps once (as the container's output):
    a restarted rktlet makes the stdin end again from it, so typing still reaches the container."""
    d = packaged
    systemctl("start", "rktlet.socket")
    ref, _ = d.test_images["busybox"]
    pull(d, pb, ref)
    pod = make_pod(d, pb, name="ttyattach")
    cfg = ctr_config(pb, "ttyecho", ref, command=["sh", "-c", ECHO], stdin=True, tty=True)
    cid = create(d, pb, pod, cfg)
    try:
        start_ctr(d, pb, cid)
        wait_state(d, pb, cid, pb.CONTAINER_RUNNING)
        assert b"got:before" in ws_attach_line(d, pb, cid, b"before", tty=True)
        old = show("rktlet.service", "MainPID")
        d.close_channels()
        systemctl("restart", "rktlet.service")
        wait_until(lambda: show("rktlet.service", "MainPID") not in ("0", "", old), 30, what="the restart")
        wait_state(d, pb, cid, pb.CONTAINER_RUNNING)
        assert b"got:after" in ws_attach_line(d, pb, cid, b"after", tty=True)
    finally:
        cleanup(d, pb)
