package script

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// ScriptStatus is what Check found out about one entry of a script
// directory.
type ScriptStatus struct {
	Path string `json:"path"`
	// Runs reports whether the runner would execute this entry.
	Runs bool `json:"runs"`
	// Skipped marks an entry that is ignored on purpose (hidden, backup and
	// swap files, subdirectories, empty files, symlinks to /dev/null). The
	// runner logs skipped entries at debug level only; an entry that neither
	// runs nor is skipped is refused and logged at warn level.
	Skipped bool `json:"skipped"`
	// Reason is "ok" for an entry that runs and otherwise says why it does
	// not, e.g. "world-writable" or "not owned by root (uid 1000)". Several
	// problems are joined with ", ".
	Reason string `json:"reason"`
}

// entry is one scanned directory entry: its status plus what identifies
// the version of the file the status was computed from.
type entry struct {
	ScriptStatus
	stamp stamp
}

// stamp identifies one version of a refused file, so that its refusal is
// logged once and again only when the file (or the reason) changes.
type stamp struct {
	mtime  int64 // of the entry itself (the link for a symlink)
	tmtime int64 // of a symlink's target
	reason string
}

// Check reports on every entry of the script directory dir (for example
// /etc/netevd/routable.d) exactly what the runner would do with it, in the
// order the runner would consider them. It logs nothing and runs nothing.
// A missing directory returns an error that matches fs.ErrNotExist.
func Check(dir string) ([]ScriptStatus, error) {
	entries, _, err := scanDir(dir)
	if err != nil {
		return nil, err
	}
	out := make([]ScriptStatus, len(entries))
	for i, e := range entries {
		out[i] = e.ScriptStatus
	}
	return out, nil
}

// scanDir lists dir and decides for each entry whether it runs. Entries are
// in lexical (byte) order of their names. dirStamp is non-zero when the
// directory itself is not trusted; then no entry runs.
//
// For an empty directory it allocates a constant amount and stats nothing
// but the directory.
func scanDir(dir string) (entries []entry, dirStamp stamp, err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, stamp{}, fmt.Errorf("open script directory: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, stamp{}, fmt.Errorf("stat script directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, stamp{}, fmt.Errorf("script directory %s: not a directory", dir)
	}
	if p := dirProblems(fi); p != "" {
		dirStamp = stamp{mtime: mtime(fi), reason: "directory " + p}
	}
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, stamp{}, fmt.Errorf("read script directory: %w", err)
	}
	if len(names) == 0 {
		return nil, dirStamp, nil
	}
	slices.Sort(names) // Go strings compare bytewise: "10-a" < "2-a"
	entries = make([]entry, 0, len(names))
	for _, name := range names {
		e := inspect(dir, name)
		if dirStamp.reason != "" && !e.Skipped {
			e.Runs = false
			e.Reason = dirStamp.reason
			e.stamp = dirStamp
		}
		entries = append(entries, e)
	}
	return entries, dirStamp, nil
}

// skipReason returns why a file named name is ignored without looking at
// it, or "" if it is a candidate.
func skipReason(name string) string {
	switch {
	case strings.HasPrefix(name, "."):
		return "skipped: hidden file"
	case strings.HasSuffix(name, "~"),
		strings.Contains(name, ".dpkg-"), // dpkg-old, dpkg-new, dpkg-dist, dpkg-tmp
		strings.Contains(name, ".ucf-"),  // ucf-old, ucf-new, ucf-dist (Debian's ucf)
		strings.Contains(name, ".rpm"):   // rpmsave, rpmnew, rpmorig
		return "skipped: backup file"
	case strings.HasSuffix(name, ".swp"):
		return "skipped: editor swap file"
	}
	return ""
}

// inspect decides whether dir/name runs.
//
// Symlinks: the link itself is never followed for the trust checks. A
// symlink runs only if the link is owned by root, its fully resolved target
// is a regular file that passes every check a plain script must pass, and
// the directory holding the target passes the directory checks. This allows
// the common layout of one script linked into several state directories
// without letting a link lend trust to a file someone else can change. Only
// the target's own directory is checked, not its ancestors. A symlink to
// /dev/null masks a script (as with systemd units) and is skipped.
func inspect(dir, name string) entry {
	path := filepath.Join(dir, name)
	e := entry{ScriptStatus: ScriptStatus{Path: path}}
	if r := skipReason(name); r != "" {
		e.Skipped, e.Reason = true, r
		return e
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) { // removed since the listing
		e.Skipped, e.Reason = true, "skipped: removed while listing"
		return e
	}
	if err != nil {
		e.Reason = "stat: " + errText(err)
		e.stamp = stamp{reason: e.Reason}
		return e
	}
	e.stamp.mtime = mtime(fi)
	switch typ := fi.Mode().Type(); {
	case typ == fs.ModeDir:
		e.Skipped, e.Reason = true, "skipped: directory"
		return e
	case typ == fs.ModeSymlink:
		e.Reason, e.stamp.tmtime, e.Skipped = inspectSymlink(path, fi)
	case typ != 0:
		e.Reason = "not a regular file (" + typeName(typ) + ")"
	case fi.Size() == 0:
		e.Skipped, e.Reason = true, "skipped: empty file"
		return e
	default:
		e.Reason = fileProblems(fi)
	}
	if e.Skipped {
		return e
	}
	if e.Reason == "" {
		e.Runs, e.Reason = true, "ok"
		e.stamp = stamp{}
		return e
	}
	e.stamp.reason = e.Reason
	return e
}

