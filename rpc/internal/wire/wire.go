// Package wire is libhal's RPC wire format, apart from what serves or calls
// it: XDR items, SLIP frames, the function numbers, the status codes and
// the layout of every function's arguments and results.
//
// The transport is a byte stream. Each message is one SLIP frame (RFC 1055;
// [AppendFrame], [FrameReader]) of at most [MaxPacket] bytes, and its
// payload is XDR (RFC 4506; [Encoder], [Decoder]): big-endian uints, and
// bytes as a length, the data and zero padding to a multiple of four.
//
//	request:  uint func, uint client, arguments
//	response: uint func, uint client, uint status, results (status 0 only)
//
// [Func] numbers the 32 functions of libhal's API and [Status] its status
// codes. Every function has a request type and a response type (for
// example [PkeySignRequest] and [PkeySignResponse]) holding its arguments
// and results in wire order; [NewRequest] and [NewResponse] make them from a
// function number. The layouts are libhal's (DiamondKeySecurity/libhal,
// rpc_server.c and cryptech/libhal.py) as of PKEY_GENERATE_HASHSIG.
//
// Decoding never trusts a length: every bytes item is bounded by
// [MaxPacket] and by the input left, padding must be zero, and a message
// must be used up exactly. Failures wrap [StatusXDRBufferOverflow] (input
// cut short) or [StatusRPCProtocolError] (malformed input), so a server can
// send them back as the status. Decoded bytes fields are copies and never
// alias the input buffer.
package wire

// MaxPacket is the largest message libhal sends or accepts, in bytes of
// payload (before SLIP escaping). It also bounds every bytes field.
const MaxPacket = 16384

// Args is implemented by the request and response type of every function
// (as pointers). EncodeArgs appends the arguments or results; DecodeArgs
// reads them and returns the Decoder's error, leaving the check that
// nothing is left over to the caller (Decoder.Finish).
type Args interface {
	EncodeArgs(e *Encoder)
	DecodeArgs(d *Decoder) error
}

// Header is the start of every message: the function number and the client
// handle. A server that accepts many connections gives each its own client
// handle and overwrites this field, as cryptech_muxd does.
type Header struct {
	Func   Func
	Client uint32
}

// EncodeRequest returns a request payload: func, client, then args (which
// may be nil for a function without arguments).
func EncodeRequest(f Func, client uint32, args Args) []byte {
	var e Encoder
	e.Uint32(uint32(f))
	e.Uint32(client)
	if args != nil {
		args.EncodeArgs(&e)
	}
	return e.Data()
}

// EncodeResponse returns a response payload: func, client, status, then the
// results when status is [StatusOK]. Results are ignored (and may be nil)
// for any other status, as libhal sends none.
func EncodeResponse(f Func, client uint32, status Status, results Args) []byte {
	var e Encoder
	e.Uint32(uint32(f))
	e.Uint32(client)
	e.Uint32(uint32(status))
	if status == StatusOK && results != nil {
		results.EncodeArgs(&e)
	}
	return e.Data()
}

// DecodeRequestHeader reads func and client from a request payload and
// returns a Decoder positioned at the arguments. It does not check the
// function number: [NewRequest] does. On error (a payload shorter than a
// header) the Header holds whatever could be read.
func DecodeRequestHeader(payload []byte) (Header, *Decoder, error) {
	d := NewDecoder(payload)
	h := Header{Func: Func(d.Uint32()), Client: d.Uint32()}
	return h, d, d.Err()
}

// DecodeResponse reads a response payload: func, client, status, then, when
// the status is [StatusOK], the results into results (nil means none are
// expected). It checks that nothing is left over. A status other than OK is
// returned as the Status, not as the error; the error reports only a
// malformed payload. The caller checks that Header.Func is the function it
// called (libhal clients skip responses that are not).
func DecodeResponse(payload []byte, results Args) (Header, Status, error) {
	d := NewDecoder(payload)
	h := Header{Func: Func(d.Uint32()), Client: d.Uint32()}
	st := Status(d.Uint32())
	if d.Err() == nil && st == StatusOK && results != nil {
		results.DecodeArgs(d)
	}
	return h, st, d.Finish()
}
