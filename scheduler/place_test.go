package scheduler

import (
	"errors"
	"slices"
	"testing"
)

func TestPlace(t *testing.T) {
	for _, tc := range []struct {
		name  string
		n     int
		hosts []Host
		want  []string
	}{
		{"one host, several instances", 3, []Host{{Name: "a"}}, []string{"a", "a", "a"}},
		{"distinct hosts first", 2, []Host{{Name: "a"}, {Name: "b"}, {Name: "c", Containers: 5}}, []string{"a", "b"}},
		{"least loaded first", 1, []Host{{Name: "a", Containers: 3}, {Name: "b", Containers: 1}}, []string{"b"}},
		{"weight halves load", 1, []Host{{Name: "a", Containers: 4, Weight: 2}, {Name: "b", Containers: 3}}, []string{"a"}},
		{"free memory breaks ties", 1, []Host{{Name: "a", MemFree: 1}, {Name: "b", MemFree: 2}}, []string{"b"}},
		{"more instances than hosts", 3, []Host{{Name: "a"}, {Name: "b"}}, []string{"a", "b", "a"}},
		{"none", 0, []Host{{Name: "a"}}, nil},
	} {
		got, err := Place(tc.n, tc.hosts)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s: Place = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
	if _, err := Place(1, nil); !errors.Is(err, ErrNoHosts) {
		t.Fatalf("no hosts: %v", err)
	}
}
