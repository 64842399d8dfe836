// Package keystore keeps records on the emulated flash chip of package sim so
// that a power cut at any single write loses nothing that was committed.
//
// Each record fills one flash block: a 44-byte header that starts with a
// status byte, then the data, all but the status byte covered by a CRC-32
// (block.go has the layout). Status values only
// ever clear bits (erased 0xFF, pending 0x77, live 0x66, tombstone 0x44), so
// every step is one program operation that a power cut either did or did not
// complete; a write that lands half done fails its CRC. Every block carries a
// sequence number, one higher than any on the chip when it was written.
//
//   - Put of a new ID writes one live block, then syncs.
//   - Put over an existing ID marks the old block as a tombstone, writes the
//     new live block, syncs, then erases the old one.
//   - Delete marks the block as a tombstone, erases it, then syncs.
//   - PutAll writes every block as pending under one transaction number and
//     syncs, writes a commit block and syncs (the commit point), flips each
//     pending block to live and syncs, then erases the commit block. A PutAll
//     of one record is a Put.
//
// Open scans the chip and finishes or undoes whatever a power cut
// interrupted, so the store is exactly as before or exactly as after it:
// blocks that fail their CRC or do not parse are erased; pending blocks with
// a commit block become live and those without are erased; of several live
// blocks for one ID the newest is kept, and a live block's tombstones are
// erased; a tombstone with no live twin is brought back (copied as live into
// a free block), except on a full chip, where only a Delete can have left it
// and the delete is finished instead. Recovery writes are ordered so that a
// power cut during recovery is recovered by the next Open.
//
// Before writing anything, Put and PutAll check that the chip has room (one
// free block per record, plus a commit block for PutAll), so ErrFull leaves
// the chip untouched. After a failed write the Store refuses further work:
// only a new Open can tell what reached the chip.
//
// The keystore stores bytes; encrypting them is the caller's job.
package keystore
