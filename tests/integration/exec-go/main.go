// exec-go: Exec and PortForward the way kubelet's own stack does them, for rktlet's integration
// tests and benchmarks. The call goes over gRPC (grpc-go, the stubs cri-go uses, generated at test
// time by tests/integration/gocri.py); the URL it answers is then dialed and upgraded to SPDY/3.1
// and spoken with github.com/docker/spdystream, as client-go's remotecommand (v4.channel.k8s.io)
// and portforward (portforward.k8s.io) do.
//
//	exec-go [flags] exec JSON               an ExecRequest; stdin → "stdin", "stdout" → stdout,
//	                                        "stderr" → stderr, the v4 Status decoded into -result
//	exec-go [flags] attach JSON             an AttachRequest; the session as exec's
//	exec-go [flags] portforward POD PORT    stdin → the data stream, the data stream → stdout
//	exec-go [flags] many N POD PORT JSON    N sessions at once: even ones exec JSON (no stdin),
//	                                        odd ones GET / through a port-forward to PORT (httpd)
//	exec-go [flags] bench-exec N JSON       N execs one after another: ms to the first stdout byte
//	exec-go [flags] bench-execsync N JSON   N ExecSyncs of the same command (an ExecRequest's fields)
//	exec-go [flags] bench-pf POD PORT BYTES BYTES through a port-forward to a sink; seconds
//	exec-go bench-tcp ADDR BYTES            BYTES over a plain TCP connection to ADDR; seconds
//
// Flags:
//
//	-socket PATH   the CRI socket
//	-ca FILE       a PEM CA: the URL must be https:// and its certificate signed by it
//	-result FILE   the outcome as JSON: url, protocol, status (the error stream's text), exit_code,
//	               error (a transport failure), first_byte_ms
//	-sizes R×C,…   a tty's sizes ("33x101,40x120"): the first at start, the next at each SIGUSR1
//	-noread        never read stdout or stderr (the daemon must hold back, not buffer)
//	-nosend        open every stream, send nothing, keep stdin open
//	-streams LIST  open only these streams (e.g. "error"), to see the creation timeout
//	-timeout D     the deadline of everything, 60s unless told
//
// Exit status: 0 when the session ended with a Status (whatever exit code it names; see -result),
// 3 when the gRPC call failed, 1 on any other failure (the connection closed, a refusal).
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/spdystream"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

var (
	socketPath = flag.String("socket", "", "the CRI socket")
	caFile     = flag.String("ca", "", "a PEM CA for https:// URLs")
	resultFile = flag.String("result", "", "write the outcome here as JSON")
	sizesFlag  = flag.String("sizes", "", "tty sizes RxC,RxC,...")
	noRead     = flag.Bool("noread", false, "never read stdout or stderr")
	noSend     = flag.Bool("nosend", false, "send nothing on stdin")
	streamList = flag.String("streams", "", "open only these streams")
	timeout    = flag.Duration("timeout", 60*time.Second, "deadline")
)

func fail(code int, format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "exec-go: "+format+"\n", args...)
	os.Exit(code)
}

// --- gRPC ------------------------------------------------------------------------------------------

// cri: the three methods used here, through ClientConn.Invoke (only the message stubs are
// generated, as for cri-go).
type cri struct{ cc *grpc.ClientConn }

const service = "/runtime.v1.RuntimeService/"

func (c cri) Exec(ctx context.Context, in *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	out := &runtimeapi.ExecResponse{}
	return out, c.cc.Invoke(ctx, service+"Exec", in, out)
}

func (c cri) Attach(ctx context.Context, in *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	out := &runtimeapi.AttachResponse{}
	return out, c.cc.Invoke(ctx, service+"Attach", in, out)
}

func (c cri) ExecSync(ctx context.Context, in *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	out := &runtimeapi.ExecSyncResponse{}
	return out, c.cc.Invoke(ctx, service+"ExecSync", in, out, grpc.MaxCallRecvMsgSize(16*1024*1024+4096))
}

func (c cri) PortForward(ctx context.Context, in *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	out := &runtimeapi.PortForwardResponse{}
	return out, c.cc.Invoke(ctx, service+"PortForward", in, out)
}

