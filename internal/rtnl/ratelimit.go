package rtnl

import (
	"sync"
	"time"
)

// logLimit lets one log line through per interval and counts the ones it
// held back, so repeated kernel noise cannot flood the log.
type logLimit struct {
	every time.Duration

	mu         sync.Mutex // guards the fields below
	last       time.Time
	suppressed int
}

// allow reports whether to log now and, if so, how many lines were
// suppressed since the last one.
func (l *logLimit) allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		return false, 0
	}
	l.last = now
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}
