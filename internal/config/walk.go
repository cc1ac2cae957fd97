package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

var (
	configType   = reflect.TypeFor[Config]()
	durationType = reflect.TypeFor[time.Duration]()
)

// walker goes over the YAML node tree alongside the Config type before the
// strict decode. It records the line of every key (Source.Lines), reports
// unknown keys with the key path, what the section accepts and a hint, and
// reports missing required keys. Type errors are left to the decoder; the
// walker's value index lets convert name the key they belong to.
type walker struct {
	file   string
	lines  map[string]int // key path → line of the key (or list item)
	errs   errorList
	values []nodePos // every value node, for naming the key of a type error
	keys   []nodePos // every key node, duplicates included
}

type nodePos struct {
	line  int
	kind  yaml.Kind
	path  string
	value string
}

// field is one key of a struct type.
type field struct {
	name     string
	typ      reflect.Type
	required bool
}

// fieldsOf lists the YAML keys of struct type t in declaration order.
func fieldsOf(t reflect.Type) []field {
	var out []field
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" || name == "" {
			continue
		}
		out = append(out, field{name: name, typ: f.Type, required: f.Tag.Get("netevd") == "required"})
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	if path != "" {
		w.values = append(w.values, nodePos{line: n.Line, kind: n.Kind, path: path, value: n.Value})
	}
	switch {
	case t.Kind() == reflect.Struct && t != durationType:
		if n.Kind == yaml.MappingNode {
			w.mapping(n, t, path)
		}
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			w.lines[p] = item.Line
			w.walk(item, t.Elem(), p)
		}
	}
	// Scalars, aliases and mismatched kinds: the decoder reports type errors.
}

func (w *walker) mapping(n *yaml.Node, t reflect.Type, path string) {
	fields := fieldsOf(t)
	seen := map[string]bool{}
	merged := false
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			continue // the decoder reports it
		}
		if k.Tag == "!!merge" || k.Value == "<<" {
			merged = true
			continue
		}
		p := join(path, k.Value)
		w.keys = append(w.keys, nodePos{line: k.Line, kind: k.Kind, path: p, value: k.Value})
		idx := slices.IndexFunc(fields, func(f field) bool { return f.name == k.Value })
		if idx < 0 {
			w.unknown(k, path, fields)
			continue
		}
		seen[k.Value] = true
		if _, dup := w.lines[p]; !dup {
			w.lines[p] = k.Line
		}
		w.walk(v, fields[idx].typ, p)
	}
	if merged {
		return // required keys may come from the merged mapping
	}
	for _, f := range fields {
		if f.required && !seen[f.name] {
			w.errs = append(w.errs, &Error{
				File: w.file, Line: n.Line, Key: join(path, f.name),
				Msg: fmt.Sprintf("%s: required key %q is missing%s", path, f.name, requiredHint(t, f.name)),
			})
		}
	}
}

func requiredHint(t reflect.Type, name string) string {
	if t == reflect.TypeFor[Filter]() {
		switch name {
		case "match_rule":
			return " (use match_rule: {} to match every event)"
		case "action":
			return " (one of execute, ignore, log)"
		}
	}
	return ""
}

func (w *walker) unknown(k *yaml.Node, path string, fields []field) {
	where := path
	if where == "" {
		where = "the top level"
	}
	msg := fmt.Sprintf("unknown key %q in %s", k.Value, where)
	if h := hint(path, k.Value, fields); h != "" {
		msg += "; " + h
	} else {
		names := make([]string, len(fields))
		for i, f := range fields {
			names[i] = f.name
		}
		if len(names) == 0 {
			msg += "; it takes no keys"
		} else {
			msg += "; known keys: " + strings.Join(names, ", ")
		}
	}
	w.errs = append(w.errs, &Error{File: w.file, Line: k.Line, Key: join(path, k.Value), Msg: msg})
}

// reported says whether the walker already reported key name at line, so
// the decoder's "field not found" for it can be dropped.
func (w *walker) reported(line int, name string) bool {
	for _, e := range w.errs {
		if e.Line == line && (e.Key == name || strings.HasSuffix(e.Key, "."+name)) {
			return true
		}
	}
	return false
}

// valueAt names the key whose value is at line. tag is the YAML tag the
// decoder named ("seq", "map", "str", ...) and value the (possibly
// truncated, "abcdefg...") text it quoted; they pick among several values
// on one line.
func (w *walker) valueAt(line int, tag, value string) string {
	kind := yaml.ScalarNode
	switch tag {
	case "seq":
		kind = yaml.SequenceNode
	case "map":
		kind = yaml.MappingNode
	}
	var found []nodePos
	for _, v := range w.values {
		if v.line == line && v.kind == kind {
			found = append(found, v)
		}
	}
	if len(found) == 1 {
		return found[0].path
	}
	prefix := strings.TrimSuffix(value, "...")
	for _, v := range found {
		if value != "" && (v.value == value || strings.HasSuffix(value, "...") && strings.HasPrefix(v.value, prefix)) {
			return v.path
		}
	}
	return ""
}

// keyAt names the key called name at line; "" when the walker did not see it.
func (w *walker) keyAt(line int, name string) string {
	for _, k := range w.keys {
		if k.line == line && k.value == name {
			return k.path
		}
	}
	return ""
}

// legacyHints answers for keys that upstream's docs, examples or older
// versions use but that do not exist (upstream ignored them silently).
var legacyHints = map[string]string{
	"system.generator":        `use system.backend`,
	"network":                 `the v0.1 "network" section is gone: links → monitoring.interfaces, routing_policy_rules → routing.policy_rules, emit_json → backends.systemd_networkd.emit_json, use_dns/use_domain/use_hostname → backends.dhclient`,
	"api.address":             `use api.bind_address`,
	"audit.log_path":          `use audit.path`,
	"metrics.endpoint":        `metrics are served at /metrics on metrics.port`,
	"monitoring.links":        `use monitoring.interfaces`,
	"routing.rules":           `use routing.policy_rules`,
	"system.scripts":          `use system.scripts_dir`,
	"scripts.timeout_seconds": `use scripts.timeout with a unit, such as 30s`,
}

// hint suggests what the user meant by an unknown key, or "".
func hint(path, key string, fields []field) string {
	if h, ok := legacyHints[join(path, key)]; ok {
		return h
	}
	if len(path) > 0 && strings.HasPrefix(path, "filters[") && !strings.Contains(path, ".") {
		for _, f := range fieldsOf(reflect.TypeFor[MatchRule]()) {
			if f.name == key {
				return fmt.Sprintf("%q belongs under match_rule", key)
			}
		}
	}
	best, bestD := "", 3
	norm := strings.ReplaceAll(strings.ToLower(key), "-", "_")
	for _, f := range fields {
		if f.name == norm || strings.ReplaceAll(f.name, "_", "") == norm {
			return fmt.Sprintf("did you mean %q? (keys are lower-case snake_case)", f.name)
		}
		if d := editDistance(norm, f.name); d < bestD {
			best, bestD = f.name, d
		}
	}
	if best != "" {
		return fmt.Sprintf("did you mean %q?", best)
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