func dialCRI() (cri, *grpc.ClientConn) {
	// kubelet's way (remote_runtime.go): the socket path as target, a unix dialer.
	conn, err := grpc.Dial(*socketPath, grpc.WithInsecure(), grpc.WithContextDialer(
		func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", addr)
		}))
	if err != nil {
		fail(1, "dial %s: %v", *socketPath, err)
	}
	return cri{conn}, conn
}

func parseExecRequest(text string) *runtimeapi.ExecRequest {
	req := &runtimeapi.ExecRequest{}
	if err := protojson.Unmarshal([]byte(text), req); err != nil {
		fail(2, "ExecRequest %s: %v", text, err)
	}
	return req
}

// --- the upgrade -----------------------------------------------------------------------------------

var tlsConfig *tls.Config

func loadCA() {
	if *caFile == "" {
		return
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		fail(2, "%v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		fail(2, "%s: no certificate", *caFile)
	}
	tlsConfig = &tls.Config{RootCAs: pool}
}

// bufferedConn reads what bufio already holds before the socket: the first SPDY frames may come
// in the same segment as the 101.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

type upgradeError struct {
	status int
	body   string
}

func (e *upgradeError) Error() string {
	return fmt.Sprintf("unable to upgrade connection: %d %s", e.status, strings.TrimSpace(e.body))
}

// upgrade dials rawURL and asks for SPDY/3.1 with these protocols, as client-go's
// SpdyRoundTripper does; it returns the SPDY connection and the protocol the server chose.
func upgrade(rawURL string, protocols []string) (*spdystream.Connection, string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, "", err
	}
	var conn net.Conn
	d := &net.Dialer{Timeout: 10 * time.Second}
	switch u.Scheme {
	case "http":
		if tlsConfig != nil {
			return nil, "", fmt.Errorf("%s: not https although -ca was given", rawURL)
		}
		conn, err = d.Dial("tcp", u.Host)
	case "https":
		if tlsConfig == nil {
			return nil, "", fmt.Errorf("%s: https needs -ca", rawURL)
		}
		conn, err = tls.DialWithDialer(d, "tcp", u.Host, tlsConfig)
	default:
		return nil, "", fmt.Errorf("%s: unknown scheme", rawURL)
	}
	if err != nil {
		return nil, "", err
	}
	req, _ := http.NewRequest("POST", rawURL, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "SPDY/3.1")
	for _, p := range protocols {
		req.Header.Add("X-Stream-Protocol-Version", p)
	}
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, "", err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, "", err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		conn.Close()
		return nil, "", &upgradeError{resp.StatusCode, string(body)}
	}
	sc, err := spdystream.NewConnection(&bufferedConn{conn, br}, false)
	if err != nil {
		conn.Close()
		return nil, "", err
	}
	go sc.Serve(spdystream.NoOpStreamHandler)
	return sc, resp.Header.Get("X-Stream-Protocol-Version"), nil
}

// --- exec ------------------------------------------------------------------------------------------

type execResult struct {
	URL         string  `json:"url"`
	Protocol    string  `json:"protocol"`
	Status      string  `json:"status"`
	ExitCode    int     `json:"exit_code"`
	Error       string  `json:"error,omitempty"`
	FirstByteMs float64 `json:"first_byte_ms,omitempty"`
	Stdout      int64   `json:"stdout_bytes"`
	Stderr      int64   `json:"stderr_bytes"`
}

// status decodes the v4 error stream as client-go's errorDecoderV4 does: nothing or Success is
// exit 0, NonZeroExitCode carries the code in its ExitCode cause, anything else is an error.
func decodeStatus(text string) (int, error) {
	if text == "" {
		return 0, nil
	}
	var st struct {
		Status  string `json:"status"`
		Message string `json:"message"`
		Reason  string `json:"reason"`
		Details struct {
			Causes []struct {
				Reason  string `json:"reason"`
				Message string `json:"message"`
			} `json:"causes"`
		} `json:"details"`
	}
	if err := json.Unmarshal([]byte(text), &st); err != nil {
		return -1, fmt.Errorf("error stream protocol error: %v in %q", err, text)
	}
	if st.Status == "Success" {
		return 0, nil
	}
	if st.Reason == "NonZeroExitCode" {
		for _, c := range st.Details.Causes {
			if c.Reason == "ExitCode" {
				n, err := strconv.Atoi(c.Message)
				if err != nil {
					return -1, fmt.Errorf("bad ExitCode cause %q", c.Message)
				}
				return n, nil
			}
		}
		return -1, fmt.Errorf("NonZeroExitCode without an ExitCode cause: %q", text)
	}
	return -1, errors.New(st.Message)
}

