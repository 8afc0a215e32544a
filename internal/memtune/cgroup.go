package memtune

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Bounds of what the cgroup's files are read for.
const (
	// cgroupFileMax bounds a file read: /proc/self/mountinfo of a busy
	// host runs to tens of kB; none that matters is larger.
	cgroupFileMax = 1 << 20
	// cgroupUnlimited: a limit at or above it is none. cgroup v1 writes
	// "no limit" as the largest multiple of the page size below 2^63.
	cgroupUnlimited = 1 << 62
	// ceilingSlack is the least kept below a cgroup's limit of 256 MiB or
	// more for what is not Go's memory: the binary's text and data, the
	// page cache the embedded NATS server's files charge to the cgroup,
	// thread stacks. Below 256 MiB a quarter of the limit is kept.
	ceilingSlack = 64 << 20
)

// CgroupLimit is the memory limit of the cgroup this process runs in: the
// smallest memory.max from its cgroup up to the v2 hierarchy's root, or v1's
// hierarchical_memory_limit (limit_in_bytes where memory.stat lacks it).
// It returns false when there is none, or none that can be read: not Linux,
// no cgroup file system mounted, or a limit of "max".
func CgroupLimit() (uint64, bool) { return cgroupLimit(os.DirFS("/")) }

// Ceiling is the soft memory limit for a cgroup whose limit is limit: a
// tenth below it, at least ceilingSlack below, and at most a quarter. The
// kernel kills a process that goes over its cgroup's limit; Go's soft
// limit makes the collector work harder before it gets there.
func Ceiling(limit uint64) uint64 {
	return limit - max(limit/10, min(ceilingSlack, limit/4))
}

// cgroupLimit reads the limit from root, the file system's root: from the
// first cgroup mount, in mountinfo's order, that holds one for the process's
// cgroup. The memory controller is attached to one hierarchy only (v1's
// memory, or the unified v2), so only that one has the files.
func cgroupLimit(root fs.FS) (uint64, bool) {
	groups, err := readSmall(root, "proc/self/cgroup")
	if err != nil {
		return 0, false
	}
	mounts, err := readSmall(root, "proc/self/mountinfo")
	if err != nil {
		return 0, false
	}
	v2path, v1path, v1ok := "", "", false
	for line := range strings.Lines(string(groups)) {
		// hierarchy-id:controllers:path
		f := strings.SplitN(strings.TrimRight(line, "\n"), ":", 3)
		if len(f) != 3 {
			continue
		}
		switch {
		case f[0] == "0" && f[1] == "":
			v2path = f[2]
		case hasField(f[1], "memory"):
			v1path, v1ok = f[2], true
		}
	}
	for line := range strings.Lines(string(mounts)) {
		m, ok := parseMount(line)
		if !ok {
			continue
		}
		switch {
		case m.fstype == "cgroup2" && v2path != "":
			if dir, ok := m.dirOf(v2path); ok {
				if limit, ok := v2Limit(root, m.point, dir); ok {
					return limit, true
				}
			}
		case m.fstype == "cgroup" && v1ok && hasField(m.super, "memory"):
			if dir, ok := m.dirOf(v1path); ok {
				if limit, ok := v1Limit(root, dir); ok {
					return limit, true
				}
			}
		}
	}
	return 0, false
}

// v2Limit is the smallest memory.max from dir up to the mount point: a
// parent's limit binds its children.
func v2Limit(root fs.FS, point, dir string) (uint64, bool) {
	limit, found := uint64(0), false
	for {
		if b, err := readSmall(root, rel(path.Join(dir, "memory.max"))); err == nil {
			if n, ok := parseLimit(string(b)); ok && (!found || n < limit) {
				limit, found = n, true
			}
		}
		if dir == point || !under(dir, point) {
			return limit, found
		}
		dir = path.Dir(dir)
	}
}

// v1Limit is the memory controller's limit of dir, its parents' included.
func v1Limit(root fs.FS, dir string) (uint64, bool) {
	if b, err := readSmall(root, rel(path.Join(dir, "memory.stat"))); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "hierarchical_memory_limit "); ok {
				return parseLimit(v)
			}
		}
	}
	b, err := readSmall(root, rel(path.Join(dir, "memory.limit_in_bytes")))
	if err != nil {
		return 0, false
	}
	return parseLimit(string(b))
}

// parseLimit reads a limit in bytes; "max" and v1's "no limit" are none.
func parseLimit(s string) (uint64, bool) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil || n == 0 || n >= cgroupUnlimited {
		return 0, false
	}
	return n, true
}

// mount is what a line of /proc/self/mountinfo says of a mount.
type mount struct {
	root, point, fstype, super string
}

// parseMount reads "id parent major:minor root point options [optional...] -
// fstype source super-options".
func parseMount(line string) (mount, bool) {
	f := strings.Fields(line)
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if len(f) < 6 || sep < 0 || sep+3 >= len(f) {
		return mount{}, false
	}
	return mount{root: unescape(f[3]), point: unescape(f[4]), fstype: f[sep+1], super: f[sep+3]}, true
}

// dirOf is where the cgroup at p (a path in the hierarchy) is under this
// mount, which shows the hierarchy from m.root down. A cgroup outside it is
// not reachable here.
//
// A path with a ".." segment is refused: /proc/self/cgroup shows one for a
// cgroup outside the process's cgroup namespace, and joined to the mount
// point it would name another cgroup's files, perhaps a smaller limit.
func (m mount) dirOf(p string) (string, bool) {
	if !strings.HasPrefix(p, "/") || slices.Contains(strings.Split(p, "/"), "..") {
		return "", false
	}
	if m.root != "/" {
		if p != m.root && !under(p, m.root) {
			return "", false
		}
		p = strings.TrimPrefix(p, m.root)
	}
	dir := path.Join(m.point, p)
	if dir != m.point && !under(dir, m.point) {
		return "", false
	}
	return dir, true
}

// under reports whether p is below dir (not dir itself): "/a/b" is under
// "/a" and "/", "/ab" is not under "/a".
func under(p, dir string) bool {
	return strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/") && p != dir
}

// unescape undoes mountinfo's octal escapes of space, tab, newline and
// backslash.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// hasField reports whether want is one of list's comma-separated fields: a
// controller in "memory,hugetlb", an option in "rw,memory".
func hasField(list, want string) bool { return slices.Contains(strings.Split(list, ","), want) }

// rel makes an absolute path one for an fs.FS rooted at "/".
func rel(p string) string { return strings.TrimPrefix(path.Clean(p), "/") }

// readSmall reads a file of at most cgroupFileMax bytes.
func readSmall(root fs.FS, name string) ([]byte, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, cgroupFileMax+1))
	if err == nil && len(b) > cgroupFileMax {
		err = fmt.Errorf("%s: more than %d bytes", name, cgroupFileMax)
	}
	return b, err
}
