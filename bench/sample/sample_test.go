package sample

import "testing"

func TestRank(t *testing.T) {
	s := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	tests := []struct {
		p    int
		want int64
	}{{0, 1}, {10, 1}, {11, 2}, {50, 5}, {95, 10}, {100, 10}}
	for _, tt := range tests {
		if got := Rank(s, tt.p); got != tt.want {
			t.Errorf("Rank(1..10, %d) = %d, want %d", tt.p, got, tt.want)
		}
	}
	if got := Rank([]int64{7}, 50); got != 7 {
		t.Errorf("Rank([7], 50) = %d, want 7", got)
	}
	if got, want := MS(1_234_567), "1.235"; got != want {
		t.Errorf("MS(1234567) = %q, want %q", got, want)
	}
}
