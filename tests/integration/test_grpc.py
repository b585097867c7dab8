"""The gRPC/HTTP2 transport: concurrency, limits, hostile input, deadlines, flow control."""

import os
import socket
import threading
import time

import grpc
import h2.settings
import pytest

from rktlet_test import RawH2, grpc_frame, grpc_unframe, journal, stubs, wait_journal, wait_until

VERSION = "/runtime.v1.RuntimeService/Version"
STATUS = "/runtime.v1.RuntimeService/Status"


def socket_fds(pid):
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                n += 1
        except FileNotFoundError:
            pass
    return n


def version_ok(daemon, pb):
    return daemon.runtime().Version(pb.VersionRequest(version="v1"), timeout=5).runtime_name == "rktlet"


def test_200_concurrent_calls_over_20_connections(daemon, pb):
    # Daemon.channel() gives each channel a subchannel pool of its own: 20 connections, not one.
    channels = [daemon.channel() for _ in range(20)]
    stubs_ = [daemon.runtime(ch) for ch in channels]
    for s in stubs_:  # connect every channel first
        s.Version(pb.VersionRequest(), timeout=5)
    assert socket_fds(daemon.pid) >= 21, "expected 20 client connections plus the listener"

    futures = [stubs_[i % 20].Version.future(pb.VersionRequest(version="v1"), timeout=30) for i in range(200)]
    results = [f.result() for f in futures]
    assert len(results) == 200
    assert all(r.runtime_name == "rktlet" and r.runtime_api_version == "v1" for r in results)


def test_oversized_message_is_resource_exhausted_and_daemon_keeps_serving(make_daemon, pb):
    d = make_daemon(args=["--max-message-size", "64K"])
    ch = d.channel()
    with pytest.raises(grpc.RpcError) as e:
        d.runtime(ch).Version(pb.VersionRequest(version="x" * 70000), timeout=10)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "65536" in e.value.details()
    # Same connection and a new one both still work; a message just under the limit passes.
    assert d.runtime(ch).Version(pb.VersionRequest(version="x" * 60000), timeout=5).runtime_name == "rktlet"
    assert version_ok(d, pb)


def test_default_limit_is_16_mib(daemon, pb):
    with pytest.raises(grpc.RpcError) as e:
        daemon.runtime().Version(pb.VersionRequest(version="x" * (16 * 1024 * 1024 + 1)), timeout=30)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # 15 MiB passes: the request body is 15 times the stream window, so this also checks that
    # the daemon hands out WINDOW_UPDATEs as it consumes input.
    r = daemon.runtime().Version(pb.VersionRequest(version="x" * (15 * 1024 * 1024)), timeout=30)
    assert r.runtime_name == "rktlet"


def test_garbage_bytes_close_the_connection_only(daemon, pb):
    for garbage in (os.urandom(4096), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00" * 100000):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(daemon.socket)
        try:
            s.sendall(garbage)
        except (BrokenPipeError, ConnectionResetError):
            pass
        # The daemon answers with at most a GOAWAY and closes.
        received = b""
        try:
            while chunk := s.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        s.close()
        assert len(received) < 200, received
        assert daemon.alive()
    assert version_ok(daemon, pb)


def test_half_sent_preface_does_not_stall_others_and_times_out(daemon, pb):
    stalled = []
    connected = time.monotonic()
    for _ in range(30):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(daemon.socket)
        s.sendall(b"PRI * HTTP/2.0\r\n")  # first half of the 24-byte preface, then nothing
        stalled.append(s)
    # Calls go on being served while the stalled connections stay open.
    for _ in range(20):
        assert version_ok(daemon, pb)

    def still_open(s):
        """Reads what the daemon sent (its SETTINGS) without waiting: open unless it reached EOF."""
        s.setblocking(False)
        try:
            while s.recv(65536):
                pass
            return False
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            s.setblocking(True)
    assert all(still_open(s) for s in stalled)
    # The daemon gives up on the stalled connections after its handshake timeout (10 s): not before,
    # and surely within five times that.
    s = stalled[0]
    s.settimeout(50)
    try:
        data = s.recv(65536)
        while data:
            data = s.recv(65536)
    except ConnectionResetError:
        pass
    assert time.monotonic() - connected >= 10
    for s in stalled:
        s.close()
    assert version_ok(daemon, pb)


def test_compressed_message_without_encoding_is_unimplemented(daemon, pb):
    c = RawH2(daemon.socket)
    body = pb.VersionRequest(version="v1").SerializeToString()
    r = c.call(VERSION, grpc_frame(body, compressed=True))
    assert r.headers[":status"] == "200"
    assert r.grpc_status == grpc.StatusCode.UNIMPLEMENTED.value[0]
    assert "compress" in r.grpc_message.lower()
    # An encoding the daemon does not have is refused the same way, saying what it accepts.
    r = c.call(VERSION, grpc_frame(body, compressed=True), headers=[("grpc-encoding", "snappy")])
    assert r.grpc_status == grpc.StatusCode.UNIMPLEMENTED.value[0]
    assert r.headers["grpc-accept-encoding"] == "identity"
    # The same connection still works for an uncompressed call.
    r = c.call(VERSION, grpc_frame(body))
    assert r.grpc_status == 0
    assert pb.VersionResponse.FromString(grpc_unframe(r.data)[0]).runtime_name == "rktlet"
    c.close()


def test_non_grpc_requests_are_refused(daemon):
    c = RawH2(daemon.socket)
    sid = c.conn.get_next_available_stream_id()
    c.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", VERSION),
                              (":authority", "localhost"), ("content-type", "text/plain")], end_stream=True)
    c.flush()
    from rktlet_test import Response
    c.responses[sid] = Response()
    r = c.response(sid)
    assert r.headers[":status"] == "415"
    c.close()


