package keystore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"
)

func testBlocksTable() []block {
	data := func(n int) []byte { return rec(1, 1, n, 0).Data }
	return []block{
		{status: statusLive, typ: typeRecord, kind: 1, seq: 1, id: id(1), data: data(10)},
		{status: statusLive, typ: typeRecord, kind: 255, seq: 1<<64 - 1, txn: 7, id: ID{}, data: nil},
		{status: statusPending, typ: typeRecord, kind: 3, seq: 9, txn: 9, id: id(2), data: data(1536)},
		{status: statusTombstone, typ: typeRecord, kind: 2, seq: 5, id: id(3), data: data(MaxDataSize)},
		{status: statusLive, typ: typeCommit, seq: 12, txn: 9},
	}
}

func TestBlockEncodeDecode(t *testing.T) {
	for i, b := range testBlocksTable() {
		img := b.encode()
		if len(img) != headerSize+len(b.data) {
			t.Fatalf("#%d: image of %d bytes", i, len(img))
		}
		if want := crc32.Update(crc32.ChecksumIEEE(img[1:4]), crc32.IEEETable, img[8:]); storedCRC(img) != want {
			t.Fatalf("#%d: CRC %#x, want %#x", i, storedCRC(img), want)
		}
		got, err := decodeBlock(img)
		if err != nil {
			t.Fatalf("#%d: %v", i, err)
		}
		if got.status != b.status || got.typ != b.typ || got.kind != b.kind || got.seq != b.seq ||
			got.txn != b.txn || got.id != b.id || !bytes.Equal(got.data, b.data) {
			t.Fatalf("#%d: decoded %+v, want %+v", i, got, b)
		}
		// In a whole block, the erased tail is ignored.
		whole := bytes.Clone(erasedBlock)
		copy(whole, img)
		if _, err := decodeBlock(whole); err != nil {
			t.Fatalf("#%d: in a whole block: %v", i, err)
		}
		// The status byte is outside the CRC: every status transition keeps
		// the block valid.
		for _, st := range []byte{statusPending, statusLive, statusTombstone} {
			img[offStatus] = st
			_, err := decodeBlock(img)
			valid := b.typ == typeRecord && (st != statusPending || b.txn != 0) || st == statusLive
			if valid != (err == nil) {
				t.Errorf("#%d: status %#x: %v", i, st, err)
			}
		}
	}
}

