"""The streaming server (Exec and PortForward) against clients nobody here wrote: crictl (client-go's
SPDY executor and port-forwarder, the code kubectl and kubelet use), and raw sockets for bad input.

The daemon gets [Streaming] StreamCreationTimeoutSec=2, so that a client that never sends is
dropped within seconds instead of kubelet's 30."""

import json
import os
import pty
import re
import select
import socket
import subprocess
import time

import grpc
import pytest

from rktlet_test import wait_until
from test_crictl import CNI_BIN, Crictl, TIMEOUT, hub, pytestmark, wait_container_state, write_readme_files  # noqa: F401
from test_containers import cleanup, no_container_leftovers  # noqa: F401
from test_images import registries_config
from test_pods import cni, no_leftovers  # noqa: F401

CREATION_TIMEOUT = 2


@pytest.fixture
def sd(make_daemon, hub, cni, pb):  # noqa: F811
    """A daemon as test_crictl's, with a short stream-creation timeout; d.crictl is its crictl."""
    r = hub[0]
    config = registries_config([r.url], {"docker.io": [r.url]})
    config += f"[Streaming]\nStreamCreationTimeoutSec={CREATION_TIMEOUT}\n"
    d = make_daemon(config=config, args=["--cni-conf-dir", cni["conf"], "--cni-bin-dir", CNI_BIN])
    d.cni = cni
    d.crictl = Crictl(d, os.path.join(d.dir, "crictl"))
    yield d
    if d.alive():
        cleanup(d, pb)


@pytest.fixture
def running(sd):
    """A ready pod (its own network namespace) with a running busybox container: (pod id, container id)."""
    c = sd.crictl
    write_readme_files(c, os.path.join(sd.dir, "pod-logs"))
    c("pull", "busybox")
    pod_id = c("runp", "pod.json").stdout.strip()
    cid = c("create", pod_id, "ctr.json", "pod.json").stdout.strip()
    c("start", cid)
    wait_container_state(c, cid, "CONTAINER_RUNNING")
    yield pod_id, cid


def exec_url(d, pb, cid, cmd, **kw):
    opts = dict(stdout=True, stderr=True)
    opts.update(kw)
    return d.runtime().Exec(pb.ExecRequest(container_id=cid, cmd=cmd, **opts), timeout=10).url


def http(url, request=None, read_timeout=10):
    """Sends request (default: a SPDY upgrade GET of url's path) and returns everything the server
    says until it closes."""
    m = re.match(r"http://([^/]+):(\d+)(/.*)", url)
    host, port, path = m.group(1), int(m.group(2)), m.group(3)
    if request is None:
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                   f"X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n").encode()
    s = socket.create_connection((host.strip("[]"), port), timeout=read_timeout)
    s.sendall(request)
    out = b""
    while True:
        try:
            b = s.recv(65536)
        except ConnectionResetError:
            break
        if not b:
            break
        out += b
    s.close()
    return out


# --- the CRI calls ---------------------------------------------------------------------------------

