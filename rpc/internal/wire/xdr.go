package wire

import (
	"encoding/binary"
	"fmt"
)

// An Encoder appends XDR (RFC 4506) items to a byte slice: a uint is four
// bytes, big-endian; a bytes item is its length as a uint, the data, and
// zero bytes up to a multiple of four. The zero Encoder is ready to use.
type Encoder struct {
	buf []byte
}

// growClearing returns b with room for n more bytes. When that takes a new
// array it clears the old one: requests carry PINs, and a copy left behind
// in an outgrown array could never be cleared.
func growClearing(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	grown := make([]byte, len(b), max(2*cap(b), len(b)+n, 64))
	copy(grown, b)
	clear(b[:cap(b)])
	return grown
}

// Uint32 appends v as an XDR unsigned int.
func (e *Encoder) Uint32(v uint32) {
	e.buf = growClearing(e.buf, 4)
	e.buf = binary.BigEndian.AppendUint32(e.buf, v)
}

// Bytes appends b as XDR variable-length opaque data: its length, the data,
// and zero padding to a multiple of four bytes.
func (e *Encoder) Bytes(b []byte) {
	e.buf = growClearing(e.buf, 4+len(b)+pad(len(b)))
	e.Uint32(uint32(len(b)))
	e.buf = append(e.buf, b...)
	e.buf = append(e.buf, make([]byte, pad(len(b)))...)
}

// Grow makes room for n more bytes, so that a long answer whose size is
// known (a key list) is written without copying as it grows.
func (e *Encoder) Grow(n int) { e.buf = growClearing(e.buf, n) }

// Data returns everything appended so far. The slice aliases the Encoder's
// buffer until the next append.
func (e *Encoder) Data() []byte { return e.buf }

// pad returns the number of zero bytes that follow n bytes of opaque data.
func pad(n int) int { return -n & 3 }

// A Decoder reads XDR items from a byte slice. The first failure is sticky:
// later reads return zero values and Err reports that first failure, so a
// message can be decoded field by field and checked once at the end.
//
// Errors wrap [StatusXDRBufferOverflow] when the input ends before an item
// does, and [StatusRPCProtocolError] when the input is malformed (a length
// over its bound, nonzero padding, bytes left over); test for them with
// errors.Is.
type Decoder struct {
	buf []byte
	off int
	err error
}

// NewDecoder returns a Decoder reading b. It never modifies b, and bytes
// fields it returns are copies, so b may be reused once decoding is done.
func NewDecoder(b []byte) *Decoder {
	return &Decoder{buf: b}
}

func (d *Decoder) remaining() int { return len(d.buf) - d.off }

func (d *Decoder) fail(st Status, format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("xdr: at offset %d: %s: %w", d.off, fmt.Sprintf(format, args...), st)
	}
}

// Uint32 reads an XDR unsigned int. If fewer than four bytes remain it
// records an error wrapping [StatusXDRBufferOverflow] and returns 0.
func (d *Decoder) Uint32() uint32 {
	if d.err != nil {
		return 0
	}
	if d.remaining() < 4 {
		d.fail(StatusXDRBufferOverflow, "need 4 bytes for a uint, have %d", d.remaining())
		return 0
	}
	v := binary.BigEndian.Uint32(d.buf[d.off:])
	d.off += 4
	return v
}

// Bytes reads XDR variable-length opaque data of at most max bytes (and
// never more than [MaxPacket]; a max outside 0..MaxPacket means MaxPacket).
// The result is a copy, nil for a zero length. A length over the bound or
// nonzero padding records an error wrapping [StatusRPCProtocolError]; data
// or padding cut short records one wrapping [StatusXDRBufferOverflow].
func (d *Decoder) Bytes(max int) []byte {
	n := d.Uint32()
	if d.err != nil {
		return nil
	}
	return d.opaque(n, max)
}

// opaque reads the n data bytes and the padding of an opaque item whose
// length word has already been read.
func (d *Decoder) opaque(n uint32, max int) []byte {
	if d.err != nil {
		return nil
	}
	if max < 0 || max > MaxPacket {
		max = MaxPacket
	}
	if uint64(n) > uint64(max) {
		d.fail(StatusRPCProtocolError, "opaque length %d exceeds %d", n, max)
		return nil
	}
	size := int(n) + pad(int(n))
	if d.remaining() < size {
		d.fail(StatusXDRBufferOverflow, "need %d bytes for opaque data, have %d", size, d.remaining())
		return nil
	}
	for _, c := range d.buf[d.off+int(n) : d.off+size] {
		if c != 0 {
			d.fail(StatusRPCProtocolError, "nonzero padding after %d bytes of opaque data", n)
			return nil
		}
	}
	var b []byte
	if n > 0 {
		b = make([]byte, n)
		copy(b, d.buf[d.off:])
	}
	d.off += size
	return b
}

