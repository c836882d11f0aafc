package images

import (
	_ "embed"

	"github.com/labforge/labforge/verify"
)

// sealSuite is built into the binary so `image verify` works from any
// directory, not only from a checkout.
//
//go:embed seal.verify.yaml
var sealSuite []byte

// SealSuite is the suite that proves an image holds nothing of its build.
func SealSuite() (*verify.Suite, error) {
	return verify.Parse("images/seal.verify.yaml", sealSuite)
}
