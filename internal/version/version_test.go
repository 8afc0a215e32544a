package version

import (
	"strings"
	"testing"
)

// TestGetStamped: what the Makefile stamps wins over what Go recorded.
func TestGetStamped(t *testing.T) {
	defer func(v, c string) { Version, Commit = v, c }(Version, Commit)
	Version, Commit = "v1.2.3", "0123abcd"
	got := Get()
	if got.Version != "v1.2.3" || got.Commit != "0123abcd" || !strings.HasPrefix(got.Go, "go") {
		t.Errorf("Get() = %+v, want v1.2.3, commit 0123abcd and a Go version", got)
	}
	if s := got.String(); !strings.HasPrefix(s, "v1.2.3 (commit 0123abcd") || !strings.HasSuffix(s, got.Go) {
		t.Errorf("String() = %q", s)
	}
}

// TestGetUnstamped: a build without -ldflags still says something: "devel"
// (a test binary records no module version) and no commit.
func TestGetUnstamped(t *testing.T) {
	defer func(v, c string) { Version, Commit = v, c }(Version, Commit)
	Version, Commit = "", ""
	got := Get()
	if got.Version == "" || got.Go == "" {
		t.Errorf("Get() = %+v, want a version and a Go version", got)
	}
	if got.Commit == "" && !strings.Contains(got.String(), "commit unknown") {
		t.Errorf("String() = %q, want it to say the commit is unknown", got.String())
	}
}
