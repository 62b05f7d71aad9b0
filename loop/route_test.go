package loop

import (
	"net/url"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/http1"
)

// routeFuzzBalancer has routes whose prefixes share segments, some strip.
func routeFuzzBalancer(t testing.TB) *balancer.Balancer {
	var bc balancer.Config
	for _, p := range []string{"default", "api", "apiv1", "ws", "sio", "tilde"} {
		b, err := balancer.ParseBackend(p + "=127.0.0.1:1")
		if err != nil {
			t.Fatal(err)
		}
		bc.Backends = append(bc.Backends, b)
	}
	for _, r := range []string{"/api=api,strip", "/api/v1=apiv1,strip", "/ws=ws", "/socket.io=sio", "/a.b/~c=tilde,strip", "/=default"} {
		rc, err := balancer.ParseRoute(r)
		if err != nil {
			t.Fatal(err)
		}
		bc.Routes = append(bc.Routes, rc)
	}
	bal, err := balancer.New(bc)
	if err != nil {
		t.Fatal(err)
	}
	return bal
}

// FuzzRouteDecision is the differential check of audit finding F2: for any
// request path wsgate accepts, its route and strip decision (made on
// http1's normalized path) equals the one made on the path a Go net/http
// backend decodes from what wsgate forwards (URL.Path), and the stripped
// target forwarded decodes to that path minus the prefix. So an encoding
// (/%61pi, /%77s, %2e%2e) can never send a request elsewhere than where its
// decoded path says.
func FuzzRouteDecision(f *testing.F) {
	for _, s := range []string{
		"/api/echo", "/%61pi/echo", "/%61%70%69", "/API/x", "/api%2Fecho", "/apix",
		"/x/../api/echo", "/%2e%2e/api", "/api/./v1/u", "/api/v1/../v1/u?q=1", "/ws",
		"/%77s", "/ws/%2E%2E/api", "/socket.io/?EIO=4", "/%73ocket.io/", "/a.b/%7Ec/d",
		"/a%2eb/~c", "/%3Bapi", "/api%3B/x", "/api/%25", "//api", "/api//v1",
	} {
		f.Add(s)
	}
	bal := routeFuzzBalancer(f)
	f.Fuzz(func(t *testing.T, target string) {
		if strings.ContainsAny(target, " \r\n") || !strings.HasPrefix(target, "/") {
			return
		}
		head := []byte("GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n")
		var req http1.Request
		if req.Parse(head, nil) != nil {
			return // refused (400, 414): never forwarded
		}
		path := reqPath(&req, head)
		pool, strip := bal.Route([]byte("x"), path)
		sent := string(req.AppendTarget(nil, head, 0)) // what an unstripped route sends
		u, err := url.ParseRequestURI(sent)
		if err != nil {
			t.Fatalf("%q: wsgate forwards %q, which net/url refuses: %v", target, sent, err)
		}
		opool, ostrip := bal.Route([]byte("x"), []byte(u.Path))
		if pool != opool {
			t.Fatalf("%q: wsgate routes %q to %s, a decoding backend's path %q goes to %s",
				target, path, name(pool), u.Path, name(opool))
		}
		if strip == 0 {
			if ostrip != 0 {
				t.Fatalf("%q: strip %d, oracle %d", target, strip, ostrip)
			}
			return
		}
		fwd := string(req.AppendTarget(nil, head, strip))
		fu, err := url.ParseRequestURI(fwd)
		if err != nil {
			t.Fatalf("%q: stripped target %q refused by net/url: %v", target, fwd, err)
		}
		want := u.Path[ostrip:]
		if want == "" || want[0] != '/' {
			want = "/" + want
		}
		if fu.Path != want {
			t.Fatalf("%q: the backend of %s decodes %q from the stripped target %q, want %q",
				target, name(pool), fu.Path, fwd, want)
		}
	})
}

func name(p *balancer.Pool) string {
	if p == nil {
		return "<none>"
	}
	return p.Name()
}
