package rtnl

import (
	"testing"
	"time"
)

func TestLogLimit(t *testing.T) {
	l := logLimit{every: 10 * time.Second}
	t0 := time.Unix(1000, 0)
	type step struct {
		at             time.Duration
		wantOK         bool
		wantSuppressed int
	}
	steps := []step{
		{0, true, 0},
		{time.Second, false, 0},
		{9 * time.Second, false, 0},
		{10 * time.Second, true, 2},
		{11 * time.Second, false, 0},
		{25 * time.Second, true, 1},
		{40 * time.Second, true, 0},
	}
	for _, s := range steps {
		ok, n := l.allow(t0.Add(s.at))
		if ok != s.wantOK || n != s.wantSuppressed {
			t.Errorf("allow at +%v: got (%v, %d), want (%v, %d)", s.at, ok, n, s.wantOK, s.wantSuppressed)
		}
	}
}
