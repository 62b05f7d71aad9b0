// wsgate: the vendored tree is upstream's release plus patch/*.patch,
// nothing else (WSGATE.md, "Updating netpoll").

package netpoll

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The patches applied in reverse to the vendored tree give back upstream's
// release, file for file: every file of patch/upstream-TAG.sha256 but
// those patch/omitted.txt names has its hash there, and the only other
// files are wsgate's own (WSGATE.md, patch/, and test files that say so
// on their first line). Offline: no copy of upstream is needed.
func TestVendoredIsUpstreamPlusPatches(t *testing.T) {
	tree := readVendored(t)
	patches := readPatches(t)
	manifest, omitted := readManifest(t)
	if err := checkVendored(tree, patches, manifest, omitted); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d files, upstream + %d patches", len(tree), len(patches))

	// The check bites: one byte changed in a patched file, in a new file
	// of a patch, or in an unpatched file, or a stray code file, fails it.
	for _, c := range []struct{ name, file string }{
		{"patched file", "poll_default_linux.go"},
		{"file a patch adds", "poll_park_linux.go"},
		{"unpatched file", "nocopy.go"},
		{"stray code file", "stray.go"},
	} {
		bad := make(map[string][]byte, len(tree))
		for k, v := range tree {
			bad[k] = v
		}
		if b, ok := bad[c.file]; ok {
			b = append([]byte(nil), b...)
			i := bytes.LastIndex(b, []byte("return"))
			b[i] = 'R'
			bad[c.file] = b
		} else {
			bad[c.file] = []byte("package netpoll\n")
		}
		if err := checkVendored(bad, patches, manifest, omitted); err == nil {
			t.Errorf("a changed %s (%s) passed the check", c.name, c.file)
		}
	}
}

type filePatch struct {
	oldPath, newPath string // "" for /dev/null
	hunks            []hunk
}

type hunk struct {
	oldStart, newStart int      // 1-based, as in the @@ line
	old, new           []string // pre- and post-image lines, each with its "\n" (none on a last line without one)
}

// readVendored reads the module's files (build outputs and go test's
// artifacts aside) into memory, keyed by slash path.
func readVendored(t *testing.T) map[string][]byte {
	t.Helper()
	tree := map[string][]byte{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		for _, pat := range []string{"*.test", "*.out", "*.prof", "*.orig", "*.rej"} {
			if ok, _ := filepath.Match(pat, d.Name()); ok {
				return nil
			}
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		tree[filepath.ToSlash(path)] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func readPatches(t *testing.T) [][]filePatch {
	t.Helper()
	names, err := filepath.Glob("patch/[0-9]*.patch")
	if err != nil || len(names) == 0 {
		t.Fatalf("no patch/*.patch: %v", err)
	}
	sort.Strings(names)
	var all [][]filePatch
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		fps, err := parsePatch(b)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		all = append(all, fps)
	}
	return all
}

func readManifest(t *testing.T) (manifest map[string]string, omitted map[string]bool) {
	t.Helper()
	names, _ := filepath.Glob("patch/upstream-*.sha256")
	if len(names) != 1 {
		t.Fatalf("want one patch/upstream-TAG.sha256, have %v", names)
	}
	b, err := os.ReadFile(names[0])
	if err != nil {
		t.Fatal(err)
	}
	manifest = map[string]string{}
	for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || len(f[0]) != 64 {
			t.Fatalf("%s:%d: %q is not HASH  PATH", names[0], i+1, line)
		}
		manifest[f[1]] = f[0]
	}
	b, err = os.ReadFile("patch/omitted.txt")
	if err != nil {
		t.Fatal(err)
	}
	omitted = map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			if manifest[line] == "" {
				t.Fatalf("patch/omitted.txt: %s is not a file of upstream's release", line)
			}
			omitted[line] = true
		}
	}
	return manifest, omitted
}

// checkVendored reverse-applies the patches, last first, to a copy of
// tree and compares the result with upstream's manifest.
func checkVendored(tree map[string][]byte, patches [][]filePatch, manifest map[string]string, omitted map[string]bool) error {
	files := make(map[string][]byte, len(tree))
	for k, v := range tree {
		if k == "WSGATE.md" || strings.HasPrefix(k, "patch/") {
			continue
		}
		files[k] = v
	}
	for i := len(patches) - 1; i >= 0; i-- {
		for _, fp := range patches[i] {
			if err := reverse(files, fp); err != nil {
				return fmt.Errorf("patch %d reversed: %w", i+1, err)
			}
		}
	}
	var errs []string
	for path, want := range manifest {
		b, ok := files[path]
		switch {
		case omitted[path]:
			if ok {
				errs = append(errs, path+": vendored, though patch/omitted.txt names it")
			}
		case !ok:
			errs = append(errs, path+": upstream's file is missing")
		default:
			sum := sha256.Sum256(b)
			if got := hex.EncodeToString(sum[:]); got != want {
				errs = append(errs, path+": differs from upstream beyond patch/*.patch")
			}
		}
	}
	for path, b := range files {
		if _, ok := manifest[path]; ok {
			continue
		}
		if strings.HasSuffix(path, "_test.go") && bytes.HasPrefix(b, []byte("// wsgate")) {
			continue // wsgate's tests
		}
		errs = append(errs, path+": not upstream's, not made by a patch, not a wsgate test (first line // wsgate ...)")
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return fmt.Errorf("the vendored tree is not upstream + patch/*.patch:\n\t%s", strings.Join(errs, "\n\t"))
	}
	return nil
}