def test_deadline_on_a_call_waiting_for_systemd(daemon, pb, stopped_systemd):
    # Status asks systemd, which is frozen: only the server-side deadline can end the call.
    # (RawH2 sets no deadline of its own and would wait for its socket's 10 s timeout.)
    c = RawH2(daemon.socket)
    r = c.call(STATUS, grpc_frame(pb.StatusRequest().SerializeToString()), headers=[("grpc-timeout", "1m")])
    assert r.grpc_status == grpc.StatusCode.DEADLINE_EXCEEDED.value[0], (r.headers, r.trailers)
    # grpcio with a 1 ms deadline gets the same answer.
    with pytest.raises(grpc.RpcError) as e:
        daemon.runtime().Status(pb.StatusRequest(), timeout=0.001)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    c.close()


def test_deadline_exceeded_work_is_dropped_when_systemd_answers_late(daemon, pb, user_manager_pid):
    import signal
    stub = daemon.runtime()
    stub.Version(pb.VersionRequest(), timeout=5)  # connected, so every deadline below runs in the daemon
    os.kill(user_manager_pid, signal.SIGSTOP)
    try:
        for _ in range(5):
            with pytest.raises(grpc.RpcError) as e:
                stub.Status(pb.StatusRequest(), timeout=1.0)  # long enough to reach the daemon under ASan
            assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # Each call ended by its deadline (the daemon's timer or the client's RST_STREAM, whichever
        # came first) and took its D-Bus call with it. Waited for while systemd is still frozen: once
        # it answers, a call whose end the daemon has not yet seen (a loaded machine) would be answered.
        ended = (f"_PID={daemon.pid}", "RKTLET_METHOD=" + STATUS,
                 "RKTLET_GRPC_STATUS=DEADLINE_EXCEEDED", "RKTLET_GRPC_STATUS=CANCELLED")
        wait_until(lambda: len(journal(*ended)) == 5, what="5 Status calls ended in the journal")
    finally:
        os.kill(user_manager_pid, signal.SIGCONT)
    # The late replies arrive for calls that no longer exist; the daemon ignores them.
    r = daemon.runtime().Status(pb.StatusRequest(), timeout=10)
    assert {c.type: c.status for c in r.status.conditions}["RuntimeReady"] is True
    assert len(journal(*ended)) == 5
    assert journal(*ended)[0]["CODE_FILE"].endswith("grpc-call.c")
    dropped = (f"_PID={daemon.pid}", "MESSAGE=Status: call ended before systemd answered; cancelling the D-Bus call.")
    wait_until(lambda: len(journal(*dropped)) == 5, what="5 D-Bus calls cancelled")


def test_a_call_waiting_on_systemd_does_not_delay_others(daemon, pb, stopped_systemd, user_manager_pid):
    import signal
    pending = daemon.runtime().Status.future(pb.StatusRequest(), timeout=30)
    wait_journal(f"_PID={daemon.pid}", "RKTLET_CALL_STARTED=" + STATUS)  # it waits on systemd now
    for _ in range(50):
        assert version_ok(daemon, pb)
    assert not pending.done(), "Status returned although systemd is frozen"
    os.kill(user_manager_pid, signal.SIGCONT)
    r = pending.result()
    assert {c.type: c.status for c in r.status.conditions}["RuntimeReady"] is True


