// Package sha256block exposes the bare SHA-256 compression function of
// [FIPS 180-4] (section 6.2.2): one 64-byte block folded into an eight-word
// state, with no buffering, padding or length counting.
//
// It exists for the hash-based signatures of [RFC 8554] and [SP 800-208]
// (LMS/HSS). Almost every hash in LMS key generation and signing is a
// single-block message of at most 55 bytes (an LM-OTS chain step hashes
// 55 bytes with SHA-256/256 and 47 with SHA-256/192), where the per-call
// cost of crypto/sha256 is about as large as the compression itself. A
// caller that builds the block itself pays only for the compression:
//
//	var blk [64]byte
//	n := copy(blk[:], msg) // len(msg) <= MaxPaddedLen
//	sha256block.Pad(&blk, n)
//	h := sha256block.IV
//	sha256block.Block(&h, &blk)
//	sha256block.PutState(out, &h) // out is 32 bytes, or 24 for SHA-256/192
//
// Anything else, including every multi-block or variable-length message,
// should use crypto/sha256.
//
// On amd64 processors with the SHA extensions (SHA-NI) [Block] and [Block2]
// run in assembly using SHA256RNDS2, SHA256MSG1 and SHA256MSG2; elsewhere,
// or when built with the purego tag, they run a plain Go implementation.
// [Accelerated] reports which. [Block2] compresses two independent blocks
// in one call, interleaving them so that the rounds of one hide the latency
// of the other; use it when two hash chains can advance together.
//
// Both implementations take time independent of the contents of the state
// and the block: they have no data-dependent branches or memory indices.
//
// [FIPS 180-4]: https://doi.org/10.6028/NIST.FIPS.180-4
// [RFC 8554]: https://www.rfc-editor.org/rfc/rfc8554
// [SP 800-208]: https://doi.org/10.6028/NIST.SP.800-208
package sha256block
