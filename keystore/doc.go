// Package keystore keeps records on the emulated flash chip of package sim so
// that a power cut at any single write loses nothing that was committed.
//
// Each record fills one flash block: a 44-byte header that starts with a
// status byte, then the data, all but the status byte covered by a CRC-32
// (block.go has the layout). Status values only
// ever clear bits (erased 0xFF, pending 0x77, live 0x66, tombstone 0x44), so
// every step is one program operation that a power cut either did or did not
// complete; a write that lands half done fails its CRC. Every block carries a
// sequence number, higher than that of any valid block on the chip when it
// was written.
//
//   - Put of a new ID, and Create, write one live block, then sync. Create
//     refuses an ID that is present (ErrExists), so it never replaces a
//     record.
//   - Put over an existing ID marks the old block as a tombstone, writes the
//     new live block, syncs, then erases the old one.
//   - Delete marks the block as a tombstone, erases it, then syncs.
//   - Commit (and PutAll, a Commit that creates only) writes every block as
//     pending under one transaction number and syncs, writes a commit block
//     and syncs (the commit point), programs each pending block's commit
//     mark (its last byte, outside the CRC) and flips it to live, and
//     syncs, then erases the blocks of the records it replaced and the
//     commit block. A replaced record's block is left as it is until the
//     commit point; after it, two live blocks name that ID, and the pending
//     one, written later, has the higher sequence number. A Commit of one
//     record is a transaction too.
//
// Open scans the chip and finishes or undoes whatever a power cut
// interrupted, so the store is exactly as before or exactly as after it:
// pending blocks with a commit block become live (marked, then flipped)
// and those without are erased, unless marked (below); of several live
// blocks for one ID the newest is kept (a Put or a
// Commit that replaced a record: finished), and a live block's tombstones
// are erased; a tombstone with no live twin is brought
// back (copied as live into a free block), except on a full chip, where only
// a Delete can have left it and the delete is finished instead. Recovery
// writes are ordered so that a power cut during recovery is recovered by the
// next Open.
//
// A block that fails its CRC or does not parse is erased only when a power
// cut can have made it:
//
//   - a block whose header is all erased (0xFF) but whose content is not is
//     an erase cut short (an erase clears from the start of the block);
//   - a block whose sequence number is above that of every valid block on
//     the chip, and whose last byte that its write would have programmed (by
//     the header's length, or the header's own last byte if the length is
//     not one a block can have) is still erased, is the newest write, cut
//     short; unless it is a record a Commit wrote (below).
//
// Every block image, including a transaction's pending and commit blocks and
// the blocks that recovery copies, is programmed into an erased block with a
// sequence number above every valid block on the chip, and a cut program
// lands only a first part of the image; status changes keep the number and
// erases only remove blocks. So the one block a power cut can tear is the
// highest numbered, with its tail still erased, and recovery erases it before
// it writes anything of its own.
//
// Any other such block held data that was once written whole, most likely a
// committed record, and what damaged it was not a power cut (a failing disk
// under the flash image, a hand edit). Erasing it would destroy the only copy
// of a key without a word, even in a read-only command. So Open
// leaves it exactly as it is: it is not free, never reused, kept out of the
// index, and reported by [Store.Damaged], with the ID its header names, if
// it still names one, in [Store.DamagedIDs] (with the kind it claims, in
// [Store.DamagedRecords]). Open still succeeds: one damaged
// block does not make every other record unusable. Get of such an ID returns
// ErrDamaged rather than ErrNotFound, and Create, Put, PutAll and Commit
// refuse it, so no second record with the damaged one's ID is ever written.
//
// The rule can misjudge a damaged block that looks like a torn write: one
// whose last byte is erased (as one random data byte in 256 is) or whose
// length was damaged to end past its data, and whose sequence number is
// above every valid block's (the newest record, or an older one once the
// records written after it are deleted). Open erases such a block as a torn
// write, if Create or Put wrote it (or a recovery restored it).
//
// A record a Commit wrote is never so misjudged. Commit programs its
// records pending, syncs them whole, and flips them to live only after its
// commit point, so none was ever programmed live: the record images
// programmed live are Create's, Put's and a restore's, with transaction
// number 0. A block that reads live, with a transaction number and a data
// length a block can have (so a cut, had there been one, fell past the
// header and the transaction number landed as programmed), or whose commit
// mark is programmed, was written whole: damaged, it is kept and reported,
// whatever its last byte reads. Nor does damage to its status byte alone,
// which the CRC does not cover, undo it: live (0x66) reads pending (0x77)
// with two bits up, and a pending block without a commit block is a Commit
// that never committed, to be erased, unless its commit mark is programmed,
// which happens only after the commit point (the commit block goes only
// once its records are durably live). Such a block is kept and reported. So
// a caller that must never lose a record to one damaged byte without a
// trace (the HSM's HSS history) writes it with Commit, even alone; records
// committed before the mark existed are still undone by a damaged status
// byte.
//
// Before writing anything, Create, Put, PutAll and Commit check that the
// chip has room (one free block per record, new or replacing, plus a commit
// block for a Commit), so ErrFull leaves the chip untouched. After a failed
// write the Store refuses further work: only a new Open can tell what
// reached the chip.
//
// The keystore stores bytes; encrypting them is the caller's job.
package keystore
