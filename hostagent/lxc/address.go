// Address allocation in the runtime's subnet.

package lxc

import (
	"net/netip"
)

// allocIP returns the next free address after the last one handed out,
// wrapping around: a just-freed address is reused as late as possible, so
// a router still pointing at a destroyed container does not reach another
// app's new one.
func (r *Runtime) allocIP() (netip.Addr, error) {
	used := map[netip.Addr]bool{r.gateway: true}
	for _, c := range r.ctrs {
		used[c.meta.IP] = true
	}
	first, last := r.gateway.Next(), lastHost(r.cfg.Subnet)
	a := r.cursor.Next()
	if !r.cfg.Subnet.Contains(a) || last.Less(a) || a.Less(first) {
		a = first
	}
	for start := a; ; {
		if !used[a] {
			return a, nil
		}
		if a = a.Next(); last.Less(a) {
			a = first
		}
		if a == start {
			return netip.Addr{}, ErrNoAddress
		}
	}
}

// lastHost is the address below the broadcast address.
func lastHost(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= 1<<(32-p.Bits()) - 1
	v--
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
