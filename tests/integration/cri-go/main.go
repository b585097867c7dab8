// cri-go: a CRI client built the way kubelet and crictl build theirs (grpc-go), for rktlet's
// integration tests. Requests and responses are protojson; the message types come from the
// protoregistry, filled by stubs that protoc-gen-go generates from proto/api.proto at test time
// (tests/integration/gocri.py builds this program; nothing generated is committed).
//
//	cri-go [flags] call METHOD [JSON]          one call; the response as JSON on stdout
//	cri-go [flags] session                     JSON lines on stdin, one answer line each, one connection
//	cri-go [flags] concurrent N METHOD [JSON]  N calls at once on one connection; a summary
//	cri-go [flags] methods                     the methods of both services, with their types
//	cri-go [flags] info                        how it dials: target, authority, grpc-go version
//
// METHOD is "Version", "RuntimeService/Version", "runtime.v1.RuntimeService/Version" or a full
// path "/runtime.v1.RuntimeService/Version". A full path the registry does not know is sent with
// an empty message (only an error can come back: it is how tests reach unknown methods).
//
// Flags:
//
//	-socket PATH      the CRI socket
//	-dial path        kubelet's way (remote_runtime.go): the target is the socket path itself,
//	                  a unix dialer through grpc.WithContextDialer; grpc-go then sends the socket
//	                  path as :authority (the default)
//	-dial unix        the target "unix://PATH" and grpc-go's own dialer; grpc-go sends "localhost"
//	                  (grpc-go 1.33 has no "unix-abstract:" scheme: abstract sockets are not offered)
//	-authority X      grpc.WithAuthority(X): the :authority of every call, whatever the dial
//	-timeout D        each call's deadline (sent as grpc-timeout), 60s unless told
//
// Exit status: 0 when every call succeeded, 3 when a call ended with a gRPC status other than OK
// (printed as {"code":"NotFound","message":"..."}), 2 on a usage error, 1 otherwise. A session
// answers each line, errors included, and exits 0 unless a line could not be sent at all
// (bad JSON, unknown method: {"client_error": ...}), then 1.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/emptypb"

	_ "k8s.io/cri-api/pkg/apis/runtime/v1" // registers runtime.v1's messages and services
)

const (
	maxMsgSize = 16 * 1024 * 1024 // kubelet's maxMsgSize (pkg/kubelet/cri/remote)
	exitRPC    = 3
	exitUsage  = 2
	exitOther  = 1
)

var services = []protoreflect.FullName{"runtime.v1.RuntimeService", "runtime.v1.ImageService"}

var (
	marshal   = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}
	unmarshal = protojson.UnmarshalOptions{}
)

// --- connections ----------------------------------------------------------------------------------

// connStats counts the transports grpc-go opened: a session must be one connection.
type connStats struct {
	begun, ended int64
}

func (s *connStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (s *connStats) HandleRPC(context.Context, stats.RPCStats)                       {}
func (s *connStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (s *connStats) HandleConn(_ context.Context, st stats.ConnStats) {
	switch st.(type) {
	case *stats.ConnBegin:
		atomic.AddInt64(&s.begun, 1)
	case *stats.ConnEnd:
		atomic.AddInt64(&s.ended, 1)
	}
}

type client struct {
	conn      *grpc.ClientConn
	target    string
	authority string // what -authority asked for ("" = grpc-go's choice)
	dial      string
	timeout   time.Duration
	stats     *connStats
}

func dialCRI(socket, dial, authority string, timeout time.Duration) (*client, error) {
	st := &connStats{}
	opts := []grpc.DialOption{
		grpc.WithInsecure(),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize), grpc.MaxCallSendMsgSize(maxMsgSize)),
		grpc.WithStatsHandler(st),
	}
	if authority != "" {
		opts = append(opts, grpc.WithAuthority(authority))
	}
	var target string
	switch dial {
	case "path":
		// pkg/kubelet/cri/remote/remote_runtime.go with util.GetAddressAndDialer: the address is
		// the path, dialed as "unix" by a context dialer.
		target = socket
		opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", addr)
		}))
	case "unix":
		// grpc-go 1.33 has no "unix" resolver: the passthrough resolver keeps "unix:///path" as the
		// address, grpc-go's default dialer (parseDialTarget) dials it as unix, and the
		// authority of a "unix:" target is "localhost".
		target = "unix://" + socket
		opts = append(opts, grpc.WithNoProxy())
	default:
		return nil, fmt.Errorf("unknown -dial %q (path or unix)", dial)
	}
	conn, err := grpc.DialContext(context.Background(), target, opts...)
	if err != nil {
		return nil, err
	}
	return &client{conn: conn, target: target, authority: authority, dial: dial, timeout: timeout, stats: st}, nil
}

