package testenv

import (
	"bufio"
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

// respDo sends one command to the Redis server at addr over a fresh TCP
// connection and returns its reply: a string (simple or bulk), an int64, a
// []any, or nil. An error reply is returned as a respError.
//
// It is deliberately tiny. The helpers only need PING, INFO, SHUTDOWN and a
// few CLUSTER commands; a raw connection keeps go-redis's pools, retries and
// background work out of the start-up and shutdown paths.
func respDo(addr string, timeout time.Duration, args ...string) (any, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}

	// A command is an array of bulk strings.
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return nil, err
	}
	return readReply(bufio.NewReader(conn))
}

// respString is respDo for commands whose reply is a string.
func respString(addr string, timeout time.Duration, args ...string) (string, error) {
	reply, err := respDo(addr, timeout, args...)
	if err != nil {
		return "", err
	}
	s, ok := reply.(string)
	if !ok {
		return "", fmt.Errorf("%s: reply %v (%T), want a string", strings.Join(args, " "), reply, reply)
	}
	return s, nil
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
