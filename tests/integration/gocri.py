"""The Go CRI client (tests/integration/cri-go): its build and a Python handle on it.

cri-go is grpc-go, dialing the way kubelet and crictl do; the tests drive the daemon through it
instead of grpcio. It is built from Debian packages only, in GOPATH mode (GO111MODULE=off):

    golang-1.19-go golang-google-grpc-dev golang-google-protobuf-dev
    golang-github-golang-protobuf-1-5-dev protoc-gen-go protobuf-compiler

The message stubs are generated from proto/api.proto by protoc --go_out at every session (into a
GOPATH under the build directory, at the import path k8s.io/cri-api/pkg/apis/runtime/v1; nothing
generated is committed), then `go build` makes $RKTLET_BUILD_DIR/cri-go/cri-go with its GOCACHE
in $RKTLET_BUILD_DIR/cri-go/cache: compiled once per build directory, seconds after that.

Missing packages skip the tests that need the client, with the reason; under CI (CI=true) they
fail them instead. A client that does not compile always fails.
"""

import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time

import pytest

import rktlet_test

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cri-go")
GO = os.environ.get("RKTLET_GO", "/usr/lib/go-1.19/bin/go")
GOCODE = "/usr/share/gocode"
STUBS_IMPORT_PATH = "k8s.io/cri-api/pkg/apis/runtime/v1"

EXIT_RPC = 3  # cri-go's exit status when a call ended with a gRPC status other than OK

# What the build needs: (what to look for, the Debian package that provides it).
REQUIREMENTS = [
    (GO, "golang-1.19-go"),
    (os.path.join(GOCODE, "src/google.golang.org/grpc/version.go"), "golang-google-grpc-dev"),
    (os.path.join(GOCODE, "src/google.golang.org/protobuf/encoding/protojson"), "golang-google-protobuf-dev"),
    (os.path.join(GOCODE, "src/github.com/golang/protobuf/proto"), "golang-github-golang-protobuf-1-5-dev"),
    ("protoc-gen-go", "protoc-gen-go"),
    ("protoc", "protobuf-compiler"),
]


def in_ci():
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def missing_requirements():
    missing = []
    for what, package in REQUIREMENTS:
        found = os.path.exists(what) if os.path.isabs(what) else shutil.which(what) is not None
        if not found:
            missing.append(f"{what} ({package})")
    return missing


class BuildError(Exception):
    pass


def _run(args, log, **kw):
    t0 = time.monotonic()
    r = subprocess.run(args, capture_output=True, text=True, timeout=900, **kw)
    log.write(f"$ {' '.join(args)}\n{r.stdout}{r.stderr}-> {r.returncode} in {time.monotonic() - t0:.1f}s\n")
    if r.returncode != 0:
        raise BuildError(f"{' '.join(args)} failed with {r.returncode}:\n{r.stdout}{r.stderr}")
    return r


def _replace_if_changed(new, dest):
    """Moves new onto dest unless dest has the same bytes (go's cache keys on content anyway,
    but an untouched file keeps `go build` a no-op)."""
    try:
        with open(new, "rb") as a, open(dest, "rb") as b:
            if a.read() == b.read():
                os.unlink(new)
                return False
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    os.replace(new, dest)
    return True


def build(build_dir=rktlet_test.BUILD_DIR, program="cri-go"):
    """Generates the stubs and builds tests/integration/<program> (cri-go, or exec-go, which also
    imports github.com/docker/spdystream) into <build_dir>/<program>/; returns (binary, seconds).
    The stubs live in <build_dir>/cri-go/gopath for both."""
    out = os.path.join(build_dir, program)
    os.makedirs(out, exist_ok=True)
    gopath = os.path.join(build_dir, "cri-go", "gopath")
    binary = os.path.join(out, program)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO") and k != "CGO_ENABLED"}
    # GOPATH mode on Debian's /usr/share/gocode, nothing from the network, no C compiler
    # (CC may be clang or carry sanitizer flags in the CI builds).
    env.update(GO111MODULE="off", GOPATH=f"{gopath}:{GOCODE}", GOCACHE=os.path.join(out, "cache"),
               GOENV="off", GOPROXY="off", CGO_ENABLED="0")
    t0 = time.monotonic()
    # One build at a time per build directory (two pytest sessions on one build dir).
    os.makedirs(os.path.join(build_dir, "cri-go"), exist_ok=True)
    with open(os.path.join(build_dir, "cri-go", ".lock"), "w") as lock, \
            open(os.path.join(out, "build.log"), "a") as log:
        fcntl.flock(lock, fcntl.LOCK_EX)
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        with tempfile.TemporaryDirectory(dir=out, prefix="stubs.") as tmp:
            _run(["protoc", f"-I{rktlet_test.PROTO_DIR}", f"--go_out={tmp}", "--go_opt=paths=source_relative",
                  f"--go_opt=Mapi.proto={STUBS_IMPORT_PATH}", os.path.join(rktlet_test.PROTO_DIR, "api.proto")], log)
            _replace_if_changed(os.path.join(tmp, "api.pb.go"),
                                os.path.join(gopath, "src", STUBS_IMPORT_PATH, "api.pb.go"))
        _run([GO, "build", "-o", binary + ".new", "."], log, cwd=os.path.join(os.path.dirname(SOURCE), program),
             env=env)
        os.replace(binary + ".new", binary)
        seconds = time.monotonic() - t0
        log.write(f"built {binary} in {seconds:.1f}s\n")
    return binary, seconds


