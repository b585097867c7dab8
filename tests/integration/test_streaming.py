"""Server streaming and flow control of src/grpc/, through tests/grpc-test-server and grpcio.

The framework is driven here through a server built from the same src/grpc/ with test-only
methods; the CRI's streaming methods (GetContainerEvents, the Stream* lists) are test_events.py's."""

import os
import signal
import struct
import subprocess
import threading
import time

import grpc
import pytest

from rktlet_test import BUILD_DIR, can_connect, wait_until

SERVER = os.path.join(BUILD_DIR, "tests", "grpc-test-server")


class StreamServer:
    def __init__(self, path):
        self.socket = path
        self.proc = subprocess.Popen([SERVER, path], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
        wait_until(lambda: can_connect(path) or self.proc.poll() is not None, what="grpc-test-server")
        assert self.proc.poll() is None, self.proc.stderr.read()
        self.channel = grpc.insecure_channel("unix://" + path, options=[("grpc.max_receive_message_length", 64 << 20)])

    def stream(self, count, size, interval_ms=0, **kw):
        call = self.channel.unary_stream("/rktlet.test.Test/Stream")
        return call(struct.pack(">III", count, size, interval_ms), **kw)

    def hold(self, **kw):
        return self.channel.unary_unary("/rktlet.test.Test/Hold").future(b"", **kw)

    def counters(self):
        out = self.channel.unary_unary("/rktlet.test.Test/Counters")(b"", timeout=5).decode()
        return dict((k, int(v)) for k, v in (kv.split("=") for kv in out.split()))


@pytest.fixture
def server(tmp_path):
    if not os.access(SERVER, os.X_OK):
        pytest.fail(f"{SERVER} was not built")
    s = StreamServer(str(tmp_path / "test.sock"))
    yield s
    s.channel.close()
    if s.proc.poll() is None:
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(10) == 0, s.proc.stderr.read()
    elif not getattr(s, "stopped", False):
        pytest.fail(f"grpc-test-server died with {s.proc.returncode}: {s.proc.stderr.read()}")


def test_many_small_messages(server):
    messages = list(server.stream(1000, 10, timeout=30))
    assert len(messages) == 1000
    assert all(m == bytes([i & 0xff]) * 10 for i, m in enumerate(messages))


def test_large_messages_beyond_every_window(server):
    # 40 × 1 MiB = 40 MiB queued at once: far past the client's stream and connection windows, so the
    # server has to wait for WINDOW_UPDATEs and resume.
    n = 0
    for i, m in enumerate(server.stream(40, 1 << 20, timeout=60)):
        assert len(m) == 1 << 20 and m[0] == i & 0xff and m[-1] == i & 0xff
        n += 1
    assert n == 40


def test_slow_reader_gets_everything(server):
    it = server.stream(8, 4 << 20, timeout=60)
    got = []
    for m in it:
        got.append(len(m))
        time.sleep(0.2)  # the client's window stays closed for a while each time
    assert got == [4 << 20] * 8


def test_a_stream_paced_by_drain_with_a_slow_reader(server):
    # Each 1 MiB message is made once the last was taken whole (past several windows); the server
    # checks that nothing was pending then and exactly one message after each send.
    it = server.stream(12, 1 << 20, 0xffffffff, timeout=60)
    got = []
    for i, m in enumerate(it):
        assert len(m) == 1 << 20 and m[0] == i & 0xff and m[-1] == i & 0xff
        got.append(i)
        if i % 3 == 0:
            time.sleep(0.2)
    assert got == list(range(12))
    assert server.counters()["streaming"] == 0
    # Small messages, many of them: each drain runs from the connection's flush.
    assert [len(m) for m in server.stream(500, 3, 0xffffffff, timeout=30)] == [3] * 500


def test_paced_stream_and_concurrent_unary_calls(server):
    it = server.stream(20, 100, interval_ms=20, timeout=30)
    first = next(it)
    assert first == b"\x00" * 100
    # While the stream is open, other calls on the same connection are answered.
    for _ in range(10):
        assert server.counters()["streaming"] == 1
    rest = list(it)
    assert len(rest) == 19
    assert server.counters()["streaming"] == 0


def test_cancelling_a_stream_stops_the_work(server):
    it = server.stream(1000000, 10, interval_ms=10, timeout=30)
    next(it)
    next(it)
    it.cancel()
    wait_until(lambda: server.counters()["streaming"] == 0, what="the stream's work to stop")
    assert server.counters()["cancelled"] == 1


def test_stream_deadline(server):
    it = server.stream(1000000, 10, interval_ms=10, timeout=0.3)
    with pytest.raises(grpc.RpcError) as e:
        for _ in it:
            pass
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_until(lambda: server.counters()["streaming"] == 0, what="the stream's work to stop")


def test_many_concurrent_streams(server):
    results = [None] * 50

    def run(i):
        results[i] = sum(len(m) for m in server.stream(50, 1000, timeout=60))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [50 * 1000] * 50


def test_graceful_shutdown_finishes_open_streams(server):
    it = server.stream(30, 10, interval_ms=30, timeout=30)
    next(it)
    server.stopped = True
    server.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: not os.path.exists(server.socket), what="the listener to close")
    rest = list(it)  # the stream runs to its end
    assert len(rest) == 29
    assert server.proc.wait(10) == 0


def test_held_calls_are_cancelled_when_their_connection_goes(server, tmp_path):
    ch = grpc.insecure_channel("unix://" + server.socket, options=[("grpc.use_local_subchannel_pool", 1)])
    futures = [ch.unary_unary("/rktlet.test.Test/Hold").future(b"", timeout=30) for _ in range(5)]
    wait_until(lambda: server.counters()["held"] == 5, what="5 held calls")
    ch.close()
    wait_until(lambda: server.counters()["held"] == 0, what="held calls to be cancelled")
    assert server.counters()["cancelled"] == 5
    assert all(f.done() for f in futures)


def test_unary_ok_without_its_message_is_internal(server):
    """A handler that ends a unary call OK with no message: clients would report INTERNAL with
    nothing to go on, so the server refuses to send it and says why."""
    with pytest.raises(grpc.RpcError) as e:
        server.channel.unary_unary("/rktlet.test.Test/NoReply")(b"", timeout=5)
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert "NoReply ended OK with 0 response messages" in e.value.details()
    # A streaming call may end OK with none.
    assert list(server.stream(0, 1, timeout=5)) == []