// count reads the uint that prefixes an array of items of at least minSize
// bytes each. A count over max (when max >= 0) records an error wrapping
// [StatusRPCProtocolError]; a count that the remaining input cannot
// possibly hold records one wrapping [StatusXDRBufferOverflow]. Either way
// it returns 0, so callers can allocate count items without trusting the
// peer.
func (d *Decoder) count(minSize, max int) int {
	n := d.Uint32()
	if d.err != nil {
		return 0
	}
	if max >= 0 && uint64(n) > uint64(max) {
		d.fail(StatusRPCProtocolError, "%d items, at most %d allowed", n, max)
		return 0
	}
	if uint64(n)*uint64(minSize) > uint64(d.remaining()) {
		d.fail(StatusXDRBufferOverflow, "%d items need at least %d bytes, have %d", n, uint64(n)*uint64(minSize), d.remaining())
		return 0
	}
	return int(n)
}

// The lists and other compound items of messages.go follow. Each decoder
// returns nil when it fails.

// uint32s appends uint n, then n uints.
func (e *Encoder) uint32s(v []uint32) {
	e.Uint32(uint32(len(v)))
	for _, x := range v {
		e.Uint32(x)
	}
}

// uint32s reads what Encoder.uint32s writes, at most max items (max < 0:
// any number).
func (d *Decoder) uint32s(max int) []uint32 {
	n := d.count(4, max)
	if n == 0 {
		return nil
	}
	v := make([]uint32, n)
	for i := range v {
		v[i] = d.Uint32()
	}
	return v
}

// byteSlices appends uint n, then n bytes items.
func (e *Encoder) byteSlices(v [][]byte) {
	e.Uint32(uint32(len(v)))
	for _, b := range v {
		e.Bytes(b)
	}
}

// byteSlices reads what Encoder.byteSlices writes: at most count items
// (count < 0: any number) of at most max bytes each.
func (d *Decoder) byteSlices(max, count int) [][]byte {
	n := d.count(4, count)
	if n == 0 {
		return nil
	}
	v := make([][]byte, n)
	for i := range v {
		v[i] = d.Bytes(max)
	}
	if d.err != nil {
		return nil
	}
	return v
}

// strings appends uint n, then n bytes items.
func (e *Encoder) strings(v []string) {
	e.Uint32(uint32(len(v)))
	for _, s := range v {
		e.Bytes([]byte(s))
	}
}

// strings reads what Encoder.strings writes, as byteSlices does.
func (d *Decoder) strings(max, count int) []string {
	bs := d.byteSlices(max, count)
	if bs == nil {
		return nil
	}
	v := make([]string, len(bs))
	for i, b := range bs {
		v[i] = string(b)
	}
	return v
}

// optional appends uint has, then bytes, so that nil and empty differ.
func (e *Encoder) optional(b []byte) {
	if b == nil {
		e.Uint32(0)
		e.Bytes(nil)
		return
	}
	e.Uint32(1)
	e.Bytes(b)
}

// optional reads what Encoder.optional writes.
func (d *Decoder) optional() []byte {
	has := d.Uint32()
	b := d.Bytes(MaxPacket)
	if has == 0 || d.err != nil {
		return nil
	}
	if b == nil {
		b = []byte{}
	}
	return b
}

// bitmap appends uint n, then bytes with bit i%8 of byte i/8 set for each
// true v[i].
func (e *Encoder) bitmap(v []bool) {
	e.Uint32(uint32(len(v)))
	bits := make([]byte, (len(v)+7)/8)
	for i, set := range v {
		if set {
			bits[i/8] |= 1 << (i % 8)
		}
	}
	e.Bytes(bits)
}

// bitmap reads what Encoder.bitmap writes, at most count bits (count < 0:
// any number). The bytes must be just enough for the bits.
func (d *Decoder) bitmap(count int) []bool {
	n := d.Uint32()
	bits := d.Bytes(MaxPacket)
	if d.err != nil {
		return nil
	}
	if count >= 0 && uint64(n) > uint64(count) || len(bits) != (int(n)+7)/8 {
		d.fail(StatusRPCProtocolError, "%d bits in %d bytes", n, len(bits))
		return nil
	}
	v := make([]bool, n)
	for i := range v {
		v[i] = bits[i/8]&(1<<(i%8)) != 0
	}
	return v
}

// Err returns the first decoding failure, or nil.
func (d *Decoder) Err() error { return d.err }

// Finish returns Err, or an error wrapping [StatusRPCProtocolError] if input
// remains unread.
func (d *Decoder) Finish() error {
	if d.err == nil && d.remaining() > 0 {
		d.fail(StatusRPCProtocolError, "%d bytes left over", d.remaining())
	}
	return d.err
}
