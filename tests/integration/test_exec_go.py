"""Exec and PortForward against the real daemon with kubelet's own stack: tests/integration/exec-go
is grpc-go for the call and github.com/docker/spdystream for the URL it answers, speaking
v4.channel.k8s.io (streams error, stdin, stdout, stderr, resize, each with its streamType header)
and portforward.k8s.io (a data and an error stream per connection, with port and requestID) as
client-go's remotecommand and portforward do. Built from Debian packages like cri-go (gocri.py)."""

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

import gocri
from rktlet_test import wait_until
from test_containers import (SERVICE, cleanup, ctr_config, ctr_registry, make_pod, no_container_leftovers,  # noqa: F401
                             pytestmark, run, wait_log)
from test_images import pull, registries_config
from test_pods import CNI_BIN, cni, no_leftovers  # noqa: F401

SPDYSTREAM = os.path.join(gocri.GOCODE, "src/github.com/docker/spdystream/connection.go")


@pytest.fixture(scope="session")
def exec_go():
    """The built exec-go: ExecGo(binary). Skips (fails under CI) when the Go packages are missing."""
    missing = gocri.missing_requirements()
    if not os.path.exists(SPDYSTREAM):
        missing.append(f"{SPDYSTREAM} (golang-github-docker-spdystream-dev)")
    if missing:
        why = "exec-go cannot be built: missing " + ", ".join(missing) + "; install them with scripts/deps test"
        if gocri.in_ci():
            pytest.fail(why + " (CI=true)", pytrace=False)
        pytest.skip(why)
    try:
        binary, _ = gocri.build(program="exec-go")
    except gocri.BuildError as e:
        pytest.fail(f"building exec-go failed:\n{e}", pytrace=False)
    return binary


