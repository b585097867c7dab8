"""Exec and PortForward over WebSocket (RFC 6455) with kubelet's channel protocols, driven by a client
nobody here wrote: Debian's python3-websockets (asyncio API; 10.x has no sync client).

Binary protocols put the channel in a message's first byte (0 stdin, 1 stdout, 2 stderr, 3 error,
4 resize); the base64 ones send text frames, the channel as a digit, the payload in base64. v4 and
v5 carry a metav1.Status on the error channel, v5 also the close signal [255, channel]."""

import asyncio
import base64
import json
import re
import socket

import pytest
import websockets

from test_crictl import CNI_BIN, Crictl, TIMEOUT, hub, pytestmark, wait_container_state, write_readme_files  # noqa: F401
from test_containers import cleanup, no_container_leftovers  # noqa: F401
from test_pods import cni, no_leftovers  # noqa: F401
from test_stream_server import CREATION_TIMEOUT, exec_url, http, running, sd  # noqa: F401

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def ws(url, query=""):
    assert url.startswith("http://"), url
    return "ws://" + url[len("http://"):] + query


def decode(m):
    """(channel, payload) of a message, binary or base64 text."""
    if isinstance(m, str):
        return int(m[0]), base64.b64decode(m[1:])
    return m[0], m[1:]


def encode(proto, channel, data):
    if proto and "base64" in proto:
        return str(channel) + base64.b64encode(data).decode()
    return bytes([channel]) + data


async def talk(url, subprotocols, script=None, timeout=30):
    """Connects, runs script(conn, proto, msgs) as a task (it may send), collects every message until
    the server closes: (negotiated protocol, messages, close code)."""
    msgs = []
    async with websockets.connect(url, subprotocols=subprotocols, max_size=None, compression=None,
                                  open_timeout=10, close_timeout=5) as conn:
        task = asyncio.ensure_future(script(conn, conn.subprotocol, msgs)) if script else None
        try:
            while True:
                msgs.append(await asyncio.wait_for(conn.recv(), timeout))
        except websockets.exceptions.ConnectionClosed:
            pass
        if task:
            await asyncio.wait_for(task, timeout)
        return conn.subprotocol, msgs, conn.close_code


def run(coro):
    return asyncio.new_event_loop().run_until_complete(coro)


def channels(msgs):
    out = {}
    for m in msgs:
        ch, data = decode(m)
        out[ch] = out.get(ch, b"") + data
    return out


async def wait_for_output(msgs, channel, want, timeout=30):
    end = asyncio.get_event_loop().time() + timeout
    while channels(msgs).get(channel, b"").count(want) == 0:
        assert asyncio.get_event_loop().time() < end, (want, msgs[-5:])
        await asyncio.sleep(0.05)


def refused(url, subprotocols):
    with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
        run(talk(url, subprotocols))
    return e.value.status_code


# --- exec ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("proto", ["v5.channel.k8s.io", "v4.channel.k8s.io"])
def test_exec_stdout_and_success_status(sd, pb, running, proto):
    _, cid = running
    url = exec_url(sd, pb, cid, ["echo", "hello"])
    got, msgs, code = run(talk(ws(url), [proto]))
    assert got == proto
    # kubelet's readiness signal: one empty message on the lowest channel it writes to.
    assert msgs[0] == b"\x01", msgs
    ch = channels(msgs)
    assert ch[1] == b"hello\n"
    assert 2 not in ch or ch[2] == b""
    assert json.loads(ch[3]) == {"metadata": {}, "status": "Success"}
    assert code == 1000


@pytest.mark.parametrize("proto", ["v5.channel.k8s.io", "v4.channel.k8s.io", "v4.base64.channel.k8s.io"])
def test_exec_stderr_and_non_zero_exit(sd, pb, running, proto):
    _, cid = running
    url = exec_url(sd, pb, cid, ["sh", "-c", "echo out; echo oops >&2; exit 3"])
    got, msgs, code = run(talk(ws(url), [proto]))
    assert got == proto
    ch = channels(msgs)
    assert ch[1] == b"out\n" and ch[2] == b"oops\n", ch
    status = json.loads(ch[3])
    assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode", status
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}], status
    assert code == 1000


