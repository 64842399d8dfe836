package keystore

import (
	"encoding/binary"
	"testing"
)

// benchBlocks is the chip size of the benchmarks: the default board's.
const benchBlocks = 1024

// benchRecord returns a new record of size bytes numbered n.
func benchRecord(n, size int) Record {
	var id ID
	binary.BigEndian.PutUint64(id[8:], uint64(n))
	return Record{ID: id, Kind: 1, Data: make([]byte, size)}
}

// BenchmarkPut writes new records of 1.5 KiB, each made durable (one program
// and one fsync). The chip is replaced, outside the timer, when full.
func BenchmarkPut(b *testing.B) {
	_, _, s := newStore(b, benchBlocks)
	b.SetBytes(1536)
	n := 0
	for b.Loop() {
		if s.Free() == 0 {
			b.StopTimer()
			_, _, s = newStore(b, benchBlocks)
			b.StartTimer()
		}
		if err := s.Put(benchRecord(n, 1536)); err != nil {
			b.Fatal(err)
		}
		n++
	}
}

// BenchmarkPutUpdate replaces a 1.5 KiB record: tombstone, program, fsync,
// erase.
func BenchmarkPutUpdate(b *testing.B) {
	_, _, s := newStore(b, benchBlocks)
	b.SetBytes(1536)
	for b.Loop() {
		if err := s.Put(benchRecord(1, 1536)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGet reads 1.5 KiB records back, CRC checked.
func BenchmarkGet(b *testing.B) {
	_, _, s := newStore(b, benchBlocks)
	const records = 100
	for n := range records {
		if err := s.PutAll([]Record{benchRecord(n, 1536)}); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(1536)
	n := 0
	for b.Loop() {
		if _, err := s.Get(benchRecord(n%records, 0).ID); err != nil {
			b.Fatal(err)
		}
		n++
	}
}

// BenchmarkPutAll10 writes ten new 1.5 KiB records atomically: 32 flash
// writes (a commit mark each among them) and three fsyncs.
func BenchmarkPutAll10(b *testing.B) {
	_, _, s := newStore(b, benchBlocks)
	b.SetBytes(10 * 1536)
	rs := make([]Record, 10)
	n := 0
	for b.Loop() {
		if s.Free() < len(rs)+1 {
			b.StopTimer()
			_, _, s = newStore(b, benchBlocks)
			b.StartTimer()
		}
		for i := range rs {
			rs[i] = benchRecord(n, 1536)
			n++
		}
		if err := s.PutAll(rs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen scans a full default-size chip.
func BenchmarkOpen(b *testing.B) {
	_, f, s := newStore(b, benchBlocks)
	for n := range benchBlocks / 2 {
		if err := s.Put(benchRecord(n, 1536)); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		if _, err := Open(f); err != nil {
			b.Fatal(err)
		}
	}
}