type execOptions struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	sizes          [][2]uint16
	resize         <-chan struct{}
	onFirstByte    func()
}

func parseSizes(s string) [][2]uint16 {
	var out [][2]uint16
	for _, part := range strings.Split(s, ",") {
		if part == "" {
			continue
		}
		var r, c uint16
		if _, err := fmt.Sscanf(part, "%dx%d", &r, &c); err != nil {
			fail(2, "-sizes %q: %v", s, err)
		}
		out = append(out, [2]uint16{r, c})
	}
	return out
}

// firstByteWriter calls f before the first byte it passes on.
type firstByteWriter struct {
	w    io.Writer
	once sync.Once
	f    func()
	n    int64
}

func (w *firstByteWriter) Write(p []byte) (int, error) {
	if len(p) > 0 && w.f != nil {
		w.once.Do(w.f)
	}
	n, err := w.w.Write(p)
	w.n += int64(n)
	return n, err
}

func runExec(rt cri, req *runtimeapi.ExecRequest, o execOptions) (res execResult) {
	return runSession(req, o, func(ctx context.Context) (string, error) {
		resp, err := rt.Exec(ctx, req)
		if err != nil {
			return "", err
		}
		return resp.Url, nil
	})
}

// runAttach: an Attach's session is an exec's (the same streams, resize and v4 Status), on the URL
// Attach answers; client-go's attach is remotecommand's executor on it too.
func runAttach(rt cri, req *runtimeapi.AttachRequest, o execOptions) (res execResult) {
	streams := &runtimeapi.ExecRequest{ContainerId: req.ContainerId, Stdin: req.Stdin, Stdout: req.Stdout,
		Stderr: req.Stderr, Tty: req.Tty}
	return runSession(streams, o, func(ctx context.Context) (string, error) {
		resp, err := rt.Attach(ctx, req)
		if err != nil {
			return "", err
		}
		return resp.Url, nil
	})
}

func runSession(req *runtimeapi.ExecRequest, o execOptions, call func(context.Context) (string, error)) (res execResult) {
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	u, err := call(ctx)
	if err != nil {
		res.Error = "rpc: " + err.Error()
		res.ExitCode = -1
		return
	}
	res.URL = u
	sc, proto, err := upgrade(u, []string{"v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io",
		"channel.k8s.io"})
	if err != nil {
		res.Error = err.Error()
		res.ExitCode = -1
		return
	}
	defer sc.Close()
	res.Protocol = proto

	only := map[string]bool{}
	for _, s := range strings.Split(*streamList, ",") {
		if s != "" {
			only[s] = true
		}
	}
	open := func(t string) *spdystream.Stream {
		if len(only) > 0 && !only[t] {
			return nil
		}
		h := http.Header{}
		h.Set("streamType", t)
		s, err := sc.CreateStream(h, nil, false)
		if err != nil {
			fail(1, "CreateStream %s: %v", t, err)
		}
		return s
	}
	// client-go's order (streamProtocolV4.createStreams): error, stdin, stdout, stderr, resize.
	errStream := open("error")
	var stdin, stdout, stderr, resize *spdystream.Stream
	if req.Stdin {
		stdin = open("stdin")
	}
	if req.Stdout {
		stdout = open("stdout")
	}
	if req.Stderr && !req.Tty {
		stderr = open("stderr")
	}
	if req.Tty {
		resize = open("resize")
	}

	var wg sync.WaitGroup
	if resize != nil {
		sendSize := func(sz [2]uint16) {
			b, _ := json.Marshal(map[string]uint16{"Width": sz[1], "Height": sz[0]})
			_, _ = resize.Write(append(b, '\n')) // json.Encoder's line, as client-go sends it
		}
		if len(o.sizes) > 0 {
			sendSize(o.sizes[0])
		}
		go func() {
			for i := 1; ; i++ {
				if _, ok := <-o.resize; !ok {
					return
				}
				if i < len(o.sizes) {
					sendSize(o.sizes[i])
				}
			}
		}()
	}
	if stdin != nil && !*noSend && o.stdin != nil {
		go func() {
			_, _ = io.Copy(stdin, o.stdin)
			_ = stdin.Close() // half-close: the command's stdin ends
		}()
	}
	outW := &firstByteWriter{w: o.stdout, f: o.onFirstByte}
	errW := &firstByteWriter{w: o.stderr}
	copyOut := func(s *spdystream.Stream, w io.Writer) {
		if s == nil || *noRead {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(w, s)
		}()
	}
	copyOut(stdout, outW)
	copyOut(stderr, errW)

	if errStream == nil {
		// -streams without error: wait for the server to drop us.
		<-sc.CloseChan()
		res.Error = "connection closed"
		res.ExitCode = -1
		return
	}
	statusCh := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(errStream)
		statusCh <- string(b)
	}()
	// As client-go's watchErrorStream: the error stream read to its end, which comes with its FIN
	// or with the connection closing (then nothing, for v4, which always sends a Status).
	select {
	case text := <-statusCh:
		if !*noRead {
			wg.Wait()
		}
		res.Status = text
		code, err := decodeStatus(text)
		res.ExitCode = code
		if err != nil {
			res.Error = "status: " + err.Error()
		}
		if text == "" && proto == "v4.channel.k8s.io" {
			res.Error = "connection closed"
			res.ExitCode = -1
		}
	case <-ctx.Done():
		res.Error = "timed out"
		res.ExitCode = -1
	}
	res.Stdout, res.Stderr = outW.n, errW.n
	return
}