def test_exec_v1_protocols_report_errors_as_text(sd, pb, running):
    _, cid = running
    # Success is silence on the error channel; stderr only: the readiness message is on channel 2.
    url = exec_url(sd, pb, cid, ["sh", "-c", "echo e >&2"], stdout=False)
    got, msgs, _ = run(talk(ws(url), ["channel.k8s.io"]))
    assert got == "channel.k8s.io"
    assert msgs[0] == b"\x02", msgs
    assert channels(msgs) == {2: b"e\n"}
    url = exec_url(sd, pb, cid, ["sh", "-c", "exit 7"])
    _, msgs, _ = run(talk(ws(url), ["channel.k8s.io"]))
    assert channels(msgs)[3] == b"command terminated with non-zero exit code: exit status 7"
    # No subprotocol at all: kubelet's "" entry, binary channels as channel.k8s.io.
    url = exec_url(sd, pb, cid, ["echo", "bare"])
    got, msgs, _ = run(talk(ws(url), None))
    assert got is None
    assert channels(msgs)[1] == b"bare\n"


def test_exec_base64(sd, pb, running):
    _, cid = running
    url = exec_url(sd, pb, cid, ["sh", "-c", "printf 'a\\001\\377b'; exit 0"])
    got, msgs, code = run(talk(ws(url), ["base64.channel.k8s.io"]))
    assert got == "base64.channel.k8s.io"
    assert all(isinstance(m, str) for m in msgs), msgs
    assert msgs[0] == "1"
    assert channels(msgs) == {1: b"a\x01\xffb"}
    assert code == 1000


def test_exec_stdin_ends_with_the_v5_close_signal(sd, pb, running):
    _, cid = running
    url = exec_url(sd, pb, cid, ["sh", "-c", "cat; echo done-$?"], stdin=True)
    big = bytes(range(256)) * 4096  # 1 MiB in one message

    async def script(conn, proto, msgs):
        await conn.send(b"\x00small\n")
        await wait_for_output(msgs, 1, b"small\n")
        for i in range(200):
            await conn.send(b"\x00" + b"%d," % i)
        await conn.send(b"\x00" + big)
        await wait_for_output(msgs, 1, big[-4096:])
        await conn.send(b"\xff\x00")  # stdin closed: cat ends
    got, msgs, code = run(talk(ws(url), ["v5.channel.k8s.io", "v4.channel.k8s.io"], script))
    assert got == "v5.channel.k8s.io"
    out = channels(msgs)[1]
    assert out == b"small\n" + b"".join(b"%d," % i for i in range(200)) + big + b"done-0\n"
    assert json.loads(channels(msgs)[3])["status"] == "Success"
    assert code == 1000


def test_exec_base64_stdin(sd, pb, running):
    _, cid = running
    url = exec_url(sd, pb, cid, ["head", "-c", "6"], stdin=True)

    async def script(conn, proto, msgs):
        await conn.send(encode(proto, 0, b"abc"))
        await conn.send(encode(proto, 0, b"\x00\xffz"))
    got, msgs, _ = run(talk(ws(url), ["v4.base64.channel.k8s.io"], script))
    assert got == "v4.base64.channel.k8s.io"
    assert channels(msgs)[1] == b"abc\x00\xffz"
    assert json.loads(channels(msgs)[3])["status"] == "Success"


def test_exec_tty_and_resize(sd, pb, running):
    _, cid = running
    url = exec_url(sd, pb, cid, ["sh"], stdin=True, tty=True, stderr=False)

    async def script(conn, proto, msgs):
        # No newline after the JSON, as a browser client sends it.
        await conn.send(b"\x04" + json.dumps({"Width": 101, "Height": 33}).encode())
        await conn.send(b"\x00tty; stty size; echo mark$((6*7))\r")
        await wait_for_output(msgs, 1, b"mark42")
        await conn.send(b"\x04" + json.dumps({"Width": 77, "Height": 22}).encode() + b"\n")
        await conn.send(b"\x00stty size; exit 4\r")
    got, msgs, code = run(talk(ws(url), ["v4.channel.k8s.io"], script))
    out = channels(msgs)[1]
    assert b"/dev/pts/" in out, out
    assert re.search(rb"33 101", out) and re.search(rb"22 77", out), out
    status = json.loads(channels(msgs)[3])
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "4"}], status


def test_exec_large_output(sd, pb, running):
    _, cid = running
    n = 8 * 1024 * 1024
    url = exec_url(sd, pb, cid, ["head", "-c", str(n), "/dev/zero"], stderr=False)
    _, msgs, code = run(talk(ws(url), ["v5.channel.k8s.io"]))
    assert len(channels(msgs)[1]) == n
    assert code == 1000