def test_exec_answers_a_url_and_judges_the_request(sd, pb, running):
    d = sd
    pod_id, cid = running
    url = exec_url(d, pb, cid, ["true"])
    # 127.0.0.1 by default, a port of the kernel's choosing, a 43-character url-safe token.
    m = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/exec/([A-Za-z0-9_-]{43})", url)
    assert m, url
    assert int(m.group(1)) > 0
    assert exec_url(d, pb, cid, ["true"]) != url  # every call its own token

    def code(**kw):
        with pytest.raises(grpc.RpcError) as e:
            d.runtime().Exec(pb.ExecRequest(**kw), timeout=10)
        return e.value.code()
    assert code(container_id="0" * 64, cmd=["true"], stdout=True) == grpc.StatusCode.NOT_FOUND
    assert code(container_id=cid, cmd=["true"]) == grpc.StatusCode.INVALID_ARGUMENT  # no stream at all
    assert code(container_id=cid, cmd=["true"], tty=True, stdout=True, stderr=True) == grpc.StatusCode.INVALID_ARGUMENT
    assert code(container_id=cid, cmd=[], stdout=True) == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        d.runtime().PortForward(pb.PortForwardRequest(pod_sandbox_id="0" * 64, port=[80]), timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    pf = d.runtime().PortForward(pb.PortForwardRequest(pod_sandbox_id=pod_id, port=[80]), timeout=10).url
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/portforward/[A-Za-z0-9_-]{43}", pf), pf
    d.crictl("stop", cid)
    assert code(container_id=cid, cmd=["true"], stdout=True) == grpc.StatusCode.FAILED_PRECONDITION
    d.crictl("stopp", pod_id)
    with pytest.raises(grpc.RpcError) as e:
        d.runtime().PortForward(pb.PortForwardRequest(pod_sandbox_id=pod_id, port=[80]), timeout=10)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION


# --- exec through crictl ---------------------------------------------------------------------------

def test_crictl_exec_output_stdin_and_exit_code(sd, running):
    c = sd.crictl
    _, cid = running
    r = c("exec", cid, "sh", "-c", "echo out; echo err >&2")
    assert r.stdout == "out\n" and r.stderr == "err\n", r
    # The exit code as crictl v1.26 reports it: client-go decodes the v4 Status on the error stream
    # into an exit error with the code ("command terminated with exit code 7"), crictl fails with it.
    r = c("exec", cid, "sh", "-c", "exit 7", check=False)
    assert r.returncode != 0 and "command terminated with exit code 7" in r.stderr, r
    # stdin, and its end: cat ends when the client closes stdin.
    p = subprocess.run([c_argv0(), "--config", c.config, "exec", "-i", cid, "sh", "-c", "cat; echo done"],
                       input="line one\nline two\n", capture_output=True, text=True, cwd=c.workdir, env=c.env,
                       timeout=TIMEOUT)
    assert p.returncode == 0 and p.stdout == "line one\nline two\ndone\n", p
    # 4 MiB through stdin and back: back-pressure both ways, nothing lost.
    data = os.urandom(2 * 1024 * 1024).hex().encode()
    p = subprocess.run([c_argv0(), "--config", c.config, "exec", "-i", cid, "sh", "-c", "cat | md5sum"],
                       input=data, capture_output=True, cwd=c.workdir, env=c.env, timeout=TIMEOUT)
    import hashlib
    assert p.returncode == 0 and p.stdout.split()[0].decode() == hashlib.md5(data).hexdigest(), p
    # Output larger than every buffer.
    r = subprocess.run([c_argv0(), "--config", c.config, "exec", cid, "head", "-c", "20000000", "/dev/zero"],
                       capture_output=True, cwd=c.workdir, env=c.env, timeout=TIMEOUT)
    assert r.returncode == 0 and len(r.stdout) == 20000000 and set(r.stdout) == {0}


def test_crictl_exec_longer_than_the_creation_timeout_and_failures(sd, running):
    c = sd.crictl
    _, cid = running
    # A session outlives the stream-creation timeout (2 s here): only the idle timeout ends one.
    r = c("exec", cid, "sh", "-c", f"sleep {CREATION_TIMEOUT + 2}; echo late")
    assert r.stdout == "late\n", r
    # A command the image lacks: the runtime's error, as a Status on the error stream.
    r = c("exec", cid, "/no/such/binary", check=False)
    assert r.returncode != 0 and "/no/such/binary" in r.stderr and "exec failed" in r.stderr, r
    assert c("exec", cid, "echo", "still").stdout == "still\n"


def c_argv0():
    from test_crictl import CRICTL
    return CRICTL


def test_crictl_exec_tty(sd, running):
    c = sd.crictl
    _, cid = running
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(c.workdir)
        os.execve(c_argv0(), [c_argv0(), "--config", c.config, "exec", "-it", cid, "sh"], c.env)
    out = b""

    def read_until(pattern, timeout=20):
        nonlocal out
        end = time.monotonic() + timeout
        while not re.search(pattern, out):
            left = end - time.monotonic()
            assert left > 0, f"no {pattern!r} in {out!r}"
            r, _, _ = select.select([fd], [], [], left)
            if r:
                try:
                    out += os.read(fd, 65536)
                except OSError:
                    break
        return out
    import fcntl
    import struct
    import termios
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    os.write(fd, b"tty; stty size; echo mark$((6*7))\r")
    read_until(rb"mark42")
    assert b"/dev/pts/" in out, out
    assert re.search(rb"33 101", out), out  # the resize stream's size, on the command's terminal
    os.write(fd, b"exit 5\r")
    read_until(rb"exit code 5")  # crictl v1.26 fails with the code of the v4 Status, as without a tty
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) != 0, status


# --- port-forward ----------------------------------------------------------------------------------

