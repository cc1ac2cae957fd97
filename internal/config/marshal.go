package config

import (
	"bytes"
	"fmt"
	"slices"

	"go.yaml.in/yaml/v3"
)

// Marshal renders c as YAML with every key, in the file's layout: the
// effective config that `netevd validate --print` shows. Durations are
// written as "30s". Source is not rendered. Parsing the output gives back
// the same values.
func (c *Config) Marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return b.Bytes(), nil
}

// Diff returns the key paths whose values differ between old and new,
// sorted, such as "api.port" or "monitoring.interfaces[1]"; a list that
// grew or shrank also reports the indexes only one side has. Empty means
// equal. A reload uses it to restart only what changed.
func Diff(old, new *Config) []string {
	a, b := flatten(old), flatten(new)
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// flatten maps each leaf key path of c to its rendered value.
func flatten(c *Config) map[string]string {
	var n yaml.Node
	if err := n.Encode(c); err != nil {
		// Config holds only strings, numbers, booleans, durations, lists
		// and structs: encoding cannot fail.
		panic(fmt.Sprintf("config: encode for Diff: %v", err))
	}
	out := map[string]string{}
	flattenNode(&n, "", out)
	return out
}

func flattenNode(n *yaml.Node, path string, out map[string]string) {
	switch n.Kind {
	case yaml.MappingNode:
		if len(n.Content) == 0 {
			out[path] = "{}"
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			flattenNode(n.Content[i+1], join(path, n.Content[i].Value), out)
		}
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			out[path] = "[]"
		}
		for i, item := range n.Content {
			flattenNode(item, fmt.Sprintf("%s[%d]", path, i), out)
		}
	default:
		out[path] = n.Tag + " " + n.Value
	}
}
