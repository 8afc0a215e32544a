package memtune

import (
	"testing"
	"testing/fstest"
)

// The mounts of one host's /proc/self/mountinfo: cgroup v1 controllers
// beside a unified (v2) hierarchy with no memory controller, as on the
// machine these tests were written on, and a v2-only host's.
const (
	mountsHybrid = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	mountsV2 = `22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`
	gib = 1 << 30
	mib = 1 << 20
)

func TestCgroupLimit(t *testing.T) {
	for _, c := range []struct {
		name  string
		files fstest.MapFS
		want  uint64 // 0: no limit
	}{
		{"v2, the container's own namespace", fstest.MapFS{
			"proc/self/cgroup":          file("0::/\n"),
			"proc/self/mountinfo":       file(mountsV2),
			"sys/fs/cgroup/memory.max":  file("1073741824\n"),
			"sys/fs/cgroup/memory.high": file("536870912\n"), // a throttle, not a kill: not the limit
		}, gib},
		{"v2, a parent's limit binds", fstest.MapFS{
			"proc/self/cgroup":                              file("0::/kubepods/pod1/ctr\n"),
			"proc/self/mountinfo":                           file(mountsV2),
			"sys/fs/cgroup/kubepods/pod1/ctr/memory.max":    file("max\n"),
			"sys/fs/cgroup/kubepods/pod1/memory.max":        file("536870912\n"),
			"sys/fs/cgroup/kubepods/memory.max":             file("2147483648\n"),
			"sys/fs/cgroup/kubepods/pod1/ctr/memory.stat":   file("anon 0\n"),
			"sys/fs/cgroup/kubepods/pod1/ctr/cgroup.procs":  file("1\n"),
			"sys/fs/cgroup/kubepods/pod1/ctr/memory.events": file("oom 0\n"),
		}, 512 * mib},
		{"v2, the child's limit is the smaller", fstest.MapFS{
			"proc/self/cgroup":                    file("0::/app/worker\n"),
			"proc/self/mountinfo":                 file(mountsV2),
			"sys/fs/cgroup/app/worker/memory.max": file("268435456\n"),
			"sys/fs/cgroup/app/memory.max":        file("1073741824\n"),
		}, 256 * mib},
		{"v2, max all the way up", fstest.MapFS{
			"proc/self/cgroup":             file("0::/app\n"),
			"proc/self/mountinfo":          file(mountsV2),
			"sys/fs/cgroup/app/memory.max": file("max\n"),
		}, 0},
		{"v1 memory beside v2 without it (hybrid)", fstest.MapFS{
			"proc/self/cgroup":    file("9:name=systemd:/\n4:memory:/process_api/8a47\n1:cpu:/\n0::/\n"),
			"proc/self/mountinfo": file(mountsHybrid),
			"sys/fs/cgroup/memory/process_api/8a47/memory.stat":           file("cache 0\nrss 0\nhierarchical_memory_limit 1073741824\nhierarchical_memsw_limit 9223372036854771712\n"),
			"sys/fs/cgroup/memory/process_api/8a47/memory.limit_in_bytes": file("9223372036854771712\n"),
		}, gib},
		{"v1 without memory.stat: limit_in_bytes", fstest.MapFS{
			"proc/self/cgroup":                               file("4:memory:/job\n"),
			"proc/self/mountinfo":                            file(mountsHybrid),
			"sys/fs/cgroup/memory/job/memory.limit_in_bytes": file("805306368\n"),
		}, 768 * mib},
		{"v1, no limit", fstest.MapFS{
			"proc/self/cgroup":                           file("4:memory:/\n"),
			"proc/self/mountinfo":                        file(mountsHybrid),
			"sys/fs/cgroup/memory/memory.stat":           file("hierarchical_memory_limit 9223372036854771712\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes": file("9223372036854771712\n"),
		}, 0},
		{"v1 mounted from the container's own cgroup", fstest.MapFS{
			"proc/self/cgroup":                           file("5:memory,hugetlb:/docker/abc\n"),
			"proc/self/mountinfo":                        file("40 31 0:32 /docker/abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory,hugetlb\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes": file("2147483648\n"),
		}, 2 * gib},
		{"a cgroup outside the mounted part of its hierarchy", fstest.MapFS{
			"proc/self/cgroup":                           file("5:memory:/other\n"),
			"proc/self/mountinfo":                        file("40 31 0:32 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes": file("2147483648\n"),
		}, 0},
		{"a mount point with a space", fstest.MapFS{
			"proc/self/cgroup":         file("0::/\n"),
			"proc/self/mountinfo":      file("35 24 0:30 / /run/my\\040cgroup rw - cgroup2 cgroup2 rw\n"),
			"run/my cgroup/memory.max": file("1073741824\n"),
		}, gib},
		{"v2 mounted from a pod's cgroup: nothing above the mount point is read", fstest.MapFS{
			"proc/self/cgroup":             file("0::/kubepods/pod1/ctr\n"),
			"proc/self/mountinfo":          file("35 24 0:30 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"),
			"sys/fs/cgroup/ctr/memory.max": file("max\n"),
			"sys/fs/cgroup/memory.max":     file("1073741824\n"),
			"sys/fs/memory.max":            file("4096\n"),
		}, gib},
		{"v2 mounted at /", fstest.MapFS{
			"proc/self/cgroup":    file("0::/a/b\n"),
			"proc/self/mountinfo": file("35 24 0:30 / / rw - cgroup2 cgroup2 rw\n"),
			"a/b/memory.max":      file("max\n"),
			"a/memory.max":        file("134217728\n"),
		}, 128 * mib},
		{"a mount root is a whole segment", fstest.MapFS{
			"proc/self/cgroup":                               file("5:memory:/docker/abcdef\n"),
			"proc/self/mountinfo":                            file("40 31 0:32 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes":     file("2147483648\n"),
			"sys/fs/cgroup/memory/def/memory.limit_in_bytes": file("4096\n"),
		}, 0},
		{"a cgroup outside the namespace (..) names no file", fstest.MapFS{
			"proc/self/cgroup":         file("0::/../../fs/other\n"),
			"proc/self/mountinfo":      file(mountsV2),
			"sys/fs/other/memory.max":  file("4096\n"),
			"sys/fs/cgroup/memory.max": file("max\n"),
		}, 0},
		{"a sibling through .. is not read", fstest.MapFS{
			"proc/self/cgroup":                 file("0::/../sibling\n"),
			"proc/self/mountinfo":              file("35 24 0:30 / /sys/fs/cgroup/ctr rw - cgroup2 cgroup2 rw\n"),
			"sys/fs/cgroup/sibling/memory.max": file("4096\n"),
		}, 0},
		{"a limit of 0 is none", fstest.MapFS{
			"proc/self/cgroup":         file("0::/\n"),
			"proc/self/mountinfo":      file(mountsV2),
			"sys/fs/cgroup/memory.max": file("0\n"),
		}, 0},
		{"garbage in the files", fstest.MapFS{
			"proc/self/cgroup":         file("nonsense\n0::/\n::\n"),
			"proc/self/mountinfo":      file("short line\n1 2 3 4 5 6 7 8\n" + mountsV2),
			"sys/fs/cgroup/memory.max": file("lots\n"),
		}, 0},
		{"no /proc", fstest.MapFS{}, 0},
		{"no cgroup file system", fstest.MapFS{
			"proc/self/cgroup":    file("0::/\n"),
			"proc/self/mountinfo": file("22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"),
		}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := cgroupLimit(c.files)
			if ok != (c.want != 0) || got != c.want {
				t.Errorf("cgroupLimit = %d, %v; want %d", got, ok, c.want)
			}
		})
	}
}

func TestCgroupFileTooLarge(t *testing.T) {
	big := make([]byte, cgroupFileMax+1)
	files := fstest.MapFS{
		"proc/self/cgroup":         file("0::/\n"),
		"proc/self/mountinfo":      &fstest.MapFile{Data: append([]byte(mountsV2), big...)},
		"sys/fs/cgroup/memory.max": file("1073741824\n"),
	}
	if got, ok := cgroupLimit(files); ok {
		t.Fatalf("cgroupLimit = %d from a mountinfo over %d bytes", got, cgroupFileMax)
	}
}

func TestCeiling(t *testing.T) {
	for _, c := range []struct{ limit, want uint64 }{
		{gib, gib - gib/10},            // a tenth below
		{16 * gib, 16*gib - 16*gib/10}, //
		{512 * mib, 448 * mib},         // at least 64 MiB below
		{256 * mib, 192 * mib},         //
		{128 * mib, 96 * mib},          // at most a quarter below
		{100 * mib, 75 * mib},          //
	} {
		if got := Ceiling(c.limit); got != c.want {
			t.Errorf("Ceiling(%d) = %d, want %d", c.limit, got, c.want)
		}
	}
}

func file(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }

// FuzzCgroupLimit: whatever the two files of /proc hold, the reader neither
// panics nor returns a limit that no memory file holds.
func FuzzCgroupLimit(f *testing.F) {
	f.Add("0::/app\n", mountsV2)
	f.Add("4:memory:/process_api/8a47\n0::/\n", mountsHybrid)
	f.Add("5:memory:/docker/abc\n", "40 31 0:32 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n")
	f.Add("0::/../x\n", "35 24 0:30 / /a\\040b rw shared:9 - cgroup2 cgroup2 rw\n")
	f.Fuzz(func(t *testing.T, groups, mounts string) {
		files := fstest.MapFS{
			"proc/self/cgroup":                                  file(groups),
			"proc/self/mountinfo":                               file(mounts),
			"sys/fs/cgroup/memory.max":                          file("1073741824\n"),
			"sys/fs/cgroup/app/memory.max":                      file("max\n"),
			"sys/fs/cgroup/memory/process_api/8a47/memory.stat": file("hierarchical_memory_limit 536870912\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes":        file("268435456\n"),
		}
		if got, ok := cgroupLimit(files); ok && got != gib && got != 512*mib && got != 256*mib {
			t.Fatalf("cgroupLimit = %d, a limit no file holds", got)
		}
	})
}
