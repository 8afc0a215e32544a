package testenv

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// examplesTB is the testing.TB of Examples. Only the methods the harness
// and a test server's start-up use are implemented; any other panics on
// the nil embedded TB, which fails the example that called it.
type examplesTB struct {
	testing.TB // nil

	mu       sync.Mutex
	cleanups []func()
	dirs     []string
}

// examples is Examples' TB, shared by every example of the test binary.
var examples = &examplesTB{}

// Examples returns a testing.TB for what the Example functions of a
// package share (they get no *testing.T): give it to PostgresURL,
// NATSURL, Name, etc. to start a server once for all examples. Its
// Cleanup functions run in Main after every test and example, before the
// harness's servers stop. Its Fatal and Error panic: the example calling
// it fails.
func Examples() testing.TB { return examples }

func (e *examplesTB) Helper()      {}
func (e *examplesTB) Name() string { return "Examples" }
func (e *examplesTB) Failed() bool { return false }

func (e *examplesTB) Log(args ...any)                 {}
func (e *examplesTB) Logf(format string, args ...any) {}

func (e *examplesTB) Fatal(args ...any) { panic(fmt.Sprint(args...)) }
func (e *examplesTB) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}
func (e *examplesTB) Error(args ...any) { panic(fmt.Sprint(args...)) }
func (e *examplesTB) Errorf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

func (e *examplesTB) Cleanup(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cleanups = append(e.cleanups, f)
}

func (e *examplesTB) TempDir() string {
	dir, err := os.MkdirTemp("", "ledger-example-")
	if err != nil {
		panic(fmt.Sprintf("testenv: example temp dir: %v", err))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.dirs = append(e.dirs, dir)
	return dir
}

// cleanUp runs the cleanups, last registered first, then removes the temp
// dirs.
func (e *examplesTB) cleanUp() error {
	e.mu.Lock()
	cleanups, dirs := e.cleanups, e.dirs
	e.cleanups, e.dirs = nil, nil
	e.mu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("remove example temp dir: %w", err)
		}
	}
	return nil
}
