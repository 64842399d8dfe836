//go:build amd64 && !purego

package sha256block

//go:generate go run ./internal/gen/gen.go -out block_amd64.s

// useSHANI is set when the processor has the SHA extensions and the
// SSSE3 and SSE4.1 instructions the assembly also uses (PSHUFB, PALIGNR,
// PBLENDW).
var useSHANI = hasSHANI()

func hasSHANI() bool {
	maxLeaf, _, _, _ := cpuid(0, 0)
	if maxLeaf < 7 {
		return false
	}
	_, _, ecx1, _ := cpuid(1, 0)
	_, ebx7, _, _ := cpuid(7, 0)
	ssse3 := ecx1&(1<<9) != 0
	sse41 := ecx1&(1<<19) != 0
	sha := ebx7&(1<<29) != 0
	return ssse3 && sse41 && sha
}

// cpuid executes the CPUID instruction with EAX=eaxArg and ECX=ecxArg.
func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)

// blockSHANI is Block using the SHA extensions. Call it only if useSHANI.
//
//go:noescape
func blockSHANI(h *[8]uint32, p *[64]byte)

// block2SHANI is Block2 using the SHA extensions. Call it only if useSHANI.
//
//go:noescape
func block2SHANI(h1, h2 *[8]uint32, p1, p2 *[64]byte)
