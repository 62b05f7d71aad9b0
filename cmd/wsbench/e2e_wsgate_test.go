package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/bench"
)

// startWsgate builds cmd/wsgate and runs it in front of backend. wsbench
// only runs the binary, as any user would; it imports none of its code.
func startWsgate(t *testing.T, backend string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds cmd/wsgate")
	}
	bin := filepath.Join(t.TempDir(), "wsgate")
	if out, err := exec.Command("go", "build", "-o", bin, "../wsgate").CombinedOutput(); err != nil {
		t.Skipf("cmd/wsgate does not build here, nothing to measure through: %v\n%s", err, out)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "-l", addr, "-b", backend, "--admin", "off")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("wsgate did not listen on %s:\n%s", addr, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The echo backend through wsgate: probe says it works, echo and connect
// run without errors.
func TestThroughWsgate(t *testing.T) {
	backend := startEcho(t)
	proxy := startWsgate(t, backend)
	url := fmt.Sprintf("ws://%s/ws", proxy)

	code, stdout, _ := wsbench(t, "probe", "--backend", backend, url)
	if code != 0 || !strings.Contains(stdout, "result: works") {
		t.Errorf("probe through wsgate: exit %d\n%s", code, stdout)
	}
	code, stdout, stderr := wsbench(t, "echo", "-c", "8", "-d", "1s", "-q", "--json", url)
	var res bench.Result
	if code != 0 || json.Unmarshal([]byte(stdout), &res) != nil || res.Messages == 0 || res.Errors != 0 {
		t.Errorf("echo through wsgate: exit %d, %+v\n%s", code, res.ErrorKinds, stderr)
	}
	code, stdout, _ = wsbench(t, "connect", "-c", "200", "--ramp", "1000/s", "-d", "500ms", "-q", "--source-ips", "127.0.0.1-127.0.0.4", url)
	if code != 0 || !strings.Contains(stdout, "connected 200, failed 0, dropped 0") {
		t.Errorf("connect through wsgate: exit %d\n%s", code, stdout)
	}
}