def test_client_cancel_and_disconnect_with_call_in_flight(daemon, pb, stopped_systemd):
    started = (f"_PID={daemon.pid}", "RKTLET_CALL_STARTED=" + STATUS)
    cancelled = (f"_PID={daemon.pid}", "RKTLET_METHOD=" + STATUS, "RKTLET_GRPC_STATUS=CANCELLED")
    f = daemon.runtime().Status.future(pb.StatusRequest(), timeout=30)
    wait_journal(*started)
    f.cancel()  # RST_STREAM CANCEL while the daemon waits for systemd
    wait_until(lambda: len(journal(*cancelled)) == 1, what="the cancelled call to end in the daemon")
    c = RawH2(daemon.socket)
    c.request(STATUS, grpc_frame(pb.StatusRequest().SerializeToString()))
    wait_until(lambda: len(journal(*started)) == 2, what="the raw call to reach the daemon")
    c.close()  # connection gone while the call waits
    wait_until(lambda: len(journal(*cancelled)) == 2, what="the call of the closed connection to end")
    dropped = (f"_PID={daemon.pid}", "MESSAGE=Status: call ended before systemd answered; cancelling the D-Bus call.")
    assert len(journal(*dropped)) == 2
    assert version_ok(daemon, pb)


def test_flow_control_towards_a_slow_reader(daemon, pb):
    # A client window of 16 bytes: the daemon must send the response in pieces as the window opens.
    c = RawH2(daemon.socket)
    c.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 16})
    c.flush()
    r = c.call(STATUS, grpc_frame(pb.StatusRequest(verbose=True).SerializeToString()))
    assert r.grpc_status == 0, (r.headers, r.trailers)
    resp = pb.StatusResponse.FromString(grpc_unframe(r.data)[0])
    assert len(r.data) > 100
    assert "config" in resp.info
    c.close()


def test_many_streams_on_one_raw_connection(daemon, pb):
    c = RawH2(daemon.socket)
    body = grpc_frame(pb.VersionRequest(version="v1").SerializeToString())
    sids = [c.request(VERSION, body) for _ in range(100)]
    for sid in sids:
        r = c.response(sid)
        assert r.grpc_status == 0
    c.close()


def raw_version_ok(path):
    try:
        c = RawH2(path)
        ok = c.call(VERSION, grpc_frame(b"")).grpc_status == 0
    except OSError:
        return None
    return c if ok else None


def test_connection_limit(make_daemon, pb):
    d = make_daemon(config="[GRPC]\nMaxConnections=3\n")
    # The start-up probe's connection may still be counted for a moment: retry until served.
    held = [wait_until(lambda: raw_version_ok(d.socket), what="a connection slot") for _ in range(3)]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(d.socket)
    assert s.recv(100) == b"", "a fourth connection was served"
    s.close()
    held.pop().close()
    held.append(wait_until(lambda: raw_version_ok(d.socket), what="the freed slot"))
    for c in held:
        c.close()


# --- what real clients send as :authority on a unix socket -----------------------------------------
# grpc-go with a path target (kubelet, crictl): the socket path; grpc-go with unix://: "localhost";
# gRPC C-core >= 1.57: the percent-encoded path; grpc-java: the raw path; some clients: nothing.

def authority_forms(socket_path):
    from urllib.parse import quote
    return {
        "localhost": "localhost",
        "socket path": socket_path,
        "percent-encoded path": quote(socket_path, safe=""),
        "empty": "",
    }


@pytest.mark.parametrize("form", ["localhost", "socket path", "percent-encoded path", "empty"])
def test_grpcio_with_each_default_authority(daemon, pb, form):
    authority = authority_forms(daemon.socket)[form]
    ch = daemon.channel(**{"grpc.default_authority": authority})
    rt = daemon.runtime(ch)
    assert rt.Version(pb.VersionRequest(version="v1"), timeout=5).runtime_name == "rktlet"
    assert list(rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=5).items) == []
    img = daemon.images(ch)
    assert img.ImageFsInfo(pb.ImageFsInfoRequest(), timeout=5).image_filesystems


@pytest.mark.parametrize("form", ["localhost", "socket path", "percent-encoded path", "empty", "none",
                                  "odd bytes"])
def test_raw_http2_with_each_authority(daemon, pb, form):
    authority = {**authority_forms(daemon.socket), "none": None, "odd bytes": "a/b@c:d%zz[::1]"}[form]
    c = RawH2(daemon.socket, authority=authority, validate=False)
    r = c.call(VERSION, grpc_frame(pb.VersionRequest(version="v1").SerializeToString()))
    assert r.reset is None, f"stream reset with {r.reset}"
    assert r.headers[":status"] == "200" and r.grpc_status == 0, (r.headers, r.trailers)
    assert pb.VersionResponse.FromString(grpc_unframe(r.data)[0]).runtime_name == "rktlet"
    c.close()