class ExecGo:
    """exec-go against one daemon."""

    def __init__(self, binary, d, ca=None):
        self.binary = binary
        self.d = d
        self.ca = ca

    def argv(self, *args, flags=(), timeout=60):
        return [self.binary, "-socket", self.d.socket, "-timeout", f"{timeout}s",
                *(["-ca", self.ca] if self.ca else []), *flags, *args]

    def run(self, *args, flags=(), input=b"", timeout=60):
        """(CompletedProcess, the -result JSON)."""
        with tempfile.NamedTemporaryFile(suffix=".json") as res:
            p = subprocess.run(self.argv(*args, flags=["-result", res.name, *flags], timeout=timeout), input=input,
                               capture_output=True, timeout=timeout + 40)
            text = open(res.name).read()
        result = json.loads(text) if text else None
        assert p.returncode in (0, 1, 3), (p, result)
        return p, result

    def exec(self, cid, cmd, input=b"", flags=(), timeout=60, **opts):
        req = dict(container_id=cid, cmd=cmd, stdout=True, stderr=not opts.get("tty"))
        req.update(opts)
        return self.run("exec", json.dumps(req), flags=flags, input=input, timeout=timeout)

    def popen(self, cid, cmd, flags=(), timeout=60, **opts):
        """An interactive exec: (Popen with pipes, the result file's path)."""
        req = dict(container_id=cid, cmd=cmd, stdout=True, stderr=not opts.get("tty"))
        req.update(opts)
        fd, res = tempfile.mkstemp(suffix=".json")
        os.close(fd)
        p = subprocess.Popen(self.argv("exec", json.dumps(req), flags=["-result", res, *flags], timeout=timeout),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return p, res

    def attach_popen(self, cid, flags=(), timeout=60, **opts):
        """An attach (client-go's executor on the Attach URL): (Popen with pipes, the result file)."""
        req = dict(container_id=cid, stdout=True, stderr=not opts.get("tty"))
        req.update(opts)
        fd, res = tempfile.mkstemp(suffix=".json")
        os.close(fd)
        p = subprocess.Popen(self.argv("attach", json.dumps(req), flags=["-result", res, *flags], timeout=timeout),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return p, res

    def port_forward(self, pod_id, port, input=b"", timeout=60):
        return self.run("portforward", pod_id, str(port), input=input, timeout=timeout)


def read_result(path):
    with open(path) as f:
        text = f.read()
    os.unlink(path)
    return json.loads(text) if text else None


class Reader:
    """Collects what a pipe says, in a thread, for read_until()."""

    def __init__(self, pipe):
        self.data = b""
        self.cond = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._run, args=(pipe,), daemon=True)
        self.thread.start()

    def _run(self, pipe):
        while True:
            b = pipe.read1(65536)
            with self.cond:
                if not b:
                    self.closed = True
                    self.cond.notify_all()
                    return
                self.data += b
                self.cond.notify_all()

    def until(self, pattern, timeout=20):
        end = time.monotonic() + timeout
        with self.cond:
            while not re.search(pattern, self.data):
                left = end - time.monotonic()
                assert left > 0 and not self.closed, f"no {pattern!r} in {self.data!r}"
                self.cond.wait(left)
            return self.data


def streaming_config(r, **keys):
    config = registries_config([r.url])
    if keys:
        config += "[Streaming]\n" + "".join(f"{k}={v}\n" for k, v in keys.items())
    return config


@pytest.fixture
def make_sd(make_daemon, ctr_registry, cni, pb):  # noqa: F811
    """A factory of daemons as test_containers' cd, with [Streaming] keys: make_sd(**keys)."""
    made = []
    r, images = ctr_registry

    def make(**keys):
        kwargs = dict(config=streaming_config(r, **keys), args=["--cni-conf-dir", cni["conf"], "--cni-bin-dir", CNI_BIN])
        d = make_daemon(f"rktlet{len(made)}", **kwargs)
        d.kwargs = kwargs
        d.busybox = images["busybox"][0]
        pull(d, pb, d.busybox)
        made.append(d)
        return d

    yield make
    for d in made:
        if d.alive():
            cleanup(d, pb)


@pytest.fixture
def sd(make_sd):
    return make_sd()


def service(d, pb, name="svc", host_network=False, command=SERVICE):
    """A ready pod (its own network namespace unless told) with a running busybox: (pod, cid, cfg)."""
    pod = make_pod(d, pb, name=name, host_network=host_network)
    cfg = ctr_config(pb, name, d.busybox, command=command)
    cid = run(d, pb, pod, cfg)
    wait_log(pod, cfg, "ready")
    return pod, cid, cfg


# SERVICE with an echo server on port 9000 (busybox nc: -ll keeps listening, -e cat per connection).
ECHO_SERVICE = ["sh", "-c", "trap 'exit 0' TERM; nc -ll -p 9000 -e cat & echo ready; sleep 1000 & wait"]


@pytest.fixture
def svc(sd, pb):
    return service(sd, pb)


def exec_sync(d, pb, cid, cmd):
    return d.runtime().ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=cmd), timeout=30)


# --- exec ------------------------------------------------------------------------------------------

def test_exec_stdout_and_stderr_apart(sd, pb, svc, exec_go):
    _, cid, _ = svc
    g = ExecGo(exec_go, sd)
    p, res = g.exec(cid, ["sh", "-c", "echo out; echo err >&2; echo out2"])
    assert p.returncode == 0, (p, res)
    assert (p.stdout, p.stderr) == (b"out\nout2\n", b"err\n"), p
    assert res["protocol"] == "v4.channel.k8s.io", res
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/exec/[A-Za-z0-9_-]{43}", res["url"]), res
    assert json.loads(res["status"]) == {"metadata": {}, "status": "Success"}, res
    assert res["exit_code"] == 0 and "error" not in res, res
    # Only stdout asked for: stderr goes nowhere.
    p, res = g.exec(cid, ["sh", "-c", "echo out; echo err >&2"], stderr=False)
    assert (p.stdout, p.stderr, res["exit_code"]) == (b"out\n", b"", 0), (p, res)
    # 20 MB of output, all of it.
    p, res = g.exec(cid, ["head", "-c", "20000000", "/dev/zero"])
    assert res["exit_code"] == 0 and len(p.stdout) == 20000000 and set(p.stdout) == {0}, (res, len(p.stdout), sd.log()[-3000:])


