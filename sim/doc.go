// Package sim emulates the board of a Cryptech-style HSM: the parts that the
// HSM firmware (package hsm) runs on, and nothing above them.
//
//   - [TRNG]: the true random number generator, here crypto/rand behind a
//     power-on health check.
//   - [MasterKeyMemory]: the battery-backed memory that holds the 256-bit
//     master key, persisted as a file in the HSM's state directory, with
//     [MasterKeyMemory.Zeroize] standing in for a tamper response.
//   - [Flash]: a NOR flash chip persisted as a file: erasing a block sets every
//     bit to one, programming can only clear bits, and power can be cut after
//     any number of writes to test what survives.
//   - The AES key wrap core: package internal/keywrap, whose known-answer
//     test the board runs at power-on.
//
// [Board] puts them together for one state directory. What the emulator does
// not model: timing side channels of the real FPGA cores, flash wear, and
// partial programming inside a byte.
package sim
