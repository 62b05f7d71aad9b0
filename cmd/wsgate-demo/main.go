// Command wsgate-demo is a tiny HTTP + WebSocket backend for trying wsgate
// by hand (`make run` starts two of them behind the proxy).
//
//	wsgate-demo -l 127.0.0.1:3001 -name node-a
//
// Endpoints (every response carries "X-Backend: <name>"):
//
//	/        HTML page that opens ws://<location.host>/ws and shows echoes
//	/ws      WebSocket echo; first sends "hello from <name>"
//	/health  200 "ok"
//	/echo    the request back as text/plain: request line, headers, body
//	/name    the node name
//	*        "node <name>: <method> <path>"
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// maxMessage bounds one WebSocket message; larger ones close the connection.
const maxMessage = 16 << 20

func main() {
	listen := flag.String("l", "127.0.0.1:3001", "listen `address`")
	name := flag.String("name", "", "node `name` reported to clients (default: the listen address)")
	flag.Parse()
	if *name == "" {
		*name = *listen
	}
	log.SetFlags(0)
	log.SetPrefix("wsgate-demo: ")

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{
		Handler:           newHandler(*name),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	log.Printf("node %s listening on http://%s (ws://%s/ws)", *name, ln.Addr(), ln.Addr())

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		log.Fatal(err)
	case <-ctx.Done():
	}
	// Hijacked WebSocket connections end with the process; plain requests
	// get a second to finish.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Print(err)
	}
	log.Printf("node %s stopped", *name)
}

// newHandler returns the demo's routes for the node called name.
func newHandler(name string) http.Handler {
	up := &websocket.Upgrader{
		ReadBufferSize:  4096,
		WriteBufferSize: 4096,
		// A demo behind a proxy on another port: accept any Origin.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := pageTmpl.Execute(w, name); err != nil {
			log.Print(err)
		}
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		// Upgrade writes its own 101 head (and the error response on
		// failure), so X-Backend has to be handed over.
		conn, err := up.Upgrade(w, r, http.Header{"X-Backend": {name}})
		if err != nil {
			return
		}
		defer conn.Close()
		serveEcho(conn, name)
	})
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("/name", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, name)
	})
	mux.HandleFunc("/echo", serveHTTPEcho)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "node %s: %s %s\n", name, r.Method, r.URL.Path)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		mux.ServeHTTP(w, r)
	})
}

// serveEcho greets the client, then sends back every message with its
// type (text or binary), streaming it so large messages are not buffered
// whole. It returns when the client closes or an error occurs.
func serveEcho(conn *websocket.Conn, name string) {
	conn.SetReadLimit(maxMessage)
	if err := conn.WriteMessage(websocket.TextMessage, []byte("hello from "+name)); err != nil {
		return
	}
	for {
		typ, r, err := conn.NextReader()
		if err != nil {
			return // close frame, read limit or broken connection
		}
		w, err := conn.NextWriter(typ)
		if err != nil {
			return
		}
		if _, err := io.Copy(w, r); err != nil {
			return
		}
		if err := w.Close(); err != nil {
			return
		}
	}
}

// serveHTTPEcho writes back the request as the backend saw it: the request
// line, the remote address, Host and every header (sorted), a blank line,
// then the body.
func serveHTTPEcho(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "%s %s %s\n", r.Method, r.RequestURI, r.Proto)
	fmt.Fprintf(w, "Remote-Addr: %s\n", r.RemoteAddr)
	fmt.Fprintf(w, "Host: %s\n", r.Host)
	for _, k := range slices.Sorted(maps.Keys(r.Header)) {
		for _, v := range r.Header[k] {
			fmt.Fprintf(w, "%s: %s\n", k, v)
		}
	}
	io.WriteString(w, "\n")
	io.Copy(w, r.Body)
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>wsgate demo — {{.}}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; }
#log { font-family: ui-monospace, monospace; white-space: pre-wrap; border: 1px solid #ccc; padding: .5em; height: 24em; overflow-y: auto; }
.node { font-weight: bold; }
</style>
</head>
<body>
<h1>wsgate demo</h1>
<p>Page served by <span class="node">{{.}}</span>.
WebSocket: <span id="state">connecting…</span>, answered by <span id="node" class="node">?</span>.</p>
<div id="log"></div>
<script>
(function () {
  const log = document.getElementById("log");
  const state = document.getElementById("state");
  const node = document.getElementById("node");
  function line(s) {
    log.textContent += new Date().toLocaleTimeString() + "  " + s + "\n";
    log.scrollTop = log.scrollHeight;
  }
  function connect() {
    // location.host keeps the proxy's host and port, so this works through wsgate.
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + "/ws");
    let timer = null, n = 0;
    ws.onopen = function () {
      state.textContent = "open";
      line("connected to " + ws.url);
      timer = setInterval(function () { ws.send("ping " + (++n)); }, 1000);
    };
    ws.onmessage = function (ev) {
      const m = /^hello from (.*)$/.exec(ev.data);
      if (m) node.textContent = m[1];
      line("← " + ev.data + "  [" + node.textContent + "]");
    };
    ws.onclose = function (ev) {
      clearInterval(timer);
      state.textContent = "closed (" + ev.code + "), reconnecting…";
      line("closed: code " + ev.code + (ev.reason ? " " + ev.reason : ""));
      setTimeout(connect, 2000);
    };
  }
  connect();
})();
</script>
</body>
</html>
`))
