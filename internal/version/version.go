// Package version says which build a binary is: the version the Makefile
// stamps (-ldflags -X), and the commit and Go version the Go toolchain
// records in every binary (debug.ReadBuildInfo).
package version

import (
	"fmt"
	"runtime/debug"
)

// Version and Commit are set at link time by the Makefile:
//
//	-ldflags "-X github.com/ledgerd/ledger/internal/version.Version=v1.2.3
//	          -X github.com/ledgerd/ledger/internal/version.Commit=<sha>"
//
// A binary built without them (go run, go build by hand) says the module
// version and the VCS revision Go recorded, if any (not with
// -buildvcs=false), else "devel" and no commit.
var Version, Commit string

// Info is a binary's build.
type Info struct {
	Version string `json:"version"`
	// Commit is the VCS revision built, "" when Go recorded none (a build
	// outside a checkout, or with -buildvcs=false); Modified says the tree
	// had uncommitted changes.
	Commit   string `json:"commit,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
}

// Get returns this binary's build.
func Get() Info {
	info := Info{Version: Version, Commit: Commit}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return fill(info)
	}
	info.Go = bi.GoVersion
	if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		info.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if info.Commit == "" {
				info.Commit = s.Value
			}
		case "vcs.modified":
			info.Modified = info.Modified || s.Value == "true"
		}
	}
	return fill(info)
}

func fill(info Info) Info {
	if info.Version == "" {
		info.Version = "devel"
	}
	if info.Go == "" {
		info.Go = "unknown"
	}
	return info
}

// String is the build on one line: "v1.2.3 (commit abc123, modified) go1.26".
func (i Info) String() string {
	commit := "commit unknown"
	if i.Commit != "" {
		commit = "commit " + i.Commit
		if i.Modified {
			commit += ", modified"
		}
	}
	return fmt.Sprintf("%s (%s) %s", i.Version, commit, i.Go)
}
