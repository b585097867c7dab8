"""src/stream/spdy.c against the SPDY client that kubelet, the apiserver's proxy and crictl use.

client-go's SPDY executor is moby/docker spdystream. tests/integration/spdy-go is that client
(Debian's golang-github-docker-spdystream-dev, built in GOPATH mode like cri-go) and
tests/unit/spdy-echo a server made of src/stream/spdy.c: streams opened with streamType headers,
header blocks both ways on the session's zlib streams, 2 MiB echoed on one stream, 20 streams at
once, a reset, pings both ways and a stream the server opens. Needs no daemon and no systemd."""

import os
import re
import socket
import subprocess

import pytest

from gocri import GO, GOCODE, in_ci
from rktlet_test import BUILD_DIR

ECHO = os.path.join(BUILD_DIR, "tests", "unit", "spdy-echo")
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spdy-go")
SPDYSTREAM = os.path.join(GOCODE, "src/github.com/docker/spdystream/connection.go")


@pytest.fixture(scope="session")
def spdy_go():
    """Builds tests/integration/spdy-go into <build>/spdy-go/; skips (fails under CI) without Go."""
    missing = [f"{what} ({pkg})" for what, pkg in [(GO, "golang-1.19-go"),
                                                  (SPDYSTREAM, "golang-github-docker-spdystream-dev")]
               if not os.path.exists(what)]
    if missing:
        why = f"spdy-go cannot be built: missing {', '.join(missing)}; install them with scripts/deps test"
        if in_ci():
            pytest.fail(why + " (CI=true)", pytrace=False)
        pytest.skip(why)
    out = os.path.join(BUILD_DIR, "spdy-go")
    os.makedirs(out, exist_ok=True)
    binary = os.path.join(out, "spdy-go")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO") and k != "CGO_ENABLED"}
    env.update(GO111MODULE="off", GOPATH=GOCODE, GOCACHE=os.path.join(out, "cache"), GOENV="off",
               GOPROXY="off", CGO_ENABLED="0")
    r = subprocess.run([GO, "build", "-o", binary, "."], cwd=SOURCE, env=env, capture_output=True, text=True,
                       timeout=600)
    if r.returncode != 0:
        pytest.fail(f"building spdy-go failed:\n{r.stdout}{r.stderr}", pytrace=False)
    return binary


def echo_server(path, record=None):
    proc = subprocess.Popen([ECHO, path] + ([record] if record else []), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # "ready" comes after listen(); the server takes one connection only, so no probing connect.
    assert proc.stdout.readline() == "ready\n", proc.stderr.read()
    return proc


def test_spdystream_client(spdy_go, tmp_path):
    path = str(tmp_path / "spdy.sock")
    record = tmp_path / "client.bin"
    server = echo_server(path, str(record))
    try:
        client = subprocess.run([spdy_go, path], capture_output=True, text=True, timeout=90)
        out, err = server.communicate(timeout=30)
    finally:
        server.kill()
        server.wait()
    assert client.returncode == 0, f"spdy-go: {client.stdout}{client.stderr}\nspdy-echo: {server.stdout}"
    assert client.stdout.startswith("ok streams=25 bytes=3407872"), client.stdout
    assert server.returncode == 0, f"spdy-echo failed: {out}{err}"
    stats = dict(re.findall(r"(\S+?)=('[^']*'|\S+)", out))
    # 5 exec streams + 20 at once; the 2 MiB, the 20 x 64 KiB and the 3 small messages (34 bytes
    # each) of stdout, stderr and resize.
    assert stats == {"streams": "25", "bytes": str(2 * 2**20 + 20 * 2**16 + 3 * 34), "pongs": "1",
                     "closed": "26", "resets": "1", "server-stream": "'got: hello from server'",
                     "error": "0"}, out
    # Everything the client sent went through the server's parser (2 MiB + 1.25 MiB of DATA).
    assert record.stat().st_size > 2 * 2**20 + 20 * 2**16


def test_spdystream_client_gone(spdy_go, tmp_path):
    """A client that connects and goes away without a frame: the server ends cleanly."""
    path = str(tmp_path / "spdy.sock")
    server = echo_server(path)
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.close()
    out, err = server.communicate(timeout=30)
    assert server.returncode == 0, out + err
