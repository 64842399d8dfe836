// Package keystore keeps records on the emulated flash chip of package sim so
// that a power cut at any single write loses nothing that was committed.
//
// Each record fills one flash block: a status byte, then a header and payload
// covered by a CRC-32. Status values only ever clear bits (erased 0xFF,
// pending 0x77, live 0x66, tombstone 0x44), so every step is one program
// operation that a power cut either did or did not complete.
//
//   - Put of a new ID writes one live block.
//   - Put over an existing ID marks the old block as a tombstone, writes the
//     new live block, then erases the old one.
//   - Delete marks the block as a tombstone, then erases it.
//   - PutAll writes every block as pending under one transaction number, then
//     a commit block, then flips each pending block to live, then erases the
//     commit block.
//
// Open scans the chip and finishes or undoes whatever a power cut
// interrupted: a tombstone with no live twin is brought back, pending blocks
// with a commit block become live and those without are erased, blocks that
// fail their CRC are erased.
//
// The keystore stores bytes; encrypting them is the caller's job.
package keystore