// reverse undoes one file's patch in files, strictly: each hunk's
// post-image must be where the hunk says, line for line.
func reverse(files map[string][]byte, fp filePatch) error {
	if fp.newPath == "" {
		return fmt.Errorf("%s: deletions are not supported", fp.oldPath)
	}
	b, ok := files[fp.newPath]
	if !ok {
		return fmt.Errorf("%s: missing", fp.newPath)
	}
	lines := splitLines(b)
	// Hunks from the last, so earlier line numbers stay valid.
	for i := len(fp.hunks) - 1; i >= 0; i-- {
		h := fp.hunks[i]
		at := h.newStart - 1
		if len(h.new) == 0 {
			at = h.newStart // an empty post-image is "after line newStart"
		}
		if at < 0 || at+len(h.new) > len(lines) {
			return fmt.Errorf("%s: hunk @@ +%d does not fit", fp.newPath, h.newStart)
		}
		for j, l := range h.new {
			if lines[at+j] != l {
				return fmt.Errorf("%s: hunk @@ +%d: line %d is %q, the patch has %q", fp.newPath, h.newStart, at+j+1, lines[at+j], l)
			}
		}
		lines = append(lines[:at], append(append([]string(nil), h.old...), lines[at+len(h.new):]...)...)
	}
	if fp.oldPath == "" { // the patch made the file
		if len(lines) != 0 {
			return fmt.Errorf("%s: more than the patch added", fp.newPath)
		}
		delete(files, fp.newPath)
		return nil
	}
	if fp.oldPath != fp.newPath {
		delete(files, fp.newPath)
	}
	files[fp.oldPath] = []byte(strings.Join(lines, ""))
	return nil
}

func splitLines(b []byte) []string {
	var lines []string
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			lines = append(lines, string(b))
			break
		}
		lines = append(lines, string(b[:i+1]))
		b = b[i+1:]
	}
	return lines
}

// parsePatch reads a unified diff (git's format, or diff -u's): text
// before the first file is a description.
func parsePatch(b []byte) ([]filePatch, error) {
	var fps []filePatch
	var cur *filePatch
	var h *hunk
	var lastOld, lastNew bool // which image(s) the previous hunk line went to
	oldLeft, newLeft := 0, 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	path := func(s string) string {
		s = strings.TrimSpace(strings.SplitN(s, "\t", 2)[0])
		if s == "/dev/null" {
			return ""
		}
		if i := strings.IndexByte(s, '/'); i >= 0 {
			return s[i+1:] // strip a/ or b/ (-p1)
		}
		return s
	}
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if h != nil && (oldLeft > 0 || newLeft > 0) {
			if line == "" {
				line = " " // an empty context line some tools write without its space
			}
			text := line[1:] + "\n"
			switch line[0] {
			case ' ':
				h.old, h.new = append(h.old, text), append(h.new, text)
				oldLeft, newLeft = oldLeft-1, newLeft-1
				lastOld, lastNew = true, true
			case '-':
				h.old = append(h.old, text)
				oldLeft--
				lastOld, lastNew = true, false
			case '+':
				h.new = append(h.new, text)
				newLeft--
				lastOld, lastNew = false, true
			default:
				return nil, fmt.Errorf("line %d: %q inside a hunk", n, line)
			}
			if oldLeft < 0 || newLeft < 0 {
				return nil, fmt.Errorf("line %d: hunk longer than its @@ line says", n)
			}
			continue
		}
		switch {
		case strings.HasPrefix(line, `\ `): // "\ No newline at end of file"
			if h == nil {
				return nil, fmt.Errorf("line %d: %q outside a hunk", n, line)
			}
			if lastOld {
				h.old[len(h.old)-1] = strings.TrimSuffix(h.old[len(h.old)-1], "\n")
			}
			if lastNew {
				h.new[len(h.new)-1] = strings.TrimSuffix(h.new[len(h.new)-1], "\n")
			}
		case strings.HasPrefix(line, "--- "):
			fps = append(fps, filePatch{oldPath: path(line[4:])})
			cur, h = &fps[len(fps)-1], nil
			if !sc.Scan() || !strings.HasPrefix(sc.Text(), "+++ ") {
				return nil, fmt.Errorf("line %d: --- without +++", n)
			}
			n++
			cur.newPath = path(sc.Text()[4:])
		case strings.HasPrefix(line, "@@ "):
			if cur == nil {
				return nil, fmt.Errorf("line %d: hunk before a file", n)
			}
			var o0, o1, n0, n1 int
			f := strings.Fields(line)
			if len(f) < 3 {
				return nil, fmt.Errorf("line %d: bad @@ line", n)
			}
			var err error
			if o0, o1, err = rangeOf(f[1], '-'); err == nil {
				n0, n1, err = rangeOf(f[2], '+')
			}
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", n, err)
			}
			cur.hunks = append(cur.hunks, hunk{oldStart: o0, newStart: n0})
			h = &cur.hunks[len(cur.hunks)-1]
			oldLeft, newLeft = o1, n1
		default:
			// description, "diff --git", "index", "new file mode" ...
			h = nil
		}
	}
	if oldLeft > 0 || newLeft > 0 {
		return nil, fmt.Errorf("the last hunk is cut short")
	}
	if len(fps) == 0 {
		return nil, fmt.Errorf("no file in it")
	}
	return fps, sc.Err()
}

// rangeOf parses "-l,s" or "+l" (s = 1).
func rangeOf(s string, sign byte) (start, length int, err error) {
	if len(s) < 2 || s[0] != sign {
		return 0, 0, fmt.Errorf("bad range %q", s)
	}
	a, b, ok := strings.Cut(s[1:], ",")
	if start, err = strconv.Atoi(a); err != nil {
		return 0, 0, fmt.Errorf("bad range %q", s)
	}
	length = 1
	if ok {
		if length, err = strconv.Atoi(b); err != nil {
			return 0, 0, fmt.Errorf("bad range %q", s)
		}
	}
	return start, length, nil
}