// --- methods ----------------------------------------------------------------------------------------

type method struct {
	path   string
	desc   protoreflect.MethodDescriptor // nil for a path the registry does not know
	input  protoreflect.MessageType
	output protoreflect.MessageType
}

func findService(name protoreflect.FullName) (protoreflect.ServiceDescriptor, error) {
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
	if err != nil {
		return nil, fmt.Errorf("service %s: %v", name, err)
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s is not a service", name)
	}
	return sd, nil
}

func messageType(name protoreflect.FullName) (protoreflect.MessageType, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(name)
	if err != nil {
		return nil, fmt.Errorf("message %s: %v", name, err)
	}
	return mt, nil
}

func fromDescriptor(sd protoreflect.ServiceDescriptor, md protoreflect.MethodDescriptor) (*method, error) {
	in, err := messageType(md.Input().FullName())
	if err != nil {
		return nil, err
	}
	out, err := messageType(md.Output().FullName())
	if err != nil {
		return nil, err
	}
	return &method{path: fmt.Sprintf("/%s/%s", sd.FullName(), md.Name()), desc: md, input: in, output: out}, nil
}

func resolve(name string) (*method, error) {
	if strings.HasPrefix(name, "/") {
		parts := strings.SplitN(name[1:], "/", 2)
		if len(parts) == 2 {
			if sd, err := findService(protoreflect.FullName(parts[0])); err == nil {
				if md := sd.Methods().ByName(protoreflect.Name(parts[1])); md != nil {
					return fromDescriptor(sd, md)
				}
			}
		}
		empty := (&emptypb.Empty{}).ProtoReflect().Type()
		return &method{path: name, input: empty, output: empty}, nil
	}
	svc, short := "", name
	if i := strings.LastIndex(name, "/"); i >= 0 {
		svc, short = name[:i], name[i+1:]
	}
	var found []*method
	for _, s := range services {
		if svc != "" && svc != string(s) && svc != string(s.Name()) {
			continue
		}
		sd, err := findService(s)
		if err != nil {
			return nil, err
		}
		if md := sd.Methods().ByName(protoreflect.Name(short)); md != nil {
			m, err := fromDescriptor(sd, md)
			if err != nil {
				return nil, err
			}
			found = append(found, m)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("no method %q in %v", name, services)
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("method %q is ambiguous: name its service", name)
}

// --- calls --------------------------------------------------------------------------------------------

type answer struct {
	Response  json.RawMessage   `json:"response,omitempty"`
	Responses []json.RawMessage `json:"responses,omitempty"` // a server-streaming method
	Code      string            `json:"code,omitempty"`
	Message   string            `json:"message,omitempty"`
	ElapsedMs float64           `json:"elapsed_ms"`
	ok        bool
}

func errorAnswer(err error) *answer {
	if s, ok := status.FromError(err); ok {
		return &answer{Code: s.Code().String(), Message: s.Message()}
	}
	return &answer{Code: codes.Unknown.String(), Message: err.Error()}
}

// clientError is a request the client could not build: bad JSON, unknown method.
type clientError struct{ error }

func (c *client) call(name string, request json.RawMessage, timeout time.Duration) (*answer, error) {
	m, err := resolve(name)
	if err != nil {
		return nil, clientError{err}
	}
	req := m.input.New().Interface()
	if len(request) > 0 && string(request) != "null" {
		if m.desc == nil && string(request) != "{}" {
			return nil, clientError{fmt.Errorf("%s is not in the registry: only {} can be sent", name)}
		}
		if err := unmarshal.Unmarshal(request, req); err != nil {
			return nil, clientError{fmt.Errorf("request for %s: %v", m.path, err)}
		}
	}
	if timeout <= 0 {
		timeout = c.timeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	t0 := time.Now()
	var a *answer
	if m.desc != nil && m.desc.IsStreamingServer() {
		a, err = c.stream(ctx, m, req)
	} else {
		a, err = c.unary(ctx, m, req)
	}
	if err != nil {
		return nil, err
	}
	a.ElapsedMs = float64(time.Since(t0).Microseconds()) / 1000
	return a, nil
}

func (c *client) unary(ctx context.Context, m *method, req proto.Message) (*answer, error) {
	resp := m.output.New().Interface()
	if err := c.conn.Invoke(ctx, m.path, req, resp); err != nil {
		return errorAnswer(err), nil
	}
	out, err := marshal.Marshal(resp)
	if err != nil {
		return nil, err
	}
	return &answer{Response: out, ok: true}, nil
}

func (c *client) stream(ctx context.Context, m *method, req proto.Message) (*answer, error) {
	desc := &grpc.StreamDesc{StreamName: string(m.desc.Name()), ServerStreams: true}
	s, err := c.conn.NewStream(ctx, desc, m.path)
	if err != nil {
		return errorAnswer(err), nil
	}
	if err := s.SendMsg(req); err != nil && err != io.EOF {
		return errorAnswer(err), nil
	}
	if err := s.CloseSend(); err != nil {
		return errorAnswer(err), nil
	}
	a := &answer{Responses: []json.RawMessage{}}
	for {
		resp := m.output.New().Interface()
		err := s.RecvMsg(resp)
		if err == io.EOF {
			break
		}
		if err != nil {
			e := errorAnswer(err)
			e.Responses = a.Responses
			return e, nil
		}
		out, err := marshal.Marshal(resp)
		if err != nil {
			return nil, err
		}
		a.Responses = append(a.Responses, out)
	}
	a.ok = true
	return a, nil
}

// --- commands -----------------------------------------------------------------------------------------

func printJSON(v interface{}) {
	b, err := json.Marshal(v)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cri-go:", err)
		os.Exit(exitOther)
	}
	os.Stdout.Write(append(b, '\n'))
}

func fail(code int, format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "cri-go: "+format+"\n", args...)
	os.Exit(code)
}

func jsonArg(args []string, i int) json.RawMessage {
	if len(args) <= i {
		return nil
	}
	return json.RawMessage(args[i])
}

func cmdCall(c *client, args []string) int {
	if len(args) < 1 || len(args) > 2 {
		fail(exitUsage, "usage: call METHOD [JSON]")
	}
	a, err := c.call(args[0], jsonArg(args, 1), 0)
	if err != nil {
		var ce clientError
		if errors.As(err, &ce) {
			fail(exitUsage, "%v", err)
		}
		fail(exitOther, "%v", err)
	}
	switch {
	case !a.ok:
		printJSON(map[string]string{"code": a.Code, "message": a.Message})
		return exitRPC
	case a.Responses != nil:
		for _, r := range a.Responses {
			os.Stdout.Write(append(r, '\n'))
		}
	default:
		os.Stdout.Write(append(a.Response, '\n'))
	}
	return 0
}

type sessionLine struct {
	ID        json.RawMessage `json:"id,omitempty"`
	Method    string          `json:"method"`
	Request   json.RawMessage `json:"request"`
	TimeoutMs int64           `json:"timeout_ms"`
}

// cmdSession runs the calls of stdin in order on the one connection; "_stats" answers with the
// connections opened so far. An undecodable line or unknown method answers
// {"client_error": "..."} and the session goes on.
func cmdSession(c *client) int {
	in := bufio.NewReader(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	failed := false
	for {
		line, err := in.ReadBytes('\n')
		if len(strings.TrimSpace(string(line))) > 0 {
			var req sessionLine
			reply := map[string]interface{}{}
			if e := json.Unmarshal(line, &req); e != nil {
				reply["client_error"] = e.Error()
				failed = true
			} else if req.Method == "_stats" {
				reply["connections"] = atomic.LoadInt64(&c.stats.begun)
				reply["closed"] = atomic.LoadInt64(&c.stats.ended)
				reply["target"] = c.target
			} else {
				a, e := c.call(req.Method, req.Request, time.Duration(req.TimeoutMs)*time.Millisecond)
				switch {
				case e != nil:
					reply["client_error"] = e.Error()
					failed = true
				case a.ok && a.Responses != nil:
					reply["responses"] = a.Responses
				case a.ok:
					reply["response"] = a.Response
				default:
					reply["code"], reply["message"] = a.Code, a.Message
				}
				if a != nil {
					reply["elapsed_ms"] = a.ElapsedMs
				}
			}
			if len(req.ID) > 0 {
				reply["id"] = req.ID
			}
			b, _ := json.Marshal(reply)
			out.Write(append(b, '\n'))
			out.Flush()
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			fail(exitOther, "stdin: %v", err)
		}
	}
	if failed {
		return exitOther
	}
	return 0
}

func cmdConcurrent(c *client, args []string) int {
	if len(args) < 2 || len(args) > 3 {
		fail(exitUsage, "usage: concurrent N METHOD [JSON]")
	}
	var n int
	if _, err := fmt.Sscanf(args[0], "%d", &n); err != nil || n <= 0 {
		fail(exitUsage, "concurrent: N must be a positive number, not %q", args[0])
	}
	if _, err := resolve(args[1]); err != nil {
		fail(exitUsage, "%v", err)
	}
	// Connected first: the N calls are N streams at once on a ready connection.
	if _, err := c.call("Version", nil, 0); err != nil {
		fail(exitOther, "%v", err)
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		counts   = map[string]int{}
		messages = map[string]string{}
		start    = make(chan struct{})
	)
	t0 := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			a, err := c.call(args[1], jsonArg(args, 2), 0)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				counts["ClientError"]++
				messages["ClientError"] = err.Error()
			case a.ok:
				counts["OK"]++
			default:
				counts[a.Code]++
				messages[a.Code] = a.Message
			}
		}()
	}
	close(start)
	wg.Wait()
	printJSON(map[string]interface{}{"calls": n, "codes": counts, "messages": messages,
		"connections": atomic.LoadInt64(&c.stats.begun), "elapsed_ms": float64(time.Since(t0).Microseconds()) / 1000})
	if counts["OK"] != n {
		return exitRPC
	}
	return 0
}

