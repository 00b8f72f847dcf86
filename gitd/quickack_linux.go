package gitd

import (
	"net"
	"syscall"
)

// handshakeBytes covers the key exchange and user authentication (a few
// KiB; the version line alone is read byte by byte).
const handshakeBytes = 16 << 10

// quickAck makes the kernel acknowledge every segment at once during the
// first kilobytes of a connection. OpenSSH turns on TCP_NODELAY only after
// login, so until then each of its back-to-back small packets (NEWKEYS,
// SERVICE_REQUEST) waits in its Nagle buffer for our delayed ACK: about
// 40 ms, up to twice per login. Linux clears TCP_QUICKACK on its own, so
// it is set again before each read until then.
func quickAck(c net.Conn) net.Conn {
	tcp, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return c
	}
	return &quickAckConn{Conn: c, raw: raw}
}

type quickAckConn struct {
	net.Conn
	raw  syscall.RawConn
	read int
}

func (c *quickAckConn) Read(p []byte) (int, error) {
	if c.read < handshakeBytes {
		_ = c.raw.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
		})
	}
	n, err := c.Conn.Read(p)
	c.read += n
	return n, err
}
