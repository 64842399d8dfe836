package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// checkDecodeError fails unless err is nil or wraps one of the two statuses
// a decoder may report.
func checkDecodeError(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if st := statusOfErr(err); st != StatusXDRBufferOverflow && st != StatusRPCProtocolError {
		t.Fatalf("decode error wraps no decoding status: %v", err)
	}
}

// FuzzDecodeRequest decodes a request payload as a server does. It must
// never panic, must fail only with a decoding status, and whatever decodes
// must encode back to the same bytes: the decoder accepts only canonical
// XDR.
func FuzzDecodeRequest(f *testing.F) {
	for _, g := range loadGolden(f) {
		if goldenCases[g.Name].kind == "req" {
			f.Add(g.Data)
		}
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		h, d, err := DecodeRequestHeader(payload)
		checkDecodeError(t, err)
		if err != nil {
			return
		}
		args, ok := NewRequest(h.Func)
		if !ok {
			return
		}
		derr := args.DecodeArgs(d)
		checkDecodeError(t, derr)
		ferr := d.Finish()
		checkDecodeError(t, ferr)
		if derr != nil && ferr == nil {
			t.Fatalf("DecodeArgs failed (%v) but Finish did not", derr)
		}
		if ferr != nil {
			return
		}
		if again := EncodeRequest(h.Func, h.Client, args); !bytes.Equal(again, payload) {
			t.Fatalf("%v re-encodes differently:\n got %x\nwant %x", h.Func, again, payload)
		}
	})
}

// FuzzDecodeResponse decodes a response payload as a client does, with the
// same rules as FuzzDecodeRequest.
func FuzzDecodeResponse(f *testing.F) {
	for _, g := range loadGolden(f) {
		c := goldenCases[g.Name]
		if c.kind == "req" {
			continue
		}
		lengths := false
		if r, ok := c.value.(*PkeyGetAttributesResponse); ok {
			lengths = r.LengthsOnly
		}
		f.Add(g.Data, lengths)
	}
	f.Fuzz(func(t *testing.T, payload []byte, lengthsOnly bool) {
		if len(payload) < 4 {
			_, _, err := DecodeResponse(payload, nil)
			if statusOfErr(err) != StatusXDRBufferOverflow {
				t.Fatalf("short payload: %v", err)
			}
			return
		}
		fn := Func(binary.BigEndian.Uint32(payload))
		results, ok := NewResponse(fn)
		if r, isGA := results.(*PkeyGetAttributesResponse); isGA {
			r.LengthsOnly = lengthsOnly
		}
		h, st, err := DecodeResponse(payload, results)
		checkDecodeError(t, err)
		if err != nil || !ok {
			return
		}
		if h.Func != fn {
			t.Fatalf("func %v, header says %v", fn, h.Func)
		}
		if again := EncodeResponse(h.Func, h.Client, st, results); !bytes.Equal(again, payload) {
			t.Fatalf("%v re-encodes differently:\n got %x\nwant %x", h.Func, again, payload)
		}
	})
}

// refFrames is a plain byte-at-a-time model of FrameReader: the results it
// should give for data, up to and including the final EOF.
func refFrames(data []byte, max int) []frameStep {
	var out []frameStep
	var cur []byte
	esc := false
	var bad error
	for _, c := range data {
		if bad != nil {
			if c == slipEnd {
				out = append(out, frameStep{err: bad})
				bad, cur = nil, nil
			}
			continue
		}
		if esc {
			esc = false
			switch c {
			case slipEscEnd:
				c = slipEnd
			case slipEscEsc:
				c = slipEsc
			case slipEnd:
				out = append(out, frameStep{err: ErrBadEscape})
				cur = nil
				continue
			default:
				bad = ErrBadEscape
				continue
			}
		} else if c == slipEsc {
			esc = true
			continue
		} else if c == slipEnd {
			if len(cur) > 0 {
				out = append(out, frameStep{frame: hex.EncodeToString(cur)})
			}
			cur = nil
			continue
		}
		if len(cur) >= max {
			bad = ErrFrameTooLong
			continue
		}
		cur = append(cur, c)
	}
	if len(cur) > 0 || esc || bad != nil {
		out = append(out, frameStep{err: io.ErrUnexpectedEOF})
	}
	return append(out, frameStep{err: io.EOF})
}

// FuzzFrameReader compares FrameReader with refFrames on any stream, read
// in one piece and one byte at a time, and checks that re-framing the
// frames it returns gives them back.
func FuzzFrameReader(f *testing.F) {
	f.Add([]byte{}, uint8(16))
	f.Add(unhex("c0 61 db 61 62 c0 c0 63 c0"), uint8(16))
	f.Add(unhex("c0 0102030405 c0 c0 6f6b c0"), uint8(4))
	f.Add(unhex("c0 dbdc dbdd 01 c0 61"), uint8(0))
	for _, g := range loadGolden(f) {
		f.Add(AppendFrame(nil, g.Data), uint8(len(g.Data)))
	}
	f.Fuzz(func(t *testing.T, data []byte, max8 uint8) {
		max := int(max8)
		if max == 0 {
			max = MaxPacket
		}
		want := refFrames(data, max)
		for _, r := range []io.Reader{bytes.NewReader(data), iotest.OneByteReader(bytes.NewReader(data))} {
			fr := NewFrameReader(r, max)
			var frames [][]byte
			for i, w := range want {
				got, err := fr.ReadFrame()
				if w.err != nil {
					if !errors.Is(err, w.err) {
						t.Fatalf("read %d: got %x, %v; want %v", i, got, err, w.err)
					}
					continue
				}
				if err != nil || hex.EncodeToString(got) != w.frame {
					t.Fatalf("read %d: got %x, %v; want %s", i, got, err, w.frame)
				}
				if len(got) == 0 || len(got) > max {
					t.Fatalf("read %d: frame of %d bytes, limit %d", i, len(got), max)
				}
				frames = append(frames, bytes.Clone(got))
			}
			var stream []byte
			for _, fb := range frames {
				stream = AppendFrame(stream, fb)
			}
			fr = NewFrameReader(bytes.NewReader(stream), max)
			for i, fb := range frames {
				got, err := fr.ReadFrame()
				if err != nil || !bytes.Equal(got, fb) {
					t.Fatalf("re-framed %d: got %x, %v; want %x", i, got, err, fb)
				}
			}
			if _, err := fr.ReadFrame(); err != io.EOF {
				t.Fatalf("re-framed stream: %v", err)
			}
		}
	})
}
