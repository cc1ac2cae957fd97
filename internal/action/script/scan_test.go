package script

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/netevd/netevd/internal/event"
)

func TestSkipReason(t *testing.T) {
	tests := []struct {
		name string
		want string
	}{
		{"10-up", ""},
		{"up.sh", ""},
		{"README", ""},
		{".hidden", "skipped: hidden file"},
		{".10-up.swp", "skipped: hidden file"},
		{"10-up~", "skipped: backup file"},
		{"10-up.dpkg-old", "skipped: backup file"},
		{"10-up.dpkg-new", "skipped: backup file"},
		{"10-up.dpkg-dist", "skipped: backup file"},
		{"10-up.dpkg-tmp", "skipped: backup file"},
		{"10-up.ucf-dist", "skipped: backup file"},
		{"10-up.rpmsave", "skipped: backup file"},
		{"10-up.rpmnew", "skipped: backup file"},
		{"10-up.rpmorig", "skipped: backup file"},
		{"10-up.swp", "skipped: editor swap file"},
		{"10-dpkg", ""},
	}
	for _, tt := range tests {
		if got := skipReason(tt.name); got != tt.want {
			t.Errorf("skipReason(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
}

const okScript = "#!/bin/sh\nexit 0\n"

func TestCheck(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	dir := filepath.Join(root, "routable.d")
	lib := filepath.Join(root, "lib")
	for _, d := range []string{dir, lib} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w := func(name string, mode os.FileMode) string { return writeScript(t, dir, name, okScript, mode) }
	w("10-ok", 0o755)
	w("2-ok", 0o700)
	w("30-world-writable", 0o757)
	w("31-group-writable", 0o775)
	w("32-setuid", fs.ModeSetuid|0o755)
	w("33-setgid", fs.ModeSetgid|0o755)
	w("34-not-executable", 0o644)
	w("35-exec-by-others-only", 0o645)
	other := w("36-not-root", 0o755)
	if err := os.Chown(other, 65534, 0); err != nil {
		t.Fatal(err)
	}
	many := w("37-many", 0o777)
	if err := os.Chown(many, 1000, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(many, fs.ModeSetuid|0o777); err != nil { // after chown, which clears setuid
		t.Fatal(err)
	}
	w(".hidden", 0o755)
	w("40-backup~", 0o755)
	w("41.dpkg-old", 0o755)
	w("42.rpmsave", 0o755)
	w("43.swp", 0o755)
	writeScript(t, dir, "44-empty", "", 0o755)
	if err := os.Mkdir(filepath.Join(dir, "45-subdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, "46-fifo"), 0o755); err != nil {
		t.Fatal(err)
	}

	// Symlinks.
	good := writeScript(t, lib, "good", okScript, 0o755)
	bad := writeScript(t, lib, "world", okScript, 0o757)
	link := func(target, name string) string {
		p := filepath.Join(dir, name)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	link(good, "50-link-ok")
	link("../lib/good", "51-relative-link-ok")
	link(bad, "52-link-to-world-writable")
	link(filepath.Join(lib, "missing"), "53-dangling")
	link(os.DevNull, "54-masked")
	notRootLink := link(good, "55-link-not-root")
	if err := os.Lchown(notRootLink, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(root, "open")
	if err := os.Mkdir(open, 0o757); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o757); err != nil {
		t.Fatal(err)
	}
	link(writeScript(t, open, "s", okScript, 0o755), "56-link-into-open-dir")
	link(lib, "57-link-to-dir")

	got, err := Check(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	want := []ScriptStatus{
		{Path: p(".hidden"), Skipped: true, Reason: "skipped: hidden file"},
		{Path: p("10-ok"), Runs: true, Reason: "ok"},
		{Path: p("2-ok"), Runs: true, Reason: "ok"},
		{Path: p("30-world-writable"), Reason: "world-writable"},
		{Path: p("31-group-writable"), Reason: "group-writable"},
		{Path: p("32-setuid"), Reason: "setuid"},
		{Path: p("33-setgid"), Reason: "setgid"},
		{Path: p("34-not-executable"), Reason: "not executable"},
		{Path: p("35-exec-by-others-only"), Reason: "not executable"},
		{Path: p("36-not-root"), Reason: "not owned by root (uid 65534)"},
		{Path: p("37-many"), Reason: "not owned by root (uid 1000), group-writable, world-writable, setuid"},
		{Path: p("40-backup~"), Skipped: true, Reason: "skipped: backup file"},
		{Path: p("41.dpkg-old"), Skipped: true, Reason: "skipped: backup file"},
		{Path: p("42.rpmsave"), Skipped: true, Reason: "skipped: backup file"},
		{Path: p("43.swp"), Skipped: true, Reason: "skipped: editor swap file"},
		{Path: p("44-empty"), Skipped: true, Reason: "skipped: empty file"},
		{Path: p("45-subdir"), Skipped: true, Reason: "skipped: directory"},
		{Path: p("46-fifo"), Reason: "not a regular file (named pipe)"},
		{Path: p("50-link-ok"), Runs: true, Reason: "ok"},
		{Path: p("51-relative-link-ok"), Runs: true, Reason: "ok"},
		{Path: p("52-link-to-world-writable"), Reason: "symlink target " + bad + ": world-writable"},
		{Path: p("53-dangling"), Reason: "dangling symlink"},
		{Path: p("54-masked"), Skipped: true, Reason: "skipped: masked (symlink to /dev/null)"},
		{Path: p("55-link-not-root"), Reason: "symlink not owned by root (uid 65534)"},
		{Path: p("56-link-into-open-dir"), Reason: "symlink target directory " + open + ": world-writable"},
		{Path: p("57-link-to-dir"), Reason: "symlink target " + lib + " is not a regular file (directory)"},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Check() (-got +want):\n%s", diff)
	}
}

func TestCheckUntrustedDirectory(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name   string
		mode   os.FileMode
		uid    int
		reason string
	}{
		{"world-writable", 0o757, 0, "directory world-writable"},
		{"sticky world-writable", fs.ModeSticky | 0o757, 0, "directory world-writable"},
		{"group-writable", 0o775, 0, "directory group-writable"},
		{"not owned by root", 0o755, 65534, "directory not owned by root (uid 65534)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "carrier.d")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			writeScript(t, dir, "10-up", okScript, 0o755)
			writeScript(t, dir, ".hidden", okScript, 0o755)
			if err := os.Chmod(dir, tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(dir, tt.uid, 0); err != nil {
				t.Fatal(err)
			}
			got, err := Check(dir)
			if err != nil {
				t.Fatal(err)
			}
			want := []ScriptStatus{
				{Path: filepath.Join(dir, ".hidden"), Skipped: true, Reason: "skipped: hidden file"},
				{Path: filepath.Join(dir, "10-up"), Reason: tt.reason},
			}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("Check() (-got +want):\n%s", diff)
			}
		})
	}
}

func TestCheckMissingDirectory(t *testing.T) {
	_, err := Check(filepath.Join(t.TempDir(), "nope.d"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Check(missing) = %v, want fs.ErrNotExist", err)
	}
	f := filepath.Join(t.TempDir(), "file.d")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Check(f); err == nil {
		t.Error("Check(file) = nil error, want one")
	}
}

// A refused file is logged once per version of the file, again when it
// changes, and not at all once it is fixed.
func TestRefusalLoggedOncePerVersion(t *testing.T) {
	requireRoot(t)
	r, h := newTestRunner(t, Config{})
	dir := filepath.Join(r.cfg.Dir, "carrier.d")
	out := t.TempDir()
	script := writeScript(t, dir, "10-up", "#!/bin/sh\necho run >> "+out+"/runs\n", 0o757)
	c := event.Change{Type: event.CarrierUp, Link: event.LinkState{Link: event.Link{Index: 10, Name: "veth0"}}}
	ctx := context.Background()
	refusals := func() int { return len(h.find("refusing script")) }

	for range 3 {
		if err := r.Handle(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if n := refusals(); n != 1 {
		t.Errorf("after 3 events: %d refusal warnings, want 1", n)
	}
	if got := h.find("refusing script"); len(got) > 0 {
		if got[0].Level != slog.LevelWarn || got[0].Attrs["script"] != script || got[0].Attrs["reason"] != "world-writable" {
			t.Errorf("refusal record = %+v", got[0])
		}
	}

	// A new version of the file (new mtime) is reported again.
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(script, later, later); err != nil {
		t.Fatal(err)
	}
	r.Handle(ctx, c)
	r.Handle(ctx, c)
	if n := refusals(); n != 2 {
		t.Errorf("after touching the file: %d refusal warnings, want 2", n)
	}
	// So is a different reason for the same mtime (chmod keeps mtime).
	if err := os.Chmod(script, 0o775); err != nil {
		t.Fatal(err)
	}
	r.Handle(ctx, c)
	if n := refusals(); n != 3 {
		t.Errorf("after chmod: %d refusal warnings, want 3", n)
	}
	if _, err := os.Stat(filepath.Join(out, "runs")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused script ran: %v", err)
	}

	// Fixed: it runs, and nothing more is reported.
	if err := os.Chmod(script, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := r.Handle(ctx, c); err != nil {
		t.Fatal(err)
	}
	if n := refusals(); n != 3 {
		t.Errorf("after fixing: %d refusal warnings, want 3", n)
	}
	if b, err := os.ReadFile(filepath.Join(out, "runs")); err != nil || string(b) != "run\n" {
		t.Errorf("fixed script output = %q, %v; want one run", b, err)
	}
	// Broken again with the same mtime as before: reported again, since the
	// fixed state was seen in between.
	if err := os.Chmod(script, 0o775); err != nil {
		t.Fatal(err)
	}
	r.Handle(ctx, c)
	if n := refusals(); n != 4 {
		t.Errorf("after breaking again: %d refusal warnings, want 4", n)
	}
}

func TestUntrustedDirectoryRunsNothing(t *testing.T) {
	requireRoot(t)
	r, h := newTestRunner(t, Config{})
	dir := filepath.Join(r.cfg.Dir, "carrier.d")
	marker := filepath.Join(t.TempDir(), "ran")
	writeScript(t, dir, "10-up", "#!/bin/sh\ntouch "+marker+"\n", 0o755)
	if err := os.Chmod(dir, 0o757); err != nil {
		t.Fatal(err)
	}
	c := event.Change{Type: event.CarrierUp, Link: event.LinkState{Link: event.Link{Index: 10, Name: "veth0"}}}
	for range 2 {
		if err := r.Handle(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(marker); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a script in a world-writable directory ran (%v)", err)
	}
	got := h.find("refusing script directory")
	if len(got) != 1 || got[0].Attrs["reason"] != "directory world-writable" {
		t.Errorf("directory refusals = %+v, want one with reason \"directory world-writable\"", got)
	}
	if n := len(h.find("refusing script")); n != 0 {
		t.Errorf("%d per-script refusals logged besides the directory's, want 0", n)
	}
}
