package server

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// decodeCodec is the gRPC door's codec: protobuf, but a request that does
// not decode (truncated, wire type 7, field number 0, invalid UTF-8 in a
// string) is the client's fault, so it is answered INVALID_ARGUMENT. gRPC
// turns any codec error into INTERNAL, so the codec does not fail: it
// notes the error against the message, and the first interceptor (unary)
// or the stream's RecvMsg refuses the message before anything reads it.
type decodeCodec struct {
	base encoding.CodecV2
	bad  *sync.Map // message -> decode error, until the interceptor takes it
}

func newDecodeCodec() decodeCodec {
	return decodeCodec{base: encoding.GetCodecV2(proto.Name), bad: &sync.Map{}}
}

func (c decodeCodec) Name() string { return c.base.Name() }

func (c decodeCodec) Marshal(v any) (mem.BufferSlice, error) {
	if w, ok := v.(wireMessage); ok {
		return mem.BufferSlice{mem.SliceBuffer(w.head), mem.SliceBuffer(w.body)}, nil
	}
	return c.base.Marshal(v)
}

// wireMessage is a response already encoded, head then body: a
// WatchIncidentResponse around an event as the bus delivered it, sent on
// as it came instead of encoded again for every watcher. Only this codec
// knows it, so only a stream of the gRPC door (onWire) may send one.
type wireMessage struct{ head, body []byte }

// wireDoor marks the context of a stream of the gRPC door.
type wireDoor struct{}

// onWire reports whether ctx is a stream's of the gRPC door, whose
// codec sends a wireMessage (the gateway's in-process door copies
// messages, and would refuse one).
func onWire(ctx context.Context) bool { return ctx.Value(wireDoor{}) != nil }

func (c decodeCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if err := c.base.Unmarshal(data, v); err != nil {
		c.bad.Store(v, err)
	}
	return nil
}

// take returns and forgets the decode error of message m.
func (c decodeCodec) take(m any) error {
	v, ok := c.bad.LoadAndDelete(m)
	if !ok {
		return nil
	}
	return status.Errorf(codes.InvalidArgument, "request is not a valid protobuf message: %v", v)
}

func (c decodeCodec) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := c.take(req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (c decodeCodec) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &decodedStream{ServerStream: ss, c: c, ctx: context.WithValue(ss.Context(), wireDoor{}, true)})
}

type decodedStream struct {
	grpc.ServerStream
	c   decodeCodec
	ctx context.Context
}

func (d *decodedStream) Context() context.Context { return d.ctx }

func (d *decodedStream) RecvMsg(m any) error {
	if err := d.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return d.c.take(m)
}
