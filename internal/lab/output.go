package lab

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
)

// syncWriter serializes whole lines from the lab and the daemon's output.
type syncWriter struct {
	mu sync.Mutex // guards w
	w  io.Writer
}

func (s *syncWriter) line(prefix, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	io.WriteString(s.w, prefix+text+"\n") // best effort, like a log
}

// say prints one lab progress line on stdout.
func (l *lab) say(format string, args ...any) {
	l.out.line("lab | ", fmt.Sprintf(format, args...))
}

// warn prints one lab warning on stderr.
func (l *lab) warn(format string, args ...any) {
	l.stderr.line("lab | warning: ", fmt.Sprintf(format, args...))
}

// maxLine bounds a daemon line kept in memory; longer ones are split.
const maxLine = 64 << 10

// lineWriter receives the daemon's stdout and stderr (one pipe, one writer
// goroutine, see exec.Cmd) and prints them line by line with a prefix. It
// closes ready at the first line that reports the daemon ready.
type lineWriter struct {
	out    *syncWriter
	prefix string
	ready  chan struct{}

	buf     []byte
	isReady bool
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		end := bytes.IndexByte(w.buf, '\n')
		next := end + 1
		switch {
		case end >= 0 && end <= maxLine:
		case len(w.buf) >= maxLine:
			end, next = maxLine, maxLine
		default:
			return len(p), nil
		}
		w.emit(string(w.buf[:end]))
		w.buf = w.buf[next:]
	}
}

// flush prints an unterminated last line; call it after the writer's
// goroutine is done (after cmd.Wait).
func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.emit(string(w.buf))
		w.buf = nil
	}
}

func (w *lineWriter) emit(line string) {
	w.out.line(w.prefix, strings.TrimSuffix(line, "\r"))
	if !w.isReady && readyLine(line) {
		w.isReady = true
		close(w.ready)
	}
}

// readyLine reports whether a daemon log line (slog text or JSON) is the
// "ready" message logged after the startup replay.
func readyLine(line string) bool {
	if strings.Contains(line, `"msg":"ready"`) {
		return true
	}
	for _, f := range strings.Fields(line) {
		if f == "msg=ready" {
			return true
		}
	}
	return false
}
