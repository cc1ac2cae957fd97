package networkd

import (
	"strings"
	"testing"
)

func TestLinkIndex(t *testing.T) {
	tests := []struct {
		name string
		path string
		want int // 0: an error
	}{
		{"ifindex 1", "/org/freedesktop/network1/link/_31", 1},
		{"ifindex 2", "/org/freedesktop/network1/link/_32", 2},
		{"ifindex 10: only the first digit escaped", "/org/freedesktop/network1/link/_310", 10},
		{"ifindex 12", "/org/freedesktop/network1/link/_312", 12},
		{"fully escaped 10", "/org/freedesktop/network1/link/_31_30", 10},
		{"fully escaped 123", "/org/freedesktop/network1/link/_31_32_33", 123},
		{"partly escaped 123", "/org/freedesktop/network1/link/_312_33", 123},
		{"escaped colon", "/org/freedesktop/network1/link/_3a", 0},
		{"upper-case escape of a colon", "/org/freedesktop/network1/link/_31_3A", 0},
		{"largest ifindex", "/org/freedesktop/network1/link/_32147483647", 2147483647},
		{"too large", "/org/freedesktop/network1/link/_32147483648", 0},
		{"far too large", "/org/freedesktop/network1/link/_399999999999", 0},
		{"zero", "/org/freedesktop/network1/link/_30", 0},
		{"leading zero", "/org/freedesktop/network1/link/_3010", 0},
		{"unescaped digits", "/org/freedesktop/network1/link/10", 10},
		{"sign", "/org/freedesktop/network1/link/_2b10", 0},
		{"minus", "/org/freedesktop/network1/link/_2d1", 0},
		{"letters", "/org/freedesktop/network1/link/eth0", 0},
		{"empty label", "/org/freedesktop/network1/link/_", 0},
		{"no label", "/org/freedesktop/network1/link/", 0},
		{"truncated escape", "/org/freedesktop/network1/link/_3", 0},
		{"truncated second escape", "/org/freedesktop/network1/link/_31_3", 0},
		{"bad hex", "/org/freedesktop/network1/link/_3g", 0},
		{"deeper path", "/org/freedesktop/network1/link/_310/x", 0},
		{"manager", "/org/freedesktop/network1", 0},
		{"network object", "/org/freedesktop/network1/network/_3110_2dveth0", 0},
		{"other prefix", "/org/freedesktop/network2/link/_310", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := linkIndex(tt.path)
			if tt.want == 0 {
				if err == nil {
					t.Errorf("linkIndex(%q) = %d, want an error", tt.path, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("linkIndex(%q) = %d, %v; want %d", tt.path, got, err, tt.want)
			}
		})
	}
}

func TestLinkPath(t *testing.T) {
	for idx, want := range map[int]string{
		1:          "/org/freedesktop/network1/link/_31",
		10:         "/org/freedesktop/network1/link/_310",
		123:        "/org/freedesktop/network1/link/_3123",
		2147483647: "/org/freedesktop/network1/link/_32147483647",
	} {
		if got := linkPath(idx); got != want {
			t.Errorf("linkPath(%d) = %q, want %q", idx, got, want)
		}
	}
}

// fullyEscaped escapes every byte of s, the other form systemd's decoder
// accepts.
func fullyEscaped(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteByte('_')
		b.WriteByte("0123456789abcdef"[s[i]>>4])
		b.WriteByte("0123456789abcdef"[s[i]&15])
	}
	return b.String()
}

// FuzzLinkIndex checks that the decoder never panics, that whatever it
// accepts is a positive ifindex whose canonical path decodes to the same
// index, and that both the canonical and the fully escaped path of an index
// decode to it.
func FuzzLinkIndex(f *testing.F) {
	for _, s := range []string{"_310", "_31_30", "_3", "_", "", "10", "_30", "_3g0", "_32147483648", "_31_3", "eth0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, label string) {
		path := linkPrefix + label
		idx, err := linkIndex(path)
		if err != nil {
			return
		}
		if idx <= 0 {
			t.Fatalf("linkIndex(%q) = %d, want a positive ifindex", path, idx)
		}
		canonical := linkPath(idx)
		if got, err := linkIndex(canonical); err != nil || got != idx {
			t.Fatalf("linkIndex(%q) = %d, %v; want %d (from %q)", canonical, got, err, idx, path)
		}
		digits := strings.TrimPrefix(canonical, linkPrefix+"_3")
		full := linkPrefix + fullyEscaped(digits)
		if got, err := linkIndex(full); err != nil || got != idx {
			t.Fatalf("linkIndex(%q) = %d, %v; want %d", full, got, err, idx)
		}
	})
}