// --- port-forward ----------------------------------------------------------------------------------

type pfResult struct {
	URL   string `json:"url"`
	Error string `json:"error,omitempty"`
	Sent  int64  `json:"sent"`
	Got   int64  `json:"got"`
}

func portForwardURL(rt cri, pod string, port int32) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	resp, err := rt.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: pod, Port: []int32{port}})
	if err != nil {
		return "", err
	}
	return resp.Url, nil
}

// forward is client-go's handleConnection: an error stream (closed at once: nothing is written to
// it) and a data stream per connection, with the port and the request ID in their headers.
func forward(sc *spdystream.Connection, port int32, requestID int, in io.Reader, out io.Writer) (sent, got int64, err error) {
	h := http.Header{}
	h.Set("streamType", "error")
	h.Set("port", strconv.Itoa(int(port)))
	h.Set("requestID", strconv.Itoa(requestID))
	errStream, err := sc.CreateStream(h, nil, false)
	if err != nil {
		return 0, 0, err
	}
	_ = errStream.Close()
	errCh := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(errStream)
		errCh <- string(b)
	}()
	h.Set("streamType", "data")
	data, err := sc.CreateStream(h, nil, false)
	if err != nil {
		return 0, 0, err
	}
	remoteDone := make(chan struct{})
	go func() {
		got, _ = io.Copy(out, data)
		close(remoteDone)
	}()
	go func() {
		sent, _ = io.Copy(data, in)
		_ = data.Close()
	}()
	select {
	case <-remoteDone:
	case <-sc.CloseChan():
		return sent, got, errors.New("connection closed")
	}
	if text := <-errCh; text != "" {
		return sent, got, fmt.Errorf("error forwarding port %d: %s", port, text)
	}
	return sent, got, nil
}

func runPortForward(rt cri, pod string, port int32, in io.Reader, out io.Writer) (res pfResult) {
	u, err := portForwardURL(rt, pod, port)
	if err != nil {
		res.Error = "rpc: " + err.Error()
		return
	}
	res.URL = u
	sc, _, err := upgrade(u, []string{"portforward.k8s.io"})
	if err != nil {
		res.Error = err.Error()
		return
	}
	defer sc.Close()
	res.Sent, res.Got, err = forward(sc, port, 0, in, out)
	if err != nil {
		res.Error = err.Error()
	}
	return
}

// --- many ------------------------------------------------------------------------------------------

