package keystore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/hsmkit/cryptech-backup/sim"
)

// The layout of a flash block. Multi-byte fields are big-endian.
//
//	0       status (not covered by the CRC: it changes in place)
//	1       block type: typeRecord or typeCommit
//	2       Kind (0 in a commit block)
//	3       zero
//	4..8    CRC-32 (IEEE) over bytes 1..4 and 8..44+length
//	8..16   sequence number, never 0
//	16..24  transaction number: 0, or the Commit that wrote the block; for a
//	        commit block, the transaction it commits
//	24..40  ID (zero in a commit block)
//	40..44  data length, at most MaxDataSize (0 in a commit block)
//	44..    data; the rest of the block stays erased, but for:
//	8191    the commit mark (not covered by the CRC): erased, or markCommitted
//	        in a record a Commit wrote, programmed once it committed
const (
	offStatus  = 0
	offType    = 1
	offKind    = 2
	offZero    = 3
	offCRC     = 4
	offSeq     = 8
	offTxn     = 16
	offID      = 24
	offLen     = 40
	headerSize = 44
	// offMark is the block's last byte, one of the 20 that MaxDataSize
	// leaves: no data reaches it.
	offMark = sim.BlockSize - 1
)

// markCommitted in a record's commit mark says that the Commit that wrote
// it committed: programmed after the commit point, before the flip to live.
// The status byte says so too, but it changes in place, outside the CRC,
// and the live value reads as pending should two of its bits come back up:
// the mark is what still tells a committed record from one of a Commit that
// never committed. Only a Commit's records carry it.
const markCommitted = 0x00

// Status values. Each transition in use only clears bits:
// erased -> pending -> live -> tombstone, and erased -> live.
const (
	statusErased    = 0xFF
	statusPending   = 0x77
	statusLive      = 0x66
	statusTombstone = 0x44
)

// Block types.
const (
	typeRecord = 'R'
	typeCommit = 'C'
)

// ErrDamaged reports a block that fails its CRC or does not parse. Above
// the keystore the HSM reports it as hsmapi.ErrDamaged.
var ErrDamaged = errors.New("keystore: damaged block")

var errErasedHeader = fmt.Errorf("%w: erased header", ErrDamaged)

// block is one decoded flash block. data aliases the buffer it was decoded
// from.
type block struct {
	status byte
	typ    byte
	kind   Kind
	seq    uint64
	txn    uint64
	id     ID
	data   []byte
}

// size is the number of bytes the block occupies on flash.
func (b *block) size() int { return headerSize + len(b.data) }

// encode returns the block's image: header and data, ready to be programmed
// at offset 0 of an erased block. The caller clears it when done.
func (b *block) encode() []byte {
	p := make([]byte, b.size())
	p[offStatus] = b.status
	p[offType] = b.typ
	p[offKind] = byte(b.kind)
	p[offZero] = 0
	binary.BigEndian.PutUint64(p[offSeq:], b.seq)
	binary.BigEndian.PutUint64(p[offTxn:], b.txn)
	copy(p[offID:], b.id[:])
	binary.BigEndian.PutUint32(p[offLen:], uint32(len(b.data)))
	copy(p[headerSize:], b.data)
	binary.BigEndian.PutUint32(p[offCRC:], blockCRC(p[:headerSize], b.data))
	return p
}

// blockCRC computes the CRC of a block from its header and its data.
func blockCRC(hdr, data []byte) uint32 {
	c := crc32.ChecksumIEEE(hdr[offType:offCRC])
	c = crc32.Update(c, crc32.IEEETable, hdr[offSeq:headerSize])
	return crc32.Update(c, crc32.IEEETable, data)
}

// storedCRC returns the CRC field of a header.
func storedCRC(hdr []byte) uint32 { return binary.BigEndian.Uint32(hdr[offCRC:]) }

// parseHeader decodes and checks the header in p[:headerSize], everything but
// the CRC. It returns the block without data and the data length.
func parseHeader(p []byte) (block, int, error) {
	if len(p) < headerSize {
		return block{}, 0, fmt.Errorf("%w: %d bytes, header needs %d", ErrDamaged, len(p), headerSize)
	}
	b := block{
		status: p[offStatus],
		typ:    p[offType],
		kind:   Kind(p[offKind]),
		seq:    binary.BigEndian.Uint64(p[offSeq:]),
		txn:    binary.BigEndian.Uint64(p[offTxn:]),
		id:     ID(p[offID : offID+len(ID{})]),
	}
	n := binary.BigEndian.Uint32(p[offLen:])
	switch b.status {
	case statusPending, statusLive, statusTombstone:
	case statusErased:
		return block{}, 0, errErasedHeader
	default:
		return block{}, 0, fmt.Errorf("%w: unknown status %#02x", ErrDamaged, b.status)
	}
	if p[offZero] != 0 {
		return block{}, 0, fmt.Errorf("%w: reserved byte %#02x", ErrDamaged, p[offZero])
	}
	if b.seq == 0 {
		return block{}, 0, fmt.Errorf("%w: sequence number 0", ErrDamaged)
	}
	if n > MaxDataSize {
		return block{}, 0, fmt.Errorf("%w: data length %d", ErrDamaged, n)
	}
	switch b.typ {
	case typeRecord:
		if b.kind == 0 {
			return block{}, 0, fmt.Errorf("%w: record of kind 0", ErrDamaged)
		}
		if b.status == statusPending && b.txn == 0 {
			return block{}, 0, fmt.Errorf("%w: pending record outside a transaction", ErrDamaged)
		}
	case typeCommit:
		if b.status != statusLive || b.kind != 0 || b.id != (ID{}) || n != 0 || b.txn == 0 {
			return block{}, 0, fmt.Errorf("%w: malformed commit block", ErrDamaged)
		}
	default:
		return block{}, 0, fmt.Errorf("%w: unknown block type %#02x", ErrDamaged, b.typ)
	}
	return b, int(n), nil
}

// decodeBlock decodes and checks the block at the start of p. Bytes after
// the block's data are ignored. The returned data aliases p.
func decodeBlock(p []byte) (block, error) {
	b, n, err := parseHeader(p)
	if err != nil {
		return block{}, err
	}
	if len(p)-headerSize < n {
		return block{}, fmt.Errorf("%w: data length %d, %d bytes left", ErrDamaged, n, len(p)-headerSize)
	}
	b.data = p[headerSize : headerSize+n]
	if blockCRC(p[:headerSize], b.data) != storedCRC(p) {
		return block{}, fmt.Errorf("%w: bad CRC", ErrDamaged)
	}
	return b, nil
}