def test_crictl_port_forward(sd, running):
    c = sd.crictl
    pod_id, cid = running
    # httpd in the pod's own network namespace, on its loopback only.
    c("exec", cid, "sh", "-c", "mkdir -p /tmp/www && echo hello-from-pod > /tmp/www/index.html && "
      "httpd -p 127.0.0.1:8080 -h /tmp/www")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
    p = subprocess.Popen([c_argv0(), "--config", c.config, "port-forward", pod_id, f"{local}:8080"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=c.workdir, env=c.env)
    try:
        wait_until(lambda: p.poll() is not None or can_connect_tcp(local), 20, what="crictl port-forward to listen")
        assert p.poll() is None, p.stderr.read()
        for _ in range(3):
            got = http(f"http://127.0.0.1:{local}/index.html",
                       request=b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
            assert b"200 OK" in got and got.endswith(b"hello-from-pod\n"), got
        # Nothing listens on the host's 127.0.0.1:8080: the connection was made in the pod.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", 8080), timeout=2).close()
    finally:
        p.terminate()
        p.wait(10)


def can_connect_tcp(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


# --- bad input -------------------------------------------------------------------------------------

def test_tokens_are_single_use_and_paths_checked(sd, pb, running):
    d = sd
    _, cid = running
    url = exec_url(d, pb, cid, ["true"])
    base = url.rsplit("/", 2)[0]
    # An unknown token, an unknown path, a token under the wrong path: 404, connection closed.
    for bad in (base + "/exec/" + "A" * 43, base + "/nothing/here", url.replace("/exec/", "/portforward/"),
                base + "/"):
        got = http(bad)
        assert got.startswith(b"HTTP/1.1 404"), (bad, got)
    # The token works once.
    first = http(url, read_timeout=CREATION_TIMEOUT + 10)
    assert first.startswith(b"HTTP/1.1 101"), first
    assert b"X-Stream-Protocol-Version: v4.channel.k8s.io" in first, first
    assert http(url).startswith(b"HTTP/1.1 404")
    # The best protocol the client offers.
    url = exec_url(d, pb, cid, ["true"])
    m = re.match(r"http://([^/]+):(\d+)(/.*)", url)
    got = http(url, request=(f"POST {m.group(3)} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                             f"X-Stream-Protocol-Version: channel.k8s.io\r\n"
                             f"X-Stream-Protocol-Version: v3.channel.k8s.io\r\n\r\n").encode(),
               read_timeout=CREATION_TIMEOUT + 10)
    assert got.startswith(b"HTTP/1.1 101") and b"X-Stream-Protocol-Version: v3.channel.k8s.io" in got, got
    # No protocol we know: 403 naming ours.
    url = exec_url(d, pb, cid, ["true"])
    got = http(url, request=(f"GET /{url.split('/', 3)[3]} HTTP/1.1\r\n"
                             "Host: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                             "X-Stream-Protocol-Version: v9.channel.k8s.io\r\n\r\n").encode())
    assert got.startswith(b"HTTP/1.1 403") and b"v4.channel.k8s.io" in got, got
    # Garbage instead of a request: a 400 and the connection closed, and the server goes on.
    got = http(url, request=b"\x16\x03\x01\x02\x00garbage garbage\r\n\r\n")
    assert got == b"" or got.startswith(b"HTTP/1.1 400"), got
    assert d.crictl("exec", cid, "echo", "still").stdout == "still\n"


def test_a_client_that_never_sends_is_dropped(sd, pb, running):
    d = sd
    _, cid = running
    url = exec_url(d, pb, cid, ["true"])
    m = re.match(r"http://([^/]+):(\d+)(/.*)", url)
    # Connected, nothing sent: closed by the timeout.
    s = socket.create_connection((m.group(1), int(m.group(2))), timeout=CREATION_TIMEOUT + 15)
    began = time.monotonic()
    assert s.recv(100) == b""
    assert time.monotonic() - began < CREATION_TIMEOUT + 10
    s.close()
    # Upgraded, no stream opened: closed by the stream-creation timeout.
    began = time.monotonic()
    got = http(url, read_timeout=CREATION_TIMEOUT + 15)
    assert got.startswith(b"HTTP/1.1 101"), got
    assert CREATION_TIMEOUT - 0.5 <= time.monotonic() - began < CREATION_TIMEOUT + 10
    assert d.crictl("exec", cid, "echo", "still").stdout == "still\n"


def test_tokens_expire_after_a_minute(sd, pb, running):
    d = sd
    _, cid = running
    url = exec_url(d, pb, cid, ["true"])
    time.sleep(61)
    assert http(url).startswith(b"HTTP/1.1 404")
