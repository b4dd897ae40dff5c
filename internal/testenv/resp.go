package testenv

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// respError is an error reply from Redis, such as "LOADING ..." or
// "ERR ...".
type respError string

func (e respError) Error() string { return "redis: " + string(e) }

// respClient says how testenv's own commands reach a server: over TLS
// when tls is set, and logged in as user when it is set.
type respClient struct {
	tls            *tls.Config // nil: plaintext
	user, password string      // empty user: no AUTH
}

// respDo sends one command to the Redis server at addr over a fresh
// plaintext connection, without AUTH: respClient{}.do.
func respDo(addr string, timeout time.Duration, args ...string) (any, error) {
	return respClient{}.do(addr, timeout, args...)
}

// do sends one command to the Redis server at addr over a fresh
// connection and returns its reply: a string (simple or bulk), an int64, a
// []any, or nil. An error reply is returned as a respError.
//
// It is deliberately tiny. The helpers only need PING, INFO, SHUTDOWN and a
// few CLUSTER commands; a raw connection keeps go-redis's pools, retries and
// background work out of the start-up and shutdown paths.
func (c respClient) do(addr string, timeout time.Duration, args ...string) (any, error) {
	d := &net.Dialer{Timeout: timeout}
	var conn net.Conn
	var err error
	if c.tls != nil {
		conn, err = tls.DialWithDialer(d, "tcp", addr, c.tls)
	} else {
		conn, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	r := bufio.NewReader(conn)
	if c.user != "" {
		if _, err := send(conn, r, "AUTH", c.user, c.password); err != nil {
			return nil, fmt.Errorf("AUTH as %s: %w", c.user, err)
		}
	}
	return send(conn, r, args...)
}

// str is do for commands whose reply is a string.
func (c respClient) str(addr string, timeout time.Duration, args ...string) (string, error) {
	reply, err := c.do(addr, timeout, args...)
	if err != nil {
		return "", err
	}
	s, ok := reply.(string)
	if !ok {
		return "", fmt.Errorf("%s: reply %v (%T), want a string", strings.Join(args, " "), reply, reply)
	}
	return s, nil
}

// send writes one command and reads its reply.
func send(w io.Writer, r *bufio.Reader, args ...string) (any, error) {
	// A command is an array of bulk strings.
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return nil, err
	}
	return readReply(r)
}

// readReply reads one RESP2 reply.
func readReply(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, fmt.Errorf("redis: empty reply line")
	}
	kind, rest := line[0], line[1:]
	switch kind {
	case '+':
		return rest, nil
	case '-':
		return nil, respError(rest)
	case ':':
		return strconv.ParseInt(rest, 10, 64)
	case '$':
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 {
			return nil, err // a nil bulk string when n == -1
		}
		buf := make([]byte, n+2) // the data and its "\r\n"
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 {
			return nil, err // a nil array when n == -1
		}
		arr := make([]any, n)
		for i := range arr {
			if arr[i], err = readReply(r); err != nil {
				return nil, err
			}
		}
		return arr, nil
	default:
		return nil, fmt.Errorf("redis: unexpected reply %q", line)
	}
}