# --- the handshake ---------------------------------------------------------------------------------

def test_protocol_negotiation_and_tokens(sd, pb, running):
    d = sd
    _, cid = running
    # kubelet takes the client's first offer it knows, whatever the order.
    for offer, want in ((["v4.channel.k8s.io", "v5.channel.k8s.io"], "v4.channel.k8s.io"),
                        (["x.example", "v5.channel.k8s.io", "channel.k8s.io"], "v5.channel.k8s.io"),
                        (["channel.k8s.io", "v4.channel.k8s.io"], "channel.k8s.io")):
        url = exec_url(d, pb, cid, ["true"])
        got, _, code = run(talk(ws(url), offer))
        assert got == want and code == 1000, (offer, got)
    # Nothing in common: 403, and the token is spent.
    url = exec_url(d, pb, cid, ["true"])
    assert refused(ws(url), ["v9.channel.k8s.io", "portforward.k8s.io"]) == 403
    assert refused(ws(url), ["v4.channel.k8s.io"]) == 404
    # A token works once.
    url = exec_url(d, pb, cid, ["true"])
    run(talk(ws(url), ["v4.channel.k8s.io"]))
    assert refused(ws(url), ["v4.channel.k8s.io"]) == 404
    # An exec token under /portforward/: 404.
    url = exec_url(d, pb, cid, ["true"])
    assert refused(ws(url.replace("/exec/", "/portforward/")), ["v4.channel.k8s.io"]) == 404

    # The RFC 6455 example key, by hand.
    url = exec_url(d, pb, cid, ["true"])
    path = url.split("/", 3)[3]
    got = http(url, request=(f"GET /{path} HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n"
                             f"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {RFC_KEY}\r\n"
                             "Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n").encode())
    head = got.split(b"\r\n\r\n", 1)[0].decode().replace("\r\n", "\n")
    assert head.startswith("HTTP/1.1 101"), got
    assert f"Sec-WebSocket-Accept: {RFC_ACCEPT}" in head, head
    assert re.search(r"(?i)^Upgrade: websocket$", head, re.M), head
    assert re.search(r"(?i)^Connection: Upgrade$", head, re.M), head
    assert "Sec-WebSocket-Protocol: v4.channel.k8s.io" in head, head
    # Another version: 400 naming 13; no key: 400; both spend the token.
    url = exec_url(d, pb, cid, ["true"])
    path = url.split("/", 3)[3]
    got = http(url, request=(f"GET /{path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                             f"Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: {RFC_KEY}\r\n\r\n").encode())
    assert got.startswith(b"HTTP/1.1 400") and b"Sec-WebSocket-Version: 13" in got, got
    assert http(url).startswith(b"HTTP/1.1 404")
    url = exec_url(d, pb, cid, ["true"])
    path = url.split("/", 3)[3]
    got = http(url, request=(f"GET /{path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                             "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    assert got.startswith(b"HTTP/1.1 400"), got
    # SPDY still works next to it.
    assert d.crictl("exec", cid, "echo", "still").stdout == "still\n"


def test_idle_connection_is_closed_by_the_stream_creation_timeout_only_before_start(sd, pb, running):
    """A WebSocket has every channel at once: the exec starts at the upgrade, so a client that
    sends nothing still gets its command's output and status."""
    _, cid = running
    url = exec_url(sd, pb, cid, ["sh", "-c", f"sleep {CREATION_TIMEOUT + 1}; echo late"])
    _, msgs, code = run(talk(ws(url), ["v5.channel.k8s.io"]))
    assert channels(msgs)[1] == b"late\n" and code == 1000


# --- port-forward ----------------------------------------------------------------------------------

def start_httpd(d, cid):
    """httpd on 127.0.0.1:8080 of the pod's own network namespace (kept if already there)."""
    d.crictl("exec", cid, "sh", "-c", "mkdir -p /tmp/www && echo hello-from-pod > /tmp/www/index.html && "
             "(httpd -p 127.0.0.1:8080 -h /tmp/www || true)")


def pf_url(d, pb, pod_id, query):
    return ws(d.runtime().PortForward(pb.PortForwardRequest(pod_sandbox_id=pod_id, port=[8080]), timeout=10).url,
              query)


@pytest.mark.parametrize("proto", ["v4.channel.k8s.io", "v4.base64.channel.k8s.io", None])
def test_port_forward(sd, pb, running, proto):
    d = sd
    pod_id, cid = running
    start_httpd(d, cid)
    url = pf_url(d, pb, pod_id, "?port=8080")

    async def script(conn, p, msgs):
        while len(msgs) < 2:
            await asyncio.sleep(0.05)
        await conn.send(encode(p, 0, b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n"))
    got, msgs, code = run(talk(url, [proto] if proto else None, script))
    assert got == proto
    # Each channel's first message: the port, little-endian.
    assert [decode(m) for m in msgs[:2]] == [(0, b"\x90\x1f"), (1, b"\x90\x1f")], msgs[:3]
    data = channels(msgs[2:])
    assert b"200 OK" in data[0] and data[0].endswith(b"hello-from-pod\n"), data
    assert 1 not in data, data
    assert code == 1000


def test_port_forward_several_ports_and_errors(sd, pb, running):
    d = sd
    pod_id, cid = running
    start_httpd(d, cid)
    # 8080 and a port nobody listens on, in both of kubelet's spellings.
    url = pf_url(d, pb, pod_id, "?port=8080,9&port=8080")

    async def script(conn, p, msgs):
        while len(msgs) < 6:
            await asyncio.sleep(0.05)
        await conn.send(b"\x00GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
        await conn.send(b"\x04GET /index.html HTTP/1.0\r\n\r\n")
    got, msgs, code = run(talk(url, ["v4.channel.k8s.io"], script))
    assert [decode(m) for m in msgs[:6]] == [(0, b"\x90\x1f"), (1, b"\x90\x1f"), (2, b"\x09\x00"), (3, b"\x09\x00"),
                                             (4, b"\x90\x1f"), (5, b"\x90\x1f")], msgs[:6]
    data = channels(msgs[6:])
    assert data[0].endswith(b"hello-from-pod\n") and data[4].endswith(b"hello-from-pod\n"), data
    assert data[3].startswith(b"error forwarding port 9 to pod: "), data
    assert 2 not in data and 1 not in data and 5 not in data, data
    # Bad ports and no port: 400, as kubelet's NewV4Options.
    for q in ("", "?port=", "?port=0", "?port=65536", "?port=80,", "?port=x", "?port=-1"):
        assert refused(pf_url(d, pb, pod_id, q), ["v4.channel.k8s.io"]) == 400, q
    # Port-forward knows no v5 and no pre-v4 names.
    assert refused(pf_url(d, pb, pod_id, "?port=80"), ["v5.channel.k8s.io", "channel.k8s.io"]) == 403
    # Nothing is left listening on the host: the connections were made in the pod.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", 8080), timeout=2).close()


# --- back-pressure ---------------------------------------------------------------------------------

def test_back_pressure_both_ways(sd, pb, running):
    d = sd
    _, cid = running
    # A client that does not read for a while: the command's output waits in its pipe. Were it read
    # on regardless, the 64 MiB would overflow the daemon's 32 MiB output cap and be cut short.
    n = 64 * 1024 * 1024
    url = exec_url(d, pb, cid, ["head", "-c", str(n), "/dev/zero"], stderr=False)

    async def not_reading():
        async with websockets.connect(ws(url), subprotocols=["v5.channel.k8s.io"], max_size=None, compression=None,
                                      max_queue=1, open_timeout=10) as conn:
            await asyncio.sleep(3)
            got = 0
            try:
                while True:
                    m = await asyncio.wait_for(conn.recv(), 30)
                    if m[0] == 1:
                        got += len(m) - 1
            except websockets.exceptions.ConnectionClosed:
                pass
            return got
    assert run(not_reading()) == n

    # A command that does not read its stdin for 5 s: the socket is not read meanwhile, so the client
    # gets only as far as the buffers on the way allow; then everything arrives.
    url = exec_url(d, pb, cid, ["sh", "-c", "sleep 5; wc -c"], stdin=True)
    chunk = b"\x00" + b"y" * 65536
    sent = [0]

    async def writer(conn, proto, msgs):
        for _ in range(1024):  # 64 MiB
            await conn.send(chunk)
            sent[0] += 1
        await conn.send(b"\xff\x00")

    async def watch():
        task = asyncio.ensure_future(talk(ws(url), ["v5.channel.k8s.io"], writer, timeout=60))
        await asyncio.sleep(4)
        early = sent[0]
        return early, await task
    early, (_, msgs, code) = run(watch())
    assert early < 512, f"{early} of 1024 chunks went out while the command did not read"
    assert channels(msgs)[1].strip() == str(1024 * 65536).encode()
    assert code == 1000