@pytest.fixture(scope="session")
def cri_go():
    """The built client: CriGo(binary). Skips (fails under CI) when the Go packages are missing."""
    missing = missing_requirements()
    if missing:
        why = ("the Go CRI client (tests/integration/cri-go) cannot be built: missing " + ", ".join(missing) +
               "; install them with scripts/deps test")
        if in_ci():
            pytest.fail(why + " (CI=true: a missing Go toolchain is a failure here)", pytrace=False)
        pytest.skip(why)
    try:
        binary, seconds = build()
    except BuildError as e:
        pytest.fail(f"building the Go CRI client failed:\n{e}", pytrace=False)
    return GoCri(binary, build_seconds=seconds)


# --- the client ------------------------------------------------------------------------------------

class CriError(Exception):
    """A call that ended with a gRPC status other than OK."""

    def __init__(self, code, message, method=None):
        super().__init__(f"{method}: {code}: {message}")
        self.code = code
        self.message = message
        self.method = method


class ClientFailure(AssertionError):
    """cri-go itself failed: bad arguments, a crash, no answer."""


class Caller:
    """What a one-shot Client and a Session share: call() is theirs."""

    def error(self, method, request=None, timeout=None):
        """The CriError of a call that must fail."""
        try:
            resp = self.call(method, request, timeout)
        except CriError as e:
            return e
        raise AssertionError(f"{method}({request}) succeeded: {resp}")


class GoCri:
    def __init__(self, binary, build_seconds=None):
        self.binary = binary
        self.build_seconds = build_seconds

    def client(self, socket, dial="path", authority=None, timeout=60):
        return Client(self.binary, socket, dial=dial, authority=authority, timeout=timeout)

    def run(self, *args, timeout=30):
        return subprocess.run([self.binary, *args], capture_output=True, text=True, timeout=timeout)


class Client(Caller):
    """cri-go against one socket, one way of dialing. call() is one process (one connection) per
    call; session() keeps one connection for many calls, as kubelet does."""

    def __init__(self, binary, socket, dial="path", authority=None, timeout=60):
        self.binary = binary
        self.socket = socket
        self.dial = dial
        self.authority = authority
        self.timeout = timeout

    def args(self, timeout=None):
        a = [self.binary, "-socket", self.socket, "-dial", self.dial, "-timeout", f"{timeout or self.timeout}s"]
        if self.authority is not None:
            a += ["-authority", self.authority]
        return a

    def _exec(self, *args, timeout=None):
        cmd = [*self.args(timeout), *args]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=(timeout or self.timeout) + 30)
        except subprocess.TimeoutExpired as e:
            raise ClientFailure(f"{cmd} did not end: {e}")
        return cmd, r

    def call(self, method, request=None, timeout=None):
        """The response (a dict, protojson with proto field names, every field present)."""
        cmd, r = self._exec("call", method, json.dumps(request or {}), timeout=timeout)
        if r.returncode == EXIT_RPC:
            e = json.loads(r.stdout)
            raise CriError(e["code"], e["message"], method)
        if r.returncode != 0:
            raise ClientFailure(f"{cmd} exited with {r.returncode}:\n{r.stdout}{r.stderr}")
        return json.loads(r.stdout)

    def concurrent(self, n, method, request=None, timeout=None):
        """(exit status, summary): N calls at once on one connection."""
        cmd, r = self._exec("concurrent", str(n), method, json.dumps(request or {}), timeout=timeout)
        if r.returncode not in (0, EXIT_RPC):
            raise ClientFailure(f"{cmd} exited with {r.returncode}:\n{r.stdout}{r.stderr}")
        return r.returncode, json.loads(r.stdout)

    def session(self, timeout=None):
        return Session(self.args(timeout), timeout or self.timeout)


class Session(Caller):
    """One cri-go process, one connection: a JSON line per call on its stdin, one back."""

    def __init__(self, args, timeout):
        self.timeout = timeout
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([*args, "session"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, bufsize=1)
        self.lines = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _stderr(self):
        self.stderr.seek(0)
        return self.stderr.read()

    def request(self, line, timeout):
        if self.proc.poll() is not None:
            raise ClientFailure(f"the cri-go session exited with {self.proc.returncode}:\n{self._stderr()}")
        self.proc.stdin.write(json.dumps(line) + "\n")
        self.proc.stdin.flush()
        try:
            answer = self.lines.get(timeout=timeout + 30)
        except queue.Empty:
            raise ClientFailure(f"no answer from the cri-go session to {line} within {timeout + 30}s")
        if answer is None:
            raise ClientFailure(f"the cri-go session ended without answering {line}:\n{self._stderr()}")
        answer = json.loads(answer)
        if "client_error" in answer:
            raise ClientFailure(f"cri-go refused {line}: {answer['client_error']}")
        return answer

    def answer(self, method, request=None, timeout=None):
        """The raw answer: {"response": ...} or {"responses": [...]} or {"code": ..., "message": ...}."""
        timeout = timeout or self.timeout
        return self.request({"method": method, "request": request or {}, "timeout_ms": int(timeout * 1000)}, timeout)

    def call(self, method, request=None, timeout=None):
        a = self.answer(method, request, timeout)
        if "code" in a:
            raise CriError(a["code"], a["message"], method)
        return a["response"] if "response" in a else a["responses"]

    def stats(self):
        """{"connections": transports opened so far, "closed": ..., "target": ...}."""
        return self.request({"method": "_stats"}, 10)

    def close(self):
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.reader.join(5)
        self.stderr.close()
        return rc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