// inspectSymlink checks a symlink whose Lstat is link. It returns the
// reason it does not run ("" if it runs), the target's mtime and whether it
// is skipped rather than refused.
func inspectSymlink(path string, link fs.FileInfo) (reason string, tmtime int64, skipped bool) {
	if uid := owner(link); uid != 0 {
		return "symlink not owned by root (uid " + strconv.FormatUint(uint64(uid), 10) + ")", 0, false
	}
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "dangling symlink", 0, false
		}
		return "symlink: " + errText(err), 0, false
	}
	if target == os.DevNull {
		return "skipped: masked (symlink to /dev/null)", 0, true
	}
	ti, err := os.Lstat(target) // target is fully resolved: not a symlink
	if err != nil {
		return "symlink target " + target + ": stat: " + errText(err), 0, false
	}
	tmtime = mtime(ti)
	if !ti.Mode().IsRegular() {
		return "symlink target " + target + " is not a regular file (" + typeName(ti.Mode().Type()) + ")", tmtime, false
	}
	if ti.Size() == 0 {
		return "skipped: empty file (symlink target " + target + ")", tmtime, true
	}
	if p := fileProblems(ti); p != "" {
		return "symlink target " + target + ": " + p, tmtime, false
	}
	tdir := filepath.Dir(target)
	di, err := os.Stat(tdir)
	if err != nil {
		return "symlink target directory " + tdir + ": stat: " + errText(err), tmtime, false
	}
	if p := dirProblems(di); p != "" {
		return "symlink target directory " + tdir + ": " + p, tmtime, false
	}
	return "", tmtime, false
}

// fileProblems returns why a regular file may not run, "" if it may:
// it must be owned by root, writable by nobody else, not setuid or setgid
// and executable by its owner.
func fileProblems(fi fs.FileInfo) string {
	var p []string
	if uid := owner(fi); uid != 0 {
		p = append(p, "not owned by root (uid "+strconv.FormatUint(uint64(uid), 10)+")")
	}
	m := fi.Mode()
	if m.Perm()&0o020 != 0 {
		p = append(p, "group-writable")
	}
	if m.Perm()&0o002 != 0 {
		p = append(p, "world-writable")
	}
	if m&fs.ModeSetuid != 0 {
		p = append(p, "setuid")
	}
	if m&fs.ModeSetgid != 0 {
		p = append(p, "setgid")
	}
	if m.Perm()&0o100 == 0 {
		p = append(p, "not executable")
	}
	return strings.Join(p, ", ")
}

// dirProblems returns why a directory is not trusted to hold scripts, ""
// if it is: it must be owned by root and writable by nobody else, or
// another user could replace or add scripts.
func dirProblems(fi fs.FileInfo) string {
	var p []string
	if uid := owner(fi); uid != 0 {
		p = append(p, "not owned by root (uid "+strconv.FormatUint(uint64(uid), 10)+")")
	}
	if fi.Mode().Perm()&0o020 != 0 {
		p = append(p, "group-writable")
	}
	if fi.Mode().Perm()&0o002 != 0 {
		p = append(p, "world-writable")
	}
	return strings.Join(p, ", ")
}

// owner returns the uid that owns fi. A FileInfo without a Stat_t (which
// does not happen on Linux) is treated as owned by nobody.
func owner(fi fs.FileInfo) uint32 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid
	}
	return 65534
}

func mtime(fi fs.FileInfo) int64 { return fi.ModTime().UnixNano() }

func typeName(t fs.FileMode) string {
	switch {
	case t&fs.ModeDir != 0:
		return "directory"
	case t&fs.ModeSymlink != 0:
		return "symlink"
	case t&fs.ModeNamedPipe != 0:
		return "named pipe"
	case t&fs.ModeSocket != 0:
		return "socket"
	case t&fs.ModeCharDevice != 0:
		return "character device"
	case t&fs.ModeDevice != 0:
		return "block device"
	}
	return "irregular file"
}

// errText is err without the path a PathError repeats.
func errText(err error) string {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err.Error()
	}
	return err.Error()
}
