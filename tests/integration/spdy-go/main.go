// spdy-go: the client side of moby/docker spdystream (the SPDY stack of client-go, so of kubelet,
// the apiserver's proxy, kubectl and crictl) against tests/unit/spdy-echo, for test_spdy.py.
//
//	spdy-go SOCKET
//
// Opens the five streams of a kubelet exec (streamType error, stdin, stdout, stderr, resize, with
// the headers client-go sends), checks each answer's echoed headers, sends 1 MiB on stdin (as one
// Write, that is one DATA frame, then again in 4 KiB writes) and reads it back while writing, sends
// small messages on the others, resets one stream, pings, answers the server's own stream, then
// closes with GOAWAY. Prints "ok ..." and exits 0, or says what went wrong and exits 1.
package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/docker/spdystream"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "spdy-go: "+format+"\n", args...)
	os.Exit(1)
}

const parallel = 20

type serverStream struct {
	headers http.Header
	got     []byte
	err     error
}

func main() {
	if len(os.Args) != 2 {
		fail("usage: spdy-go SOCKET")
	}
	conn, err := net.Dial("unix", os.Args[1])
	if err != nil {
		fail("dial: %v", err)
	}
	c, err := spdystream.NewConnection(conn, false)
	if err != nil {
		fail("NewConnection: %v", err)
	}
	fromServer := make(chan serverStream, 1)
	go c.Serve(func(s *spdystream.Stream) {
		// The server's own stream: reply, read to FIN, answer "got: ..." with FIN.
		if err := s.SendReply(http.Header{}, false); err != nil {
			fromServer <- serverStream{err: err}
			return
		}
		go func() {
			got, err := io.ReadAll(s)
			if err == nil {
				err = s.WriteData(append([]byte("got: "), got...), true)
			}
			fromServer <- serverStream{headers: s.Headers(), got: got, err: err}
		}()
	})
	timer := time.AfterFunc(60*time.Second, func() { fail("timed out") })
	defer timer.Stop()

	streams := map[string]*spdystream.Stream{}
	for _, t := range []string{"error", "stdin", "stdout", "stderr", "resize"} {
		h := http.Header{}
		// What client-go's SPDY executor sets (k8s.io/api/core/v1 constants).
		h.Set("streamType", t)
		h.Set("X-Stream-Protocol-Version", "v4.channel.k8s.io")
		if t == "stdin" {
			h.Add("X-Multi", "one")
			h.Add("X-Multi", "two")
		}
		s, err := c.CreateStream(h, nil, false)
		if err != nil {
			fail("CreateStream %s: %v", t, err)
		}
		if err := s.WaitTimeout(10 * time.Second); err != nil {
			fail("no SYN_REPLY on stream %s: %v", t, err)
		}
		back, err := s.ReceiveHeader()
		if err != nil {
			fail("no HEADERS on stream %s: %v", t, err)
		}
		for name, values := range h {
			lower := http.Header{}
			for k, v := range back {
				lower[http.CanonicalHeaderKey(k)] = v
			}
			if fmt.Sprint(lower[name]) != fmt.Sprint(values) {
				fail("stream %s: header %s came back as %q, sent %q (all: %v)", t, name, lower[name], values, back)
			}
		}
		streams[t] = s
	}

	// 1 MiB on stdin, read back while writing.
	payload := make([]byte, 1<<20)
	if _, err := rand.Read(payload); err != nil {
		fail("rand: %v", err)
	}
	stdin := streams["stdin"]
	readBack := make(chan []byte, 1)
	go func() {
		got, err := io.ReadAll(stdin)
		if err != nil {
			fail("reading stdin back: %v", err)
		}
		readBack <- got
	}()
	if _, err := stdin.Write(payload); err != nil {
		fail("write 1 MiB: %v", err)
	}
	for off := 0; off < len(payload); off += 4096 {
		if _, err := stdin.Write(payload[off : off+4096]); err != nil {
			fail("write 4 KiB: %v", err)
		}
	}
	if err := stdin.Close(); err != nil {
		fail("close stdin: %v", err)
	}
	got := <-readBack
	if !bytes.Equal(got, append(append([]byte{}, payload...), payload...)) {
		fail("stdin came back with %d bytes, not the 2 MiB sent (or different ones)", len(got))
	}

	// Small messages, with FIN, on stdout and stderr; resize in two writes.
	for _, t := range []string{"stdout", "stderr", "resize"} {
		msg := []byte(`{"Width":80,"Height":25} on ` + t)
		s := streams[t]
		if err := s.WriteData(msg[:5], false); err != nil {
			fail("write %s: %v", t, err)
		}
		if err := s.WriteData(msg[5:], true); err != nil {
			fail("write %s: %v", t, err)
		}
		back, err := io.ReadAll(s)
		if err != nil || !bytes.Equal(back, msg) {
			fail("%s came back as %q (%v)", t, back, err)
		}
	}
	// The error stream is reset, as client-go does when it gives up on a stream.
	if err := streams["error"].Reset(); err != nil {
		fail("reset: %v", err)
	}

	if _, err := c.Ping(); err != nil {
		fail("ping: %v", err)
	}

	var ss serverStream
	select {
	case ss = <-fromServer:
	case <-time.After(10 * time.Second):
		fail("the server's stream never came")
	}
	if ss.err != nil || string(ss.got) != "hello from server" || ss.headers.Get("x-from") != "server" {
		fail("server stream: %q, headers %v, %v", ss.got, ss.headers, ss.err)
	}

	// 20 streams at once (port-forward opens a pair per connection), 64 KiB each in 1 KiB writes:
	// header blocks and DATA of many streams interleaved on the one connection.
	done := make(chan error, parallel)
	for i := 0; i < parallel; i++ {
		go func(i int) {
			h := http.Header{}
			h.Set("streamType", "data")
			h.Set("port", fmt.Sprint(8000+i))
			h.Set("requestID", fmt.Sprint(i))
			s, err := c.CreateStream(h, nil, false)
			if err == nil {
				err = s.WaitTimeout(10 * time.Second)
			}
			if err != nil {
				done <- fmt.Errorf("stream %d: %v", i, err)
				return
			}
			if back, err := s.ReceiveHeader(); err != nil || back.Get("requestid") != fmt.Sprint(i) {
				done <- fmt.Errorf("stream %d: headers %v (%v)", i, back, err)
				return
			}
			msg := make([]byte, 64<<10)
			rand.Read(msg)
			readBack := make(chan []byte, 1)
			go func() {
				got, _ := io.ReadAll(s)
				readBack <- got
			}()
			for off := 0; off < len(msg); off += 1024 {
				if _, err := s.Write(msg[off : off+1024]); err != nil {
					done <- fmt.Errorf("stream %d: write: %v", i, err)
					return
				}
			}
			s.Close()
			if got := <-readBack; !bytes.Equal(got, msg) {
				done <- fmt.Errorf("stream %d: %d bytes came back, not the %d sent (or others)", i, len(got), len(msg))
				return
			}
			done <- nil
		}(i)
	}
	for i := 0; i < parallel; i++ {
		if err := <-done; err != nil {
			fail("%v", err)
		}
	}

	if err := c.Close(); err != nil {
		fail("close: %v", err)
	}
	fmt.Printf("ok streams=%d bytes=%d\n", len(streams)+parallel, 2*len(payload)+parallel*64<<10)
}
