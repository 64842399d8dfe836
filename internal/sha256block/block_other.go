//go:build !amd64 || purego

package sha256block

const useSHANI = false

func blockSHANI(h *[8]uint32, p *[64]byte) { panic("sha256block: no SHA-NI implementation") }

func block2SHANI(h1, h2 *[8]uint32, p1, p2 *[64]byte) {
	panic("sha256block: no SHA-NI implementation")
}