func cmdMethods() int {
	var list []map[string]interface{}
	for _, s := range services {
		sd, err := findService(s)
		if err != nil {
			fail(exitOther, "%v", err)
		}
		for i := 0; i < sd.Methods().Len(); i++ {
			m, err := fromDescriptor(sd, sd.Methods().Get(i))
			if err != nil {
				fail(exitOther, "%v", err)
			}
			list = append(list, map[string]interface{}{"path": m.path, "input": m.input.Descriptor().FullName(),
				"output": m.output.Descriptor().FullName(), "server_streaming": m.desc.IsStreamingServer()})
		}
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i]["path"].(string) < list[j]["path"].(string) })
	printJSON(list)
	return 0
}

func main() {
	socket := flag.String("socket", "/run/rktlet/rktlet.sock", "the CRI socket")
	dial := flag.String("dial", "path", "path (kubelet's: the socket path as target and :authority) or unix (unix://PATH)")
	authority := flag.String("authority", "", "the :authority of every call (grpc.WithAuthority)")
	timeout := flag.Duration("timeout", 60*time.Second, "each call's deadline")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: cri-go [flags] call METHOD [JSON] | session | concurrent N METHOD [JSON] | methods | info")
		flag.PrintDefaults()
	}
	flag.Parse()
	args := flag.Args()
	if len(args) == 0 {
		flag.Usage()
		os.Exit(exitUsage)
	}
	if args[0] == "methods" {
		os.Exit(cmdMethods())
	}
	c, err := dialCRI(*socket, *dial, *authority, *timeout)
	if err != nil {
		fail(exitUsage, "%v", err)
	}
	defer c.conn.Close()
	rc := 0
	switch args[0] {
	case "call":
		rc = cmdCall(c, args[1:])
	case "session":
		rc = cmdSession(c)
	case "concurrent":
		rc = cmdConcurrent(c, args[1:])
	case "info":
		printJSON(map[string]interface{}{"target": c.target, "dial": c.dial, "authority": c.authority,
			"grpc_version": grpc.Version})
	default:
		flag.Usage()
		rc = exitUsage
	}
	c.conn.Close()
	os.Exit(rc)
}
