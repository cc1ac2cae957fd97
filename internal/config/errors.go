package config

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// Error is one problem with a configuration. Load, Parse, ApplyEnv,
// Validate and Resolve return either a single *Error or an errors.Join of
// several; Problems lists them.
type Error struct {
	File string // the config file; "" when the value did not come from one
	Line int    // 1-based line in File; 0 when unknown
	Env  string // the environment variable the value came from, if any
	Key  string // key path such as "api.port"; "" for problems with the whole file
	Msg  string // what is wrong, naming the key
}

// Error formats e as "file:line: msg", "env VAR: msg", "file: msg" or "msg".
func (e *Error) Error() string {
	switch {
	case e.Env != "":
		return "env " + e.Env + ": " + e.Msg
	case e.File != "" && e.Line > 0:
		return e.File + ":" + strconv.Itoa(e.Line) + ": " + e.Msg
	case e.File != "":
		return e.File + ": " + e.Msg
	default:
		return e.Msg
	}
}

// Problems flattens err, as returned by this package, into its individual
// problems, in the order they are reported. A nil err gives nil.
func Problems(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Problems(e)...)
		}
		return out
	}
	return []error{err}
}

// errorList collects problems found while reading one config.
type errorList []*Error

// join returns the problems as one error: nil, the *Error itself, or an
// errors.Join of them.
func (l errorList) join() error {
	switch len(l) {
	case 0:
		return nil
	case 1:
		return l[0]
	}
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// sortByLine orders problems by file line, keeping the order of problems
// on the same line (and of those without a line, which go last).
func (l errorList) sortByLine() {
	slices.SortStableFunc(l, func(a, b *Error) int {
		la, lb := a.Line, b.Line
		if la == 0 {
			la = int(^uint(0) >> 1)
		}
		if lb == 0 {
			lb = int(^uint(0) >> 1)
		}
		return cmp.Compare(la, lb)
	})
}

// problemf records a problem with the key path key, located where the
// config's Source says that value came from. When key has no known origin,
// the first of also that has one is used (a missing cert_file is best shown
// at the line that enabled TLS).
func (c *Config) problemf(l *errorList, key string, also []string, format string, args ...any) {
	e := &Error{Key: key, Msg: key + ": " + fmt.Sprintf(format, args...)}
	for _, k := range append([]string{key}, also...) {
		if v, ok := c.Source.Env[k]; ok {
			e.Env = v
			break
		}
		if n, ok := c.Source.Lines[k]; ok {
			e.File, e.Line = c.Source.Path, n
			break
		}
	}
	*l = append(*l, e)
}
