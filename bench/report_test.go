package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func chromiumBin(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Skip("chromium not installed (apt-get install chromium); .ci/run installs it")
	return ""
}

// runChromium runs headless Chromium with the given extra arguments on page.
func runChromium(t *testing.T, bin, page string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
		"--user-data-dir=" + t.TempDir(), "--window-size=1200,900"}
	cmd := exec.CommandContext(ctx, bin, append(append(base, args...), "file://"+page)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.Bytes()
}

func echoResultForReport(t *testing.T) *Result {
	e := startEcho(t)
	cfg := quickCfg(ModeEcho, e.URL)
	cfg.Duration = 1200 * time.Millisecond
	cfg.ProgressInterval = 200 * time.Millisecond
	return runOK(t, cfg)
}

func TestReportHTMLStructure(t *testing.T) {
	res := echoResultForReport(t)
	var b bytes.Buffer
	if err := res.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, id := range []string{`id="latency-over-time"`, `id="throughput-over-time"`, `id="percentiles"`, `id="wsbench-data"`, `id="summary"`} {
		if !strings.Contains(page, id) {
			t.Errorf("report lacks %s", id)
		}
	}
	for _, banned := range []string{"http://", "https://", "<link", "src="} {
		// Only the SVG namespace and the run's own URL may look like links.
		cleaned := strings.ReplaceAll(page, "http://www.w3.org/2000/svg", "")
		if banned == "http://" {
			cleaned = strings.ReplaceAll(cleaned, res.URL, "")
		}
		if strings.Contains(cleaned, banned) {
			t.Errorf("report is not self-contained: has %q", banned)
		}
	}
	m := regexp.MustCompile(`(?s)<script type="application/json" id="wsbench-data">(.*?)</script>`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no embedded JSON")
	}
	var back Result
	if err := json.Unmarshal([]byte(m[1]), &back); err != nil || back.Messages != res.Messages {
		t.Errorf("embedded JSON: %v, messages %d want %d", err, back.Messages, res.Messages)
	}
}

// The report as a person sees it: rendered by headless Chromium, with a
// screenshot taken and the plots present in the rendered DOM.
func TestReportRendersInChromium(t *testing.T) {
	bin := chromiumBin(t)
	res := echoResultForReport(t)
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	f, err := os.Create(page)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.WriteHTML(f); err != nil {
		t.Fatal(err)
	}
	f.Close()

	shot := filepath.Join(dir, "r.png")
	runChromium(t, bin, page, "--screenshot="+shot)
	png, err := os.ReadFile(shot)
	if err != nil || len(png) < 1000 || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot: %d bytes, %v", len(png), err)
	}
	if out := os.Getenv("WSBENCH_REPORT_SHOT"); out != "" {
		os.WriteFile(out, png, 0o644) // to look at it: WSBENCH_REPORT_SHOT=/tmp/r.png
	}

	dom := string(runChromium(t, bin, page, "--dump-dom"))
	for _, id := range []string{"latency-over-time", "throughput-over-time", "percentiles"} {
		re := regexp.MustCompile(`(?s)<svg id="` + id + `".*?</svg>`)
		svg := re.FindString(dom)
		if svg == "" {
			t.Errorf("rendered DOM lacks svg#%s", id)
			continue
		}
		pts := regexp.MustCompile(`data-points="(\d+)"`).FindAllStringSubmatch(svg, -1)
		total := 0
		for _, p := range pts {
			n, _ := strconv.Atoi(p[1])
			total += n
		}
		if len(pts) == 0 || total < 2 {
			t.Errorf("svg#%s: %d series with %d points", id, len(pts), total)
		}
	}
	if !strings.Contains(dom, "p99.9") || !strings.Contains(dom, `id="wsbench-data"`) {
		t.Error("rendered DOM lacks the summary or the data")
	}
}