def base_headers(**replace):
    hdrs = {":method": "POST", ":scheme": "http", ":path": VERSION, ":authority": "/run/rktlet/rktlet.sock",
            "content-type": "application/grpc", "te": "trailers"}
    hdrs.update(replace)
    return [(k, v) for k, v in hdrs.items() if v is not None]


# (headers, HTTP status, gRPC status) — HTTP/2 (RFC 9113 8.2, 8.3) and the gRPC-over-HTTP/2 spec
# ("Content-Type ... SHOULD respond with HTTP status of 415"; requests are POST with te: trailers).
MALFORMED = {
    "GET": (base_headers(**{":method": "GET"}), "405", grpc.StatusCode.INTERNAL),
    "no :method": (base_headers(**{":method": None}), "400", grpc.StatusCode.INTERNAL),
    "no :path": (base_headers(**{":path": None}), "400", grpc.StatusCode.INTERNAL),
    "no :scheme": (base_headers(**{":scheme": None}), "400", grpc.StatusCode.INTERNAL),
    "empty :path": (base_headers(**{":path": ""}), "400", grpc.StatusCode.INTERNAL),
    "no content-type": (base_headers(**{"content-type": None}), "415", grpc.StatusCode.INVALID_ARGUMENT),
    "text/plain": (base_headers(**{"content-type": "text/plain"}), "415", grpc.StatusCode.INVALID_ARGUMENT),
    "application/grpcx": (base_headers(**{"content-type": "application/grpcx"}), "415",
                          grpc.StatusCode.INVALID_ARGUMENT),
    "no te": (base_headers(te=None), "400", grpc.StatusCode.INTERNAL),
    "te: gzip": (base_headers(te="gzip"), "400", grpc.StatusCode.INTERNAL),
    "two :path": (base_headers() [:3] + [(":path", "/x/Y")] + base_headers()[3:], "400", grpc.StatusCode.INTERNAL),
    "pseudo after regular": ([(k, v) for k, v in base_headers() if k != ":path"] + [(":path", VERSION)], "400",
                             grpc.StatusCode.INTERNAL),
    "unknown pseudo": (base_headers() + [(":protocol", "websocket")], "400", grpc.StatusCode.INTERNAL),
    "upper-case name": (base_headers() + [("X-Big", "1")], "400", grpc.StatusCode.INTERNAL),
    "connection header": (base_headers() + [("connection", "keep-alive")], "400", grpc.StatusCode.INTERNAL),
    "transfer-encoding": (base_headers() + [("transfer-encoding", "chunked")], "400", grpc.StatusCode.INTERNAL),
    "LF in a value": (base_headers() + [("x-note", "a\nb")], "400", grpc.StatusCode.INTERNAL),
}


@pytest.mark.parametrize("case", list(MALFORMED))
@pytest.mark.parametrize("with_body", [False, True], ids=["headers-only", "with-body"])
def test_requests_gRPC_cannot_serve_get_a_status_not_a_reset(daemon, pb, case, with_body):
    hdrs, http_status, code = MALFORMED[case]
    c = RawH2(daemon.socket, validate=False)
    body = grpc_frame(pb.VersionRequest(version="v1").SerializeToString()) if with_body else b""
    sid = c.send(hdrs, body, end=True)
    r = c.response(sid)
    assert r.headers.get(":status") == http_status, (r.headers, r.reset)
    assert r.grpc_status == code.value[0], r.headers
    assert r.grpc_message, r.headers
    assert r.reset in (None, 0), f"reset with {r.reset} after the answer"
    # The connection goes on serving.
    ok = c.call(VERSION, grpc_frame(pb.VersionRequest(version="v1").SerializeToString()))
    assert ok.grpc_status == 0, ok.headers
    c.close()


def test_a_huge_input_echoed_in_the_message_keeps_the_real_status(daemon, pb):
    """A 10 KB id quoted back whole made a grpc-message past the 8 KB of headers clients take, and
    the client reported RESOURCE_EXHAUSTED instead of the real error. The id is quoted cut, marked,
    with its length."""
    with pytest.raises(grpc.RpcError) as e:
        daemon.runtime().PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id="f" * 10000), timeout=5)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND, e.value.details()
    details = e.value.details()
    assert "…' (10000 bytes)" in details and len(details.encode()) < 600, details
    assert "ffffffff" in details
