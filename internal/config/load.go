package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds the config file; a larger one is refused.
const MaxFileSize = 1 << 20

// Load reads and decodes the config file at path over the defaults. A file
// that does not exist gives the defaults, with Source.Read false; a file
// that exists but cannot be read is an error. Load does not apply the
// environment or validate: use Resolve, or call ApplyEnv and Validate.
//
// On error Load returns nil and every decoding problem (see Problems).
func Load(path string) (*Config, error) {
	c, err := load(path)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Parse decodes data, the contents of filename, over the defaults.
// filename is used in error messages and Source only. Empty and
// comment-only data give the defaults.
//
// Decoding is strict: an unknown key, a value of the wrong type, a
// duplicate key, a filter without match_rule or action, or a second YAML
// document is an error naming the file and line. On error Parse returns nil
// and every problem found (see Problems).
func Parse(data []byte, filename string) (*Config, error) {
	c, err := parse(data, filename)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Resolve is what the daemon, `netevd validate` and a reload do: Load path,
// ApplyEnv with getenv (nil for none), then Validate. It reports every
// problem of all three steps at once: values that decoded are still
// validated when others did not. On error it returns nil.
func Resolve(path string, getenv func(string) string) (*Config, error) {
	c, err := load(path)
	if c == nil {
		return nil, err
	}
	var l errorList
	seen := map[string]bool{}
	add := func(err error) {
		for _, p := range Problems(err) {
			e, ok := p.(*Error)
			if !ok {
				e = &Error{Msg: p.Error()}
			}
			if e.Key != "" && seen[e.Key] {
				continue // already reported by an earlier step
			}
			seen[e.Key] = true
			l = append(l, e)
		}
	}
	add(err)
	if getenv != nil {
		add(c.ApplyEnv(getenv))
	}
	add(c.Validate())
	if len(l) > 0 {
		l.sortByLine()
		return nil, l.join()
	}
	return c, nil
}

// load is Load, but also returns what did decode when some values did not
// (c non-nil with a non-nil error), so Resolve can validate it.
func load(path string) (*Config, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		c := Default()
		c.Source.Path = path
		return &c, nil
	}
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read config: %v", err)}
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && !fi.Mode().IsRegular() {
		return nil, &Error{File: path, Msg: "not a regular file"}
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read config: %v", err)}
	}
	return parse(data, path)
}

// parse is Parse, keeping the partly decoded config on type errors.
func parse(data []byte, filename string) (c *Config, err error) {
	if len(data) > MaxFileSize {
		return nil, &Error{File: filename, Msg: fmt.Sprintf("larger than %d bytes", MaxFileSize)}
	}
	// The YAML library is not ours; a panic in it must not take the daemon
	// (or `netevd validate`) down.
	defer func() {
		if r := recover(); r != nil {
			c, err = nil, &Error{File: filename, Msg: fmt.Sprintf("YAML decoder failed: %v", r)}
		}
	}()

	cfg := Default()
	cfg.Source = Source{Path: filename, Read: true, Lines: map[string]int{}}

	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return &cfg, nil // empty or only comments
		}
		return nil, syntaxError(filename, err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxError(filename, err)
	default:
		return nil, &Error{File: filename, Line: extra.Line, Msg: "a second YAML document; the config is one document"}
	}

	w := walker{file: filename, lines: cfg.Source.Lines}
	if len(doc.Content) > 0 {
		w.walk(doc.Content[0], configType, "")
	}

	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	derr := strict.Decode(&cfg)
	var te *yaml.TypeError
	switch {
	case derr == nil:
	case errors.As(derr, &te):
		for _, msg := range te.Errors {
			if e := w.convert(msg); e != nil {
				w.errs = append(w.errs, e)
			}
		}
	default:
		return nil, syntaxError(filename, derr)
	}
	w.errs.sortByLine()
	return &cfg, w.errs.join()
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns the YAML library's "yaml: line N: msg" into file:N: msg.
func syntaxError(file string, err error) error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return &Error{File: file, Line: n, Msg: "YAML syntax: " + m[2]}
	}
	return &Error{File: file, Msg: "YAML syntax: " + strings.TrimPrefix(msg, "yaml: ")}
}

var (
	reLine     = regexp.MustCompile(`^line (\d+): (.*)$`)
	reNotFound = regexp.MustCompile(`^field (\S+) not found in type (.+)$`)
	reType     = regexp.MustCompile("^cannot unmarshal !!(\\w+)(?: `(.*)`)? into (.+)$")
	reDup      = regexp.MustCompile(`^mapping key "(.*)" already defined at line (\d+)$`)
)

// convert turns one line of a yaml.TypeError into an *Error, or nil when
// the walker already reported the same problem.
func (w *walker) convert(msg string) *Error {
	m := reLine.FindStringSubmatch(msg)
	if m == nil {
		return &Error{File: w.file, Msg: msg}
	}
	line, _ := strconv.Atoi(m[1])
	e := &Error{File: w.file, Line: line, Msg: m[2]}
	if m := reNotFound.FindStringSubmatch(e.Msg); m != nil {
		if w.reported(line, m[1]) {
			return nil
		}
		e.Msg = fmt.Sprintf("unknown key %q", m[1])
		return e
	}
	if m := reType.FindStringSubmatch(e.Msg); m != nil {
		got := describeTag(m[1])
		if m[2] != "" {
			got += fmt.Sprintf(" %q", m[2])
		}
		e.Key = w.valueAt(line, m[1], m[2])
		e.Msg = fmt.Sprintf("want %s, got %s", describeGoType(m[3]), got)
		if e.Key != "" {
			e.Msg = e.Key + ": " + e.Msg
		}
		return e
	}
	if m := reDup.FindStringSubmatch(e.Msg); m != nil {
		e.Key = w.keyAt(line, m[1])
		name := e.Key
		if name == "" {
			name = strconv.Quote(m[1])
		}
		e.Msg = fmt.Sprintf("%s: duplicate key (first set at line %s)", name, m[2])
	}
	return e
}

func describeTag(tag string) string {
	switch tag {
	case "str":
		return "string"
	case "int":
		return "integer"
	case "float":
		return "number"
	case "bool":
		return "boolean"
	case "seq":
		return "a list"
	case "map":
		return "a mapping"
	}
	return tag
}

func describeGoType(t string) string {
	switch {
	case t == "time.Duration":
		return "a duration with a unit, such as 30s or 500ms"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "an integer"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "config."), strings.HasPrefix(t, "struct"):
		return "a mapping"
	}
	return t
}
