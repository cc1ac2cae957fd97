package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: no input makes the decoder, the validation or the renderer
// panic; every problem is an *Error pointing at the file; and a config that
// validates survives Marshal → Parse unchanged.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*/*.yaml")
	seeds = append(seeds, "../../dist/netevd.yaml")
	for _, p := range seeds {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("filters:\n  - <<: {action: log}\n    match_rule: {}\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parse(data, "fuzz.yaml")
		for _, p := range Problems(err) {
			var e *Error
			if !errors.As(p, &e) || e.File != "fuzz.yaml" || e.Msg == "" {
				t.Fatalf("problem %q (%T) does not point at fuzz.yaml", p, p)
			}
		}
		if c == nil {
			return
		}
		// A partly decoded config is validated too (Resolve does it).
		verr := c.Validate()
		c.Monitored("eth0")
		if err != nil || verr != nil {
			return
		}
		out, err := c.Marshal()
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		back, err := Parse(out, "marshaled.yaml")
		if err != nil {
			t.Fatalf("Parse(Marshal()) = %v\n%s", err, out)
		}
		if err := back.Validate(); err != nil {
			t.Fatalf("Validate(Parse(Marshal())) = %v\n%s", err, out)
		}
		if d := Diff(c, back); len(d) != 0 {
			t.Fatalf("round trip changed %v\n%s", d, out)
		}
	})
}
