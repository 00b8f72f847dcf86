package scheduler

import "sort"

// Instance is one running container, for rebalancing.
type Instance struct {
	App  string
	Name string
	Host string
}

// Move is one instance to replace on another host.
type Move struct {
	Instance
	To string
}

// Rebalance plans moves that even out containers across hosts in
// proportion to their weights, without ever putting two instances of an
// app on one host while the app is spread now. Each move lowers the load of
// the busiest host, so the plan ends.
func Rebalance(hosts []Host, instances []Instance) []Move {
	if len(hosts) < 2 {
		return nil
	}
	load := map[string]int{}
	weight := map[string]float64{}
	for _, h := range hosts {
		load[h.Name] = h.Containers
		weight[h.Name] = max(float64(h.Weight), 1)
	}
	onHost := map[string][]Instance{}
	appOn := map[[2]string]int{}
	for _, in := range instances {
		if _, ok := load[in.Host]; !ok {
			continue // on a host that is down or draining: healing's job
		}
		onHost[in.Host] = append(onHost[in.Host], in)
		appOn[[2]string{in.App, in.Host}]++
	}
	for _, list := range onHost {
		sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	}
	names := make([]string, 0, len(hosts))
	for _, h := range hosts {
		names = append(names, h.Name)
	}
	sort.Strings(names)
	ratio := func(h string, delta int) float64 { return float64(load[h]+delta) / weight[h] }
	var moves []Move
	for range len(instances) {
		from, to := "", ""
		for _, h := range names {
			if len(onHost[h]) > 0 && (from == "" || ratio(h, 0) > ratio(from, 0)) {
				from = h
			}
			if to == "" || ratio(h, 0) < ratio(to, 0) {
				to = h
			}
		}
		if from == "" || from == to || ratio(from, -1) < ratio(to, +1) {
			return moves
		}
		// The first instance on from whose app is not on to yet.
		pick := -1
		for i, in := range onHost[from] {
			if appOn[[2]string{in.App, to}] == 0 {
				pick = i
				break
			}
		}
		if pick < 0 {
			return moves
		}
		in := onHost[from][pick]
		onHost[from] = append(onHost[from][:pick], onHost[from][pick+1:]...)
		in2 := in
		in2.Host = to
		onHost[to] = append(onHost[to], in2)
		appOn[[2]string{in.App, from}]--
		appOn[[2]string{in.App, to}]++
		load[from]--
		load[to]++
		moves = append(moves, Move{Instance: in, To: to})
	}
	return moves
}
