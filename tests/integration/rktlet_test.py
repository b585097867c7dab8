"""Helpers shared by the integration tests: CRI stubs, a running rktlet, a raw HTTP/2 client.

Only meant to run inside tests/integration/run-harness, which provides private namespaces, a D-Bus
session bus, systemd-journald and a systemd user manager.
"""

import importlib
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

import grpc
import h2.config
import h2.connection
import h2.events

SOURCE_DIR = os.environ.get("RKTLET_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD_DIR = os.environ.get("RKTLET_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
RKTLET = os.path.join(BUILD_DIR, "src", "rktlet")
PROTO_DIR = os.path.join(SOURCE_DIR, "proto")

_stubs = None


def project_version():
    """The project's version, as meson.build declares it (what --version and runtime_version say)."""
    import re
    with open(os.path.join(SOURCE_DIR, "meson.build")) as f:
        return re.search(r"^  version : '([^']+)',$", f.read(), re.M).group(1)

# Under CI (CI=true) and scripts/test (RKTLET_NO_SKIP=1), scripts/deps has installed everything the
# suite needs, so a skip means a broken install and conftest.py turns it into a failure. Only what
# this machine itself cannot do (a kernel feature, a filesystem, a client outside Debian) may skip,
# through machine_skip(), whose reason starts with MACHINE.
STRICT = os.environ.get("CI") == "true" or os.environ.get("RKTLET_NO_SKIP") == "1"
MACHINE = "this machine cannot: "


def machine_skip(reason):
    import pytest
    pytest.skip(MACHINE + reason)


def stubs():
    """(api_pb2, api_pb2_grpc) compiled now from proto/api.proto with grpc_tools.protoc."""
    global _stubs
    if _stubs is None:
        from grpc_tools import protoc
        import grpc_tools

        out = tempfile.mkdtemp(prefix="cri-stubs-")
        include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        rc = protoc.main(["protoc", f"-I{PROTO_DIR}", f"-I{include}", f"--python_out={out}",
                          f"--grpc_python_out={out}", os.path.join(PROTO_DIR, "api.proto")])
        if rc != 0:
            raise RuntimeError(f"grpc_tools.protoc failed on {PROTO_DIR}/api.proto: {rc}")
        sys.path.insert(0, out)
        _stubs = (importlib.import_module("api_pb2"), importlib.import_module("api_pb2_grpc"))
    return _stubs


def wait_until(predicate, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def can_connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def journal(*matches):
    """Journal entries (dicts) of the harness's journald matching FIELD=value matches."""
    import json
    out = subprocess.run(["journalctl", "--no-pager", "-o", "json", *matches],
                         check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def wait_journal(*matches, timeout=10.0):
    return wait_until(lambda: journal(*matches), timeout, interval=0.1, what=f"journal entries {matches}")


class Daemon:
    """One rktlet process on the user bus, with its own socket, directories and config file."""

    def __init__(self, directory, args=(), env=None, config=None, log_level="debug", wrapper=(), listen=True):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.socket = os.path.join(self.dir, "rktlet.sock")
        self.config = os.path.join(self.dir, "rktlet.conf")
        if config is not None:
            with open(self.config, "w") as f:
                f.write(config)
        self._isolate_registries(config or "")
        self.logfile = os.path.join(self.dir, "rktlet.log")
        # RKTLET_WRAPPER="gdb -batch -ex run -ex bt --args" runs every daemon under a debugger.
        wrapper = [*os.environ.get("RKTLET_WRAPPER", "").split(), *wrapper]
        self.args = [*wrapper, RKTLET, "--config", self.config, "--user",
                     *(["--listen", self.socket] if listen else []),
                     "--state-dir", os.path.join(self.dir, "run"),
                     "--root", os.path.join(self.dir, "lib"),
                     "--log-level", log_level, *args]
        self.env = dict(os.environ if env is None else env)
        self.proc = None
        self.stopped = False  # stopped or killed on purpose by the test
        self._channels = []

    def _isolate_registries(self, config):
        """The host's /etc/rktlet/certs.d and auth.json (the defaults of CertsDir= and AuthFile=) are
        no business of a test: turned off in a drop-in, which config_load() reads after the file.
        A drop-in rather than lines at the top of the file, so that the line numbers of the test's
        own text stay as written (tests compare them); so a key the test's text sets is left out
        of it, since the drop-in would win over the file."""
        keys = [k for k in ("CertsDir", "AuthFile") if k + "=" not in config]
        if not keys:
            return
        dropins = self.config + ".d"
        os.makedirs(dropins, exist_ok=True)
        with open(os.path.join(dropins, "00-test-isolation.conf"), "w") as f:
            f.write("[Registries]\n" + "".join(k + "=\n" for k in keys))

    def start(self, wait=True):
        with open(self.logfile, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=self.env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=10.0):
        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"rktlet exited with {self.proc.returncode} during start-up:\n{self.log()}")
            return can_connect(self.socket)
        wait_until(ready, timeout, what=f"rktlet to listen on {self.socket}")

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def channel(self, **options):
        # A subchannel pool of its own: grpcio would otherwise share the connection state of an
        # earlier daemon on the same socket path (killed by the test) and answer from its backoff
        # with "Connection refused" although this daemon listens.
        opts = list({"grpc.enable_retries": 0, "grpc.use_local_subchannel_pool": 1, **options}.items())
        ch = grpc.insecure_channel("unix://" + self.socket, options=opts)
        self._channels.append(ch)
        return ch

    def runtime(self, channel=None):
        return stubs()[1].RuntimeServiceStub(channel or self.channel())

    def images(self, channel=None):
        return stubs()[1].ImageServiceStub(channel or self.channel())

    def close_channels(self):
        for ch in self._channels:
            ch.close()
        self._channels = []

    def send_signal(self, signum):
        self.proc.send_signal(signum)

    def wait(self, timeout=15.0):
        self.stopped = True
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"rktlet did not exit within {timeout}s:\n{self.log()}")

    def stop(self, signum=signal.SIGTERM, timeout=15.0):
        """Stops the daemon and returns its exit status."""
        self.close_channels()
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        return self.wait(timeout)

    def kill(self):
        self.stopped = True
        self.close_channels()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# --- raw gRPC over HTTP/2, for what grpcio refuses to send -----------------------------------------

def grpc_frame(message, compressed=False):
    return struct.pack(">BI", 1 if compressed else 0, len(message)) + message


def grpc_unframe(data):
    messages = []
    while data:
        assert len(data) >= 5, f"truncated gRPC frame: {data!r}"
        flag, length = struct.unpack(">BI", data[:5])
        assert flag == 0, "compressed response"
        messages.append(data[5:5 + length])
        data = data[5 + length:]
    return messages


class Response:
    def __init__(self):
        self.headers = {}
        self.data = b""
        self.trailers = {}
        self.reset = None
        self.ended = False

    @property
    def grpc_status(self):
        status = self.trailers.get("grpc-status", self.headers.get("grpc-status"))
        return None if status is None else int(status)

    @property
    def grpc_message(self):
        from urllib.parse import unquote
        message = self.trailers.get("grpc-message", self.headers.get("grpc-message", ""))
        return unquote(message)


class RawH2:
    """A minimal HTTP/2 client (python3-h2) on the daemon's unix socket."""

    def __init__(self, path, timeout=10.0, authority="localhost", validate=True):
        """authority: the :authority every request sends (None: none at all). validate=False lets
        requests break HTTP/2's header rules, to see what the server answers."""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.authority = authority
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8",
            validate_outbound_headers=validate, normalize_outbound_headers=validate))
        self.conn.initiate_connection()
        self.flush()
        self.responses = {}
        self.closed = False

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path, body=b"", headers=(), end=True):
        hdrs = [(":method", "POST"), (":scheme", "http"), (":path", path),
                *([] if self.authority is None else [(":authority", self.authority)]),
                ("content-type", "application/grpc"), ("te", "trailers"), *headers]
        return self.send(hdrs, body, end)

    def send(self, hdrs, body=b"", end=True):
        """A request with exactly these headers, in this order."""
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, hdrs, end_stream=not body and end)
        if body:
            self.conn.send_data(sid, body, end_stream=end)
        self.flush()
        self.responses[sid] = Response()
        return sid

    def pump(self):
        data = self.sock.recv(65536)
        if not data:
            self.closed = True
            return
        for ev in self.conn.receive_data(data):
            r = self.responses.get(getattr(ev, "stream_id", None))
            if isinstance(ev, h2.events.ResponseReceived):
                r.headers = dict(ev.headers)
            elif isinstance(ev, h2.events.TrailersReceived):
                r.trailers = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                r.data += ev.data
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                r.ended = True
            elif isinstance(ev, h2.events.StreamReset):
                if r is not None:
                    r.reset = ev.error_code
                    r.ended = True
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.closed = True
        self.flush()

    def response(self, sid):
        r = self.responses[sid]
        while not r.ended and not self.closed:
            self.pump()
        return r

    def call(self, path, body=b"", headers=()):
        return self.response(self.request(path, body, headers))

    def close(self):
        self.sock.close()


def unit_substitute(text, key, value):
    """Replaces the one `key=...` line of a unit; the packaged unit must have it."""
    new, n = re.subn(rf"^{key}=.*$", f"{key}={value}", text, flags=re.M)
    assert n == 1, f"the packaged unit has {n} {key}= lines"
    return new


def has_cap(n):
    """Whether capability n is in this process's bounding set."""
    with open("/proc/self/status") as f:
        bnd = int(re.search(r"^CapBnd:\s*([0-9a-f]+)$", f.read(), re.M).group(1), 16)
    return bool(bnd >> n & 1)