def test_exit_code_on_the_v4_error_stream(sd, pb, svc, exec_go):
    _, cid, _ = svc
    g = ExecGo(exec_go, sd)
    p, res = g.exec(cid, ["sh", "-c", "echo before; exit 7"])
    assert p.returncode == 0 and p.stdout == b"before\n", (p, res)
    st = json.loads(res["status"])
    # kubelet's writeStatus for an exec.CodeExitError, as client-go's errorDecoderV4 reads it.
    assert st["status"] == "Failure" and st["reason"] == "NonZeroExitCode", st
    assert st["message"] == "command terminated with non-zero exit code: exit status 7", st
    assert st["details"]["causes"] == [{"reason": "ExitCode", "message": "7"}], st
    assert res["exit_code"] == 7
    # Killed by a signal: 128 + the signal.
    _, res = g.exec(cid, ["sh", "-c", "kill -9 $$"])
    assert res["exit_code"] == 128 + signal.SIGKILL, res
    # A command that cannot run: an InternalError Status, not an exit code.
    _, res = g.exec(cid, ["/no/such/binary"])
    st = json.loads(res["status"])
    assert st["status"] == "Failure" and st["reason"] == "InternalError" and st["code"] == 500, st
    assert "/no/such/binary" in st["message"] and res["exit_code"] == -1, res


def test_stdin_through_cat_and_half_close_ends_it(sd, pb, svc, exec_go):
    _, cid, _ = svc
    g = ExecGo(exec_go, sd)
    p, res = g.exec(cid, ["sh", "-c", "cat; echo done"], input=b"line one\nline two\n", stdin=True)
    assert (p.stdout, res["exit_code"]) == (b"line one\nline two\ndone\n", 0), (p, res)
    # 8 MiB both ways (back-pressure on both pipes), byte for byte.
    data = os.urandom(8 * 1024 * 1024)
    p, res = g.exec(cid, ["cat"], input=data, stdin=True, stderr=False)
    assert res["exit_code"] == 0 and p.stdout == data, (len(p.stdout), res)
    # Interactive: a line in, a line out, then the half-close.
    proc, path = g.popen(cid, ["cat"], stdin=True)
    out = Reader(proc.stdout)
    for i in range(3):
        proc.stdin.write(f"ping {i}\n".encode())
        proc.stdin.flush()
        out.until(rf"ping {i}\n".encode())
    proc.stdin.close()
    assert proc.wait(30) == 0
    assert read_result(path)["exit_code"] == 0


def test_attach(sd, pb, exec_go):
    """Attach through spdystream as client-go does it: what the container writes from then on,
    stdin to it, and the container's exit ending the session with a v4 Success (the exit code is
    in its status, as containerd and CRI-O report it)."""
    pod = make_pod(sd, pb, name="att")
    cfg = ctr_config(pb, "att", sd.busybox, stdin=True,
                     command=["sh", "-c", "echo ready; while read l; do [ \"$l\" = quit ] && exit 3; echo got:$l; done"])
    cid = run(sd, pb, pod, cfg)
    wait_log(pod, cfg, "ready")
    g = ExecGo(exec_go, sd)
    proc, path = g.attach_popen(cid, stdin=True)
    out = Reader(proc.stdout)
    deadline = time.monotonic() + 30
    while b"got:one" not in out.data:  # what is sent before the streams are up may be dropped
        assert time.monotonic() < deadline, out.data
        proc.stdin.write(b"one\n")
        proc.stdin.flush()
        time.sleep(0.2)
    assert b"ready" not in out.data  # only what comes after the attach
    proc.stdin.write(b"quit\n")
    proc.stdin.flush()
    assert proc.wait(30) == 0, proc.stderr.read()
    res = read_result(path)
    assert json.loads(res["status"]) == {"metadata": {}, "status": "Success"}, res
    assert res["protocol"] == "v4.channel.k8s.io" and "/attach/" in res["url"], res
    wait_until(lambda: sd.runtime().ContainerStatus(pb.ContainerStatusRequest(container_id=cid), timeout=10)
               .status.exit_code == 3, 20, what="the container's exit code 3")


