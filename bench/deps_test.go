package bench

import (
	"os/exec"
	"strings"
	"testing"
)

// bench checks the proxy honestly only if it shares none of its code:
// no package of this module may be among its dependencies.
func TestImportsNothingOfTheProxy(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").CombinedOutput()
	if err != nil {
		t.Skipf("go list unavailable: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "github.com/wsgate/wsgate/") && p != "github.com/wsgate/wsgate/bench" {
			t.Errorf("bench depends on %s", p)
		}
	}
}
