// Package script is the action that runs the administrator's scripts for
// each Change: the script contract of DESIGN.md §3. cmd/netevd wires a
// Runner into the pipeline and uses Check for `netevd check-scripts`;
// nothing else should import it.
//
// # Directories
//
// Scripts live in directories under the scripts root (default
// /etc/netevd), listed in StandardDirs and created by EnsureDirs. DirsFor
// says which directories a Change selects.
//
// # Which files run
//
// Entries run in lexical (byte) order of their names, so "10-a" runs before
// "2-a". Hidden files, "*~", "*.dpkg-*", "*.ucf-*", "*.rpm*" and "*.swp"
// are skipped, and so are subdirectories, empty files and symlinks to
// /dev/null (masked). A file runs only if it is owned by root, not group-
// or world-writable, neither setuid nor setgid, and executable by its
// owner; and only if its directory is owned by root and not group- or
// world-writable. A symlink runs only if the link is owned by root and its
// resolved target and the target's directory pass the same checks. Refused
// files are logged at warn level with the reason, once per version of the
// file. Check shows the decision for every entry.
//
// # How a script runs
//
// It is exec'd directly, without a shell or arguments, in its own process
// group, in "/", with an environment built from scratch (Runner.Environ)
// and the whole change as JSON on stdin (Payload). A script need not read
// stdin. Its stdout and stderr are logged line by line (at most
// Config.MaxOutput bytes per stream), its exit code and duration are
// logged, and a failing script does not stop the next. A script that runs
// longer than Config.Timeout, or is still running at shutdown, has its
// whole process group sent SIGTERM and, after Config.KillGrace, SIGKILL.
// Background processes a script leaves behind when it exits on its own are
// not killed; they should not keep its stdout or stderr open.
//
// # Refused events
//
// Values that come from outside are checked before any script runs: an
// interface name outside ^[A-Za-z0-9._-]{1,15}$ (unless
// Config.AllowUnsafeNames) or a variable containing NUL, newline or
// carriage return refuses the whole event for scripts, with a warning and a
// count in Stats().Refused. Nothing is silently dropped or rewritten.
package script