def test_tty_and_resize(sd, pb, svc, exec_go):
    _, cid, _ = svc
    g = ExecGo(exec_go, sd)
    # No stdin: the command's terminal (stderr too), output with the terminal's CR LF.
    p, res = g.exec(cid, ["sh", "-c", "tty >&2; echo x"], tty=True, flags=["-sizes", "33x101"])
    assert res["exit_code"] == 0, (p, res)
    assert re.match(rb"/dev/pts/\d+\r\nx\r\n$", p.stdout), p.stdout
    # Interactive: a shell, resized while it runs; its exit code comes back.
    proc, path = g.popen(cid, ["sh"], stdin=True, tty=True, flags=["-sizes", "33x101,40x120"])
    out = Reader(proc.stdout)
    proc.stdin.write(b"stty size; echo mark$((6*7))\n")
    proc.stdin.flush()
    out.until(rb"33 101\r\nmark42")
    proc.send_signal(signal.SIGUSR1)  # the next size on the resize stream

    def resized():
        proc.stdin.write(b"stty size\n")
        proc.stdin.flush()
        time.sleep(0.2)
        return b"40 120" in out.data
    wait_until(resized, 20, what="the new size inside")
    proc.stdin.write(b"exit 3\n")
    proc.stdin.flush()
    assert proc.wait(30) == 0
    res = read_result(path)
    assert res["exit_code"] == 3 and json.loads(res["status"])["reason"] == "NonZeroExitCode", res


# --- port-forward ----------------------------------------------------------------------------------

def test_port_forward_into_the_pods_network(sd, pb, exec_go):
    # An echo server in the pod's own network namespace.
    pod, cid, _ = service(sd, pb, name="echo", command=ECHO_SERVICE)
    g = ExecGo(exec_go, sd)
    wait_until(lambda: b":2328 " in exec_sync(sd, pb, cid, ["cat", "/proc/net/tcp", "/proc/net/tcp6"]).stdout, 10,
               what="nc to listen in the pod")
    data = os.urandom(3 * 1024 * 1024)
    p, res = g.port_forward(pod.id, 9000, input=data)
    assert p.returncode == 0 and res["sent"] == len(data) and p.stdout == data, (len(p.stdout), res)
    # Again: each connection its own pair of streams.
    p, res = g.port_forward(pod.id, 9000, input=b"hello")
    assert (p.returncode, p.stdout) == (0, b"hello"), (p, res)
    # Nothing listens on a port: the error stream says so, as kubelet's would.
    p, res = g.port_forward(pod.id, 9001, input=b"x")
    assert p.returncode == 1 and "9001" in res["error"] and "refused" in res["error"], res
    # ...and the host's 127.0.0.1:9000 is not the pod's.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", 9000), timeout=2).close()


def test_port_forward_of_a_host_network_pod(sd, pb, exec_go):
    """A host-network pod's port-forward reaches the node's 127.0.0.1: here the harness's own
    network namespace, where this test listens."""
    g = ExecGo(exec_go, sd)
    pod = make_pod(sd, pb, name="hostnet", host_network=True)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]
    got = []

    def serve():
        c, _ = srv.accept()
        buf = b""
        while True:
            b = c.recv(65536)
            if not b:
                break
            buf += b
        got.append(buf)
        c.sendall(b"from the node: " + buf[:10])
        c.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        p, res = g.port_forward(pod.id, port, input=b"0123456789" * 1000)
        t.join(10)
        assert got == [b"0123456789" * 1000], got
        assert (p.returncode, p.stdout) == (0, b"from the node: 0123456789"), (p, res)
    finally:
        srv.close()


