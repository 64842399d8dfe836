package wire

import (
	"errors"
	"fmt"
	"io"
	"slices"
)

// SLIP (RFC 1055) special bytes.
const (
	slipEnd    = 0xC0 // ends a frame
	slipEsc    = 0xDB // starts an escape
	slipEscEnd = 0xDC // ESC ESC_END is a data 0xC0
	slipEscEsc = 0xDD // ESC ESC_ESC is a data 0xDB
)

// Errors from [FrameReader.ReadFrame]. After either, the reader has skipped
// to the end of the bad frame and the next call reads the next frame.
var (
	// ErrFrameTooLong reports a frame whose payload exceeds the reader's
	// limit. It wraps StatusRPCPacketOverflow.
	ErrFrameTooLong = fmt.Errorf("slip: frame too long: %w", StatusRPCPacketOverflow)
	// ErrBadEscape reports an ESC byte followed by something other than
	// ESC_END or ESC_ESC. It wraps StatusRPCProtocolError.
	ErrBadEscape = fmt.Errorf("slip: bad escape sequence: %w", StatusRPCProtocolError)
)

// AppendFrame appends payload to dst as one SLIP frame and returns the
// extended slice: END, the payload with 0xC0 sent as DB DC and 0xDB as
// DB DD, then END. The leading END flushes any line noise a receiver holds,
// as libhal's senders do; receivers skip the empty frame it may create.
func AppendFrame(dst, payload []byte) []byte {
	n := len(payload) + 2
	for _, c := range payload {
		if c == slipEnd || c == slipEsc {
			n++
		}
	}
	dst = slices.Grow(dst, n)
	dst = append(dst, slipEnd)
	for len(payload) > 0 {
		i := 0
		for i < len(payload) && payload[i] != slipEnd && payload[i] != slipEsc {
			i++
		}
		dst = append(dst, payload[:i]...)
		if i == len(payload) {
			break
		}
		if payload[i] == slipEnd {
			dst = append(dst, slipEsc, slipEscEnd)
		} else {
			dst = append(dst, slipEsc, slipEscEsc)
		}
		payload = payload[i+1:]
	}
	return append(dst, slipEnd)
}

// frameReadSize is the size of a FrameReader's read buffer.
const frameReadSize = 4096

// A FrameReader reads SLIP frames from a byte stream. It buffers its input,
// so it may read past the end of the frame it returns; use one FrameReader
// per stream for the life of the stream. It is not safe for concurrent use.
type FrameReader struct {
	r     io.Reader
	max   int
	buf   []byte // read buffer; buf[r0:r1] is unread input
	r0    int
	r1    int
	frame []byte // the frame being assembled, reused between calls
	err   error  // sticky error from r
}

// NewFrameReader returns a FrameReader on r that accepts payloads of at
// most max bytes after unescaping; max <= 0 means [MaxPacket].
func NewFrameReader(r io.Reader, max int) *FrameReader {
	if max <= 0 {
		max = MaxPacket
	}
	return &FrameReader{r: r, max: max}
}

// fill reads more input into the empty read buffer. It records a read error
// in fr.err; a reader that keeps returning no data and no error is reported
// as io.ErrNoProgress.
func (fr *FrameReader) fill() {
	if fr.buf == nil {
		fr.buf = make([]byte, frameReadSize)
	}
	clear(fr.buf[:fr.r1]) // consumed input: a short read would leave some behind
	fr.r0, fr.r1 = 0, 0
	for range 100 {
		n, err := fr.r.Read(fr.buf)
		if n < 0 || n > len(fr.buf) {
			fr.err = errors.New("slip: reader returned an invalid count")
			return
		}
		fr.r1 = n
		if err != nil {
			fr.err = err
		}
		if n > 0 || err != nil {
			return
		}
	}
	fr.err = io.ErrNoProgress
}

// ReadFrame returns the payload of the next non-empty frame, unescaped. The
// slice is valid until the next call.
//
// At the end of the stream it returns io.EOF, or io.ErrUnexpectedEOF if the
// stream ends inside a frame (a sender must end every frame with END). A
// frame over the limit gives [ErrFrameTooLong] and a bad escape gives
// [ErrBadEscape]; both discard the rest of the frame up to its END, so the
// stream stays usable. Any other error is the underlying reader's.
func (fr *FrameReader) ReadFrame() ([]byte, error) {
	frame := fr.frame[:0]
	escaped := false // the previous byte was ESC
	var bad error    // set while discarding the rest of a bad frame
	for {
		if fr.r0 == fr.r1 {
			if fr.err != nil {
				fr.frame = frame[:0]
				inFrame := len(frame) > 0 || escaped || bad != nil
				if fr.err == io.EOF && inFrame {
					return nil, io.ErrUnexpectedEOF
				}
				return nil, fr.err
			}
			fr.fill()
			continue
		}
		in := fr.buf[fr.r0:fr.r1]

		if bad != nil {
			i := 0
			for i < len(in) && in[i] != slipEnd {
				i++
			}
			fr.r0 += i
			if i < len(in) {
				fr.r0++ // the END
				fr.frame = frame[:0]
				return nil, bad
			}
			continue
		}

		if escaped {
			c := in[0]
			fr.r0++
			escaped = false
			switch c {
			case slipEscEnd:
				c = slipEnd
			case slipEscEsc:
				c = slipEsc
			case slipEnd:
				// The END ends the bad frame; there is nothing to skip.
				fr.frame = frame[:0]
				return nil, ErrBadEscape
			default:
				bad = ErrBadEscape
				continue
			}
			if len(frame) >= fr.max {
				bad = ErrFrameTooLong
				continue
			}
			frame = append(growClearing(frame, 1), c)
			continue
		}

		// Copy a run of ordinary bytes in one go.
		i := 0
		for i < len(in) && in[i] != slipEnd && in[i] != slipEsc {
			i++
		}
		if i > 0 {
			if len(frame)+i > fr.max {
				fr.r0 += i
				bad = ErrFrameTooLong
				continue
			}
			frame = append(growClearing(frame, i), in[:i]...)
			fr.r0 += i
			continue
		}
		fr.r0++
		if in[0] == slipEsc {
			escaped = true
			continue
		}
		// END.
		if len(frame) == 0 {
			continue // an empty frame, such as the END that starts a frame
		}
		// Frames may carry PINs: what was read of this one need not wait
		// for the next read to be overwritten.
		clear(fr.buf[:fr.r0])
		fr.frame = frame
		return frame, nil
	}
}