type zeroReader struct{ left int64 }

func (z *zeroReader) Read(p []byte) (int, error) {
	if z.left <= 0 {
		return 0, io.EOF
	}
	n := int64(len(p))
	if n > z.left {
		n = z.left
	}
	for i := range p[:n] {
		p[i] = 0
	}
	z.left -= n
	return int(n), nil
}

func writeResult(v interface{}) {
	b, _ := json.Marshal(v)
	if *resultFile != "" {
		if err := os.WriteFile(*resultFile, append(b, '\n'), 0o644); err != nil {
			fail(1, "%v", err)
		}
	} else {
		fmt.Println(string(b))
	}
}

func percentile(ms []float64, p float64) float64 {
	if len(ms) == 0 {
		return 0
	}
	s := append([]float64(nil), ms...)
	sort.Float64s(s)
	i := int(p*float64(len(s)-1) + 0.5)
	return s[i]
}

func main() {
	flag.Parse()
	args := flag.Args()
	if len(args) < 1 {
		fail(2, "usage: exec-go [flags] exec|portforward|many|bench-exec|bench-execsync|bench-pf|bench-tcp ...")
	}
	loadCA()
	timer := time.AfterFunc(*timeout+30*time.Second, func() { fail(1, "timed out") })
	defer timer.Stop()

	if args[0] == "bench-tcp" {
		if len(args) != 3 {
			fail(2, "usage: bench-tcp ADDR BYTES")
		}
		n, _ := strconv.ParseInt(args[2], 10, 64)
		t0 := time.Now()
		c, err := net.Dial("tcp", args[1])
		if err != nil {
			fail(1, "%v", err)
		}
		sent, err := io.Copy(c, &zeroReader{n})
		if err != nil {
			fail(1, "%v", err)
		}
		_ = c.(*net.TCPConn).CloseWrite()
		_, _ = io.Copy(io.Discard, c) // the sink closes when it has read everything
		writeResult(map[string]interface{}{"bytes": sent, "seconds": time.Since(t0).Seconds()})
		return
	}

	rt, conn := dialCRI()
	defer conn.Close()
	switch args[0] {
	case "exec":
		if len(args) != 2 {
			fail(2, "usage: exec JSON")
		}
		req := parseExecRequest(args[1])
		resizeCh := make(chan struct{}, 8)
		sig := make(chan os.Signal, 8)
		signal.Notify(sig, syscall.SIGUSR1)
		go func() {
			for range sig {
				resizeCh <- struct{}{}
			}
		}()
		var stdin io.Reader = os.Stdin
		if *noSend {
			stdin = nil
		}
		res := runExec(rt, req, execOptions{stdin: stdin, stdout: os.Stdout, stderr: os.Stderr,
			sizes: parseSizes(*sizesFlag), resize: resizeCh})
		writeResult(res)
		if strings.HasPrefix(res.Error, "rpc: ") {
			os.Exit(3)
		}
		if res.ExitCode < 0 {
			os.Exit(1)
		}
	case "attach":
		if len(args) != 2 {
			fail(2, "usage: attach JSON")
		}
		req := &runtimeapi.AttachRequest{}
		if err := protojson.Unmarshal([]byte(args[1]), req); err != nil {
			fail(2, "AttachRequest %s: %v", args[1], err)
		}
		var stdin io.Reader = os.Stdin
		if *noSend {
			stdin = nil
		}
		res := runAttach(rt, req, execOptions{stdin: stdin, stdout: os.Stdout, stderr: os.Stderr,
			sizes: parseSizes(*sizesFlag)})
		writeResult(res)
		if strings.HasPrefix(res.Error, "rpc: ") {
			os.Exit(3)
		}
		if res.ExitCode < 0 {
			os.Exit(1)
		}
	case "portforward":
		if len(args) != 3 {
			fail(2, "usage: portforward POD PORT")
		}
		port, _ := strconv.Atoi(args[2])
		res := runPortForward(rt, args[1], int32(port), os.Stdin, os.Stdout)
		writeResult(res)
		if strings.HasPrefix(res.Error, "rpc: ") {
			os.Exit(3)
		}
		if res.Error != "" {
			os.Exit(1)
		}
	case "many":
		if len(args) != 5 {
			fail(2, "usage: many N POD PORT JSON")
		}
		n, _ := strconv.Atoi(args[1])
		port, _ := strconv.Atoi(args[3])
		req := parseExecRequest(args[4])
		var mu sync.Mutex
		outcomes := map[string]int{}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				var what string
				if i%2 == 0 {
					var out strings.Builder
					r := runExec(rt, req, execOptions{stdout: &out, stderr: io.Discard})
					switch {
					case r.Error == "" && r.ExitCode == 0:
						what = "exec ok"
					case isRefusal(r.Error):
						what = "exec refused"
					default:
						what = "exec failed: " + r.Error
					}
				} else {
					var out strings.Builder
					r := runPortForward(rt, args[2], int32(port), strings.NewReader("GET / HTTP/1.0\r\n\r\n"), &out)
					switch {
					case r.Error == "" && strings.Contains(out.String(), "200 OK"):
						what = "portforward ok"
					case isRefusal(r.Error):
						what = "portforward refused"
					default:
						what = fmt.Sprintf("portforward failed: %s (%q)", r.Error, out.String())
					}
				}
				mu.Lock()
				outcomes[what]++
				mu.Unlock()
			}(i)
		}
		close(start)
		wg.Wait()
		writeResult(outcomes)
	case "bench-exec":
		if len(args) != 3 {
			fail(2, "usage: bench-exec N JSON")
		}
		n, _ := strconv.Atoi(args[1])
		req := parseExecRequest(args[2])
		var first, total []float64
		for i := 0; i < n; i++ {
			t0 := time.Now()
			var fb time.Duration
			r := runExec(rt, req, execOptions{stdout: io.Discard, stderr: io.Discard,
				onFirstByte: func() { fb = time.Since(t0) }})
			if r.Error != "" || r.ExitCode != 0 || fb == 0 {
				fail(1, "exec %d: %+v", i, r)
			}
			first = append(first, float64(fb.Microseconds())/1000)
			total = append(total, float64(time.Since(t0).Microseconds())/1000)
		}
		writeResult(map[string]interface{}{"first_byte_ms": first, "total_ms": total,
			"p50": percentile(first, .5), "p90": percentile(first, .9),
			"total_p50": percentile(total, .5), "total_p90": percentile(total, .9)})
	case "bench-execsync":
		if len(args) != 3 {
			fail(2, "usage: bench-execsync N JSON")
		}
		n, _ := strconv.Atoi(args[1])
		req := parseExecRequest(args[2])
		var ms []float64
		for i := 0; i < n; i++ {
			t0 := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), *timeout)
			r, err := rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: req.ContainerId, Cmd: req.Cmd})
			cancel()
			if err != nil || r.ExitCode != 0 || len(r.Stdout) == 0 {
				fail(1, "ExecSync %d: %v %v", i, r, err)
			}
			ms = append(ms, float64(time.Since(t0).Microseconds())/1000)
		}
		writeResult(map[string]interface{}{"ms": ms, "p50": percentile(ms, .5), "p90": percentile(ms, .9)})
	case "bench-pf":
		if len(args) != 4 {
			fail(2, "usage: bench-pf POD PORT BYTES")
		}
		port, _ := strconv.Atoi(args[2])
		n, _ := strconv.ParseInt(args[3], 10, 64)
		t0 := time.Now()
		r := runPortForward(rt, args[1], int32(port), &zeroReader{n}, io.Discard)
		if r.Error != "" || r.Sent != n {
			fail(1, "port-forward: %+v", r)
		}
		writeResult(map[string]interface{}{"bytes": r.Sent, "seconds": time.Since(t0).Seconds()})
	default:
		fail(2, "unknown command %q", args[0])
	}
}

// isRefusal: the server said no before any work began (MaxConnections, a busy token table): the
// connection refused or closed during the upgrade, or an HTTP answer other than 101.
func isRefusal(e string) bool {
	for _, s := range []string{"unable to upgrade", "connection reset", "connection refused", "EOF",
		"broken pipe", "RESOURCE_EXHAUSTED", "ResourceExhausted"} {
		if strings.Contains(e, s) {
			return true
		}
	}
	return false
}
