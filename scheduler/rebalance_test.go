package scheduler

import (
	"fmt"
	"testing"
)

func TestRebalance(t *testing.T) {
	// Four one-instance apps on h1; h2 and h3 just joined.
	var ins []Instance
	for i := range 4 {
		ins = append(ins, Instance{App: fmt.Sprintf("ns/a%d", i), Name: fmt.Sprintf("c%d", i), Host: "h1"})
	}
	hosts := []Host{{Name: "h1", Containers: 4}, {Name: "h2"}, {Name: "h3"}}
	moves := Rebalance(hosts, ins)
	after := map[string]int{"h1": 4}
	for _, m := range moves {
		after[m.Host]--
		after[m.To]++
	}
	if len(moves) != 2 || after["h1"] != 2 || after["h2"] != 1 || after["h3"] != 1 {
		t.Fatalf("moves %+v leave %v", moves, after)
	}

	// An app with two instances on two of three hosts: even already.
	spread := []Instance{{App: "ns/web", Name: "w1", Host: "h1"}, {App: "ns/web", Name: "w2", Host: "h2"}}
	if moves := Rebalance([]Host{{Name: "h1", Containers: 1}, {Name: "h2", Containers: 1}, {Name: "h3"}}, spread); len(moves) != 0 {
		t.Fatalf("moved an even layout: %+v", moves)
	}
	// Never two instances of one app on a host: both on h1, only h2 free.
	both := []Instance{{App: "ns/web", Name: "w1", Host: "h1"}, {App: "ns/web", Name: "w2", Host: "h1"}}
	moves = Rebalance([]Host{{Name: "h1", Containers: 2}, {Name: "h2"}}, both)
	if len(moves) != 1 || moves[0].To != "h2" {
		t.Fatalf("moves %+v", moves)
	}
	// Weights: h1 weight 3 keeps three of four.
	moves = Rebalance([]Host{{Name: "h1", Containers: 4, Weight: 3}, {Name: "h2", Weight: 1}}, ins)
	if len(moves) != 1 {
		t.Fatalf("weighted moves %+v", moves)
	}
	if len(Rebalance([]Host{{Name: "h1"}}, ins)) != 0 {
		t.Fatal("one host has nowhere to move to")
	}
}