// TestDecodeBlockInvalid changes one thing in a valid image at a time. Where
// the change is inside the CRC, it is tried both with the CRC left as it was
// and with a fixed CRC, so the check behind it is reached too.
func TestDecodeBlockInvalid(t *testing.T) {
	valid := block{status: statusLive, typ: typeRecord, kind: 1, seq: 4, id: id(1), data: []byte("payload")}
	commit := block{status: statusLive, typ: typeCommit, seq: 5, txn: 4}
	fixCRC := func(p []byte) {
		n := min(int(binary.BigEndian.Uint32(p[offLen:])), len(p)-headerSize)
		binary.BigEndian.PutUint32(p[offCRC:], blockCRC(p[:headerSize], p[headerSize:headerSize+n]))
	}
	tests := []struct {
		name    string
		base    block
		mod     func(p []byte)
		crcOnly bool // only the CRC catches it: no fixed-CRC variant
	}{
		{"erased status", valid, func(p []byte) { p[offStatus] = statusErased }, false},
		{"zero status", valid, func(p []byte) { p[offStatus] = 0 }, false},
		{"unknown status", valid, func(p []byte) { p[offStatus] = 0x55 }, false},
		{"unknown type", valid, func(p []byte) { p[offType] = 'X' }, false},
		{"kind 0", valid, func(p []byte) { p[offKind] = 0 }, false},
		{"kind changed", valid, func(p []byte) { p[offKind] = 2 }, true},
		{"reserved byte", valid, func(p []byte) { p[offZero] = 1 }, false},
		{"sequence 0", valid, func(p []byte) { binary.BigEndian.PutUint64(p[offSeq:], 0) }, false},
		{"sequence changed", valid, func(p []byte) { p[offSeq+7] ^= 1 }, true},
		{"ID changed", valid, func(p []byte) { p[offID] ^= 0x80 }, true},
		{"data changed", valid, func(p []byte) { p[headerSize] ^= 1 }, true},
		{"CRC changed", valid, func(p []byte) { p[offCRC] ^= 1 }, true},
		{"length too large", valid, func(p []byte) { binary.BigEndian.PutUint32(p[offLen:], MaxDataSize+1) }, false},
		{"length all ones", valid, func(p []byte) { binary.BigEndian.PutUint32(p[offLen:], 0xFFFFFFFF) }, false},
		{"length past the image", valid, func(p []byte) { binary.BigEndian.PutUint32(p[offLen:], 8) }, false},
		{"pending without transaction", valid, func(p []byte) { p[offStatus] = statusPending }, false},
		{"pending commit", commit, func(p []byte) { p[offStatus] = statusPending }, false},
		{"tombstone commit", commit, func(p []byte) { p[offStatus] = statusTombstone }, false},
		{"commit with kind", commit, func(p []byte) { p[offKind] = 1 }, false},
		{"commit with ID", commit, func(p []byte) { p[offID+3] = 1 }, false},
		{"commit without transaction", commit, func(p []byte) { binary.BigEndian.PutUint64(p[offTxn:], 0) }, false},
	}
	for _, tt := range tests {
		for _, fix := range []bool{false, true} {
			if fix && tt.crcOnly {
				continue
			}
			p := tt.base.encode()
			tt.mod(p)
			if fix {
				fixCRC(p)
			}
			if _, err := decodeBlock(p); !errors.Is(err, ErrDamaged) {
				t.Errorf("%s (CRC fixed: %v): %v, want ErrDamaged", tt.name, fix, err)
			}
		}
	}
	// A commit block with data, CRC fixed.
	p := append(commit.encode(), 0)
	binary.BigEndian.PutUint32(p[offLen:], 1)
	fixCRC(p)
	if _, err := decodeBlock(p); !errors.Is(err, ErrDamaged) {
		t.Errorf("commit with data: %v", err)
	}
}

func TestDecodeBlockBadLengths(t *testing.T) {
	for i, b := range testBlocksTable() {
		img := b.encode()
		for n := range len(img) {
			if _, err := decodeBlock(img[:n]); !errors.Is(err, ErrDamaged) {
				t.Fatalf("#%d truncated to %d of %d bytes: %v", i, n, len(img), err)
			}
		}
		for n := 1; n <= 100; n++ {
			ext := append(bytes.Clone(img), bytes.Repeat([]byte{byte(n)}, n)...)
			got, err := decodeBlock(ext)
			if err != nil {
				t.Fatalf("#%d extended by %d bytes: %v", i, n, err)
			}
			if !bytes.Equal(got.data, b.data) {
				t.Fatalf("#%d extended by %d bytes: data changed", i, n)
			}
		}
	}
}

func FuzzDecodeBlock(f *testing.F) {
	for _, b := range testBlocksTable() {
		img := b.encode()
		f.Add(img[:min(len(img), 200)])
	}
	f.Add([]byte{})
	f.Add(erasedBlock[:headerSize])
	f.Add(make([]byte, headerSize))
	f.Fuzz(func(t *testing.T, p []byte) {
		b, err := decodeBlock(p)
		if err != nil {
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("error not ErrDamaged: %v", err)
			}
			return
		}
		// What decodes re-encodes to the same bytes.
		if img := b.encode(); !bytes.Equal(img, p[:len(img)]) {
			t.Fatalf("re-encoded\n% x\nwant\n% x", img, p[:len(img)])
		}
		// And its class is not garbage.
		whole := bytes.Clone(erasedBlock)
		copy(whole, p[:b.size()])
		if s := classify(whole); s.class == classGarbage || s.class == classErased {
			t.Fatalf("valid block classified %v", s.class)
		}
	})
}