# --- TLS -------------------------------------------------------------------------------------------

def make_cert(directory):
    """A CA and a certificate for 127.0.0.1 signed by it (openssl): (ca, cert, key) paths."""
    d = str(directory)
    ca, ca_key = os.path.join(d, "ca.pem"), os.path.join(d, "ca.key")
    cert, key, csr = os.path.join(d, "cert.pem"), os.path.join(d, "cert.key"), os.path.join(d, "cert.csr")
    ext = os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")

    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
            "-subj", "/CN=rktlet test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2",
            "-extfile", ext)
    return ca, cert, key


def test_tls(make_sd, pb, exec_go, tmp_path):
    """[Streaming] TLSCertificate= and TLSKey=: https:// URLs, and the upgrade works over TLS."""
    ca, cert, key = make_cert(tmp_path)
    d = make_sd(TLSCertificate=cert, TLSKey=key)
    _, cid, _ = service(d, pb)
    pod, _, _ = service(d, pb, name="echo", command=ECHO_SERVICE)
    g = ExecGo(exec_go, d, ca=ca)
    p, res = g.exec(cid, ["sh", "-c", "echo out; echo err >&2; exit 4"])
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+/exec/[A-Za-z0-9_-]{43}", res["url"]), res
    assert (p.stdout, p.stderr, res["exit_code"]) == (b"out\n", b"err\n", 4), (p, res)
    # Both ways, more than the SPDY frames and MHD's forwarding buffers, and with a tty. (Slowly:
    # MHD's own forwarding between the TLS session and the upgraded socket moves ~100-200 KB/s here.)
    data = os.urandom(512 * 1024)
    t0 = time.monotonic()
    p, res = g.exec(cid, ["cat"], input=data, stdin=True, stderr=False)
    assert res["exit_code"] == 0 and p.stdout == data, (len(p.stdout), res)
    print(f"cat of 512 KiB over TLS: {time.monotonic() - t0:.2f} s")
    # (The size comes on its own stream, after the command may have started: it waits for it.)
    wait_size = ("for i in $(seq 100); do s=$(stty size 2>/dev/null) && [ \"$s\" != '0 0' ] && break; sleep 0.1; "
                 "done; echo $s")
    p, res = g.exec(cid, ["sh", "-c", wait_size], input=b"", stdin=True, tty=True, flags=["-sizes", "21x77"])
    assert b"21 77" in p.stdout and res["exit_code"] == 0, (p, res)
    t0 = time.monotonic()
    p, res = g.port_forward(pod.id, 9000, input=data)
    assert p.returncode == 0 and p.stdout == data, (len(p.stdout), res)
    # A client that does not trust the CA is refused by its own TLS check; plain HTTP gets nothing.
    print(f"port-forward 512 KiB over TLS: {time.monotonic() - t0:.2f} s")
    os.makedirs(tmp_path / "other")
    wrong_ca, _, _ = make_cert(tmp_path / "other")
    p, res = ExecGo(exec_go, d, ca=wrong_ca).exec(cid, ["true"])
    assert p.returncode == 1 and "certificate" in res["error"], res
    url = d.runtime().Exec(pb.ExecRequest(container_id=cid, cmd=["true"], stdout=True), timeout=10).url
    host, port = re.match(r"https://([^:]+):(\d+)/", url).groups()
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(b"GET /" + url.split("/", 3)[3].encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    try:
        while (b := s.recv(4096)):
            got += b
    except OSError:
        pass
    s.close()
    assert not got.startswith(b"HTTP/1.1 101"), got
    assert g.exec(cid, ["echo", "still"])[0].stdout == b"still\n"
