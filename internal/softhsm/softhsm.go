// Package softhsm makes throwaway SoftHSM2 tokens, for tests and for
// `cryptech-backup demo --pkcs11`.
//
// Typical use:
//
//	env, err := softhsm.Setup(dir)            // before anything loads the module
//	err = env.InitToken("src", "so PIN", "user PIN")
//	ctx, err := crypto11.Configure(&crypto11.Config{
//		Path: env.Module(), TokenLabel: "src", Pin: "user PIN"})
//
// # SOFTHSM2_CONF, read when the module is initialised
//
// SoftHSM2 has no API for choosing its configuration: it reads the file that
// the SOFTHSM2_CONF environment variable names when C_Initialize takes the
// module from uninitialised to initialised in this process. While the module
// is initialised (by crypto11, by InitToken, by anyone), changing SOFTHSM2_CONF
// does nothing. So:
//
//   - call Setup BEFORE anything in the process loads and initialises the
//     module, and treat it as once per process;
//   - a second Setup with another directory only takes effect once every user
//     of the module has finalised it (every crypto11.Context closed); Setup
//     returns an error when the module is initialised in this process at that
//     moment and SOFTHSM2_CONF names another file;
//   - Setup changes the environment of the whole process (and of the
//     processes it starts, such as softhsm2-util or pkcs11-tool, which is
//     what you want), so tests that call it must not run in parallel with
//     other tests that use SoftHSM2.
//
// # Sharing the module with crypto11
//
// crypto11 keeps a reference count per module path string: the first
// crypto11.Configure for a path calls C_Initialize and fails if the module is
// already initialised; the last Context.Close calls C_Finalize. InitToken fits
// around that: if it finds the module uninitialised it initialises it, does
// its work and finalises it again before returning; if it finds it already
// initialised (crypto11 contexts are open) it uses it as it is and never
// finalises it. Consequences:
//
//   - InitToken may be called before, between or while crypto11 contexts are
//     open, but not at the same moment as a crypto11.Configure or Close on the
//     same module in another goroutine;
//   - pass Env.Module() (the same string) to crypto11 everywhere, since its
//     reference count is keyed by the path string, not the library.
//
// The package keeps one pkcs11.Ctx (one dlopen handle) per module for the life
// of the process and never unloads it, so the library stays mapped while
// crypto11 contexts come and go.
package softhsm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// mu serialises this package's use of SOFTHSM2_CONF and of the modules, and
// guards the loaded modules (module_cgo.go).
var mu sync.Mutex

// ModuleEnv is the environment variable that, when set, names the
// libsofthsm2.so to use instead of looking in the usual places.
const ModuleEnv = "SOFTHSM2_MODULE"

// ConfEnv is the environment variable SoftHSM2 reads its configuration path from.
const ConfEnv = "SOFTHSM2_CONF"

// candidates are the places FindModule looks, in order: Debian and Ubuntu
// (softhsm2 package), multiarch, a source build, and Fedora/RHEL.
var candidates = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
}

// InstallHint says how to get SoftHSM2 on the machine.
const InstallHint = "install it with `sudo apt-get install softhsm2` (Debian/Ubuntu), or set " + ModuleEnv + " to the path of libsofthsm2.so"

// FindModule returns the path of libsofthsm2.so: $SOFTHSM2_MODULE if it is set
// (and then it must exist), else the first of the usual Debian/Ubuntu (and
// other) places that exists.
func FindModule() (string, error) {
	if p := os.Getenv(ModuleEnv); p != "" {
		if err := isFile(p); err != nil {
			return "", fmt.Errorf("softhsm: %s=%s: %v; %s", ModuleEnv, p, err, InstallHint)
		}
		return p, nil
	}
	for _, p := range candidates {
		if isFile(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("softhsm: SoftHSM2 not found (looked in %s); %s",
		strings.Join(candidates, ", "), InstallHint)
}

func isFile(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errors.New("no such file")
		}
		return err
	}
	if fi.IsDir() {
		return errors.New("is a directory")
	}
	return nil
}

// Env is a SoftHSM2 configuration in a directory of its own.
type Env struct {
	dir    string
	conf   string
	tokens string
	module string
}

// Module returns the path of libsofthsm2.so, to pass to crypto11 (Config.Path)
// and to pkcs11.New.
func (e *Env) Module() string { return e.module }

// Dir returns the directory Setup was given (absolute).
func (e *Env) Dir() string { return e.dir }

// Conf returns the path of the SoftHSM2 configuration file, the value Setup
// gave SOFTHSM2_CONF.
func (e *Env) Conf() string { return e.conf }

// TokenDir returns the directory where SoftHSM2 keeps the tokens.
func (e *Env) TokenDir() string { return e.tokens }

// Setup finds the module with FindModule and calls SetupModule.
//
// Read the package documentation: SoftHSM2 only reads SOFTHSM2_CONF when the
// module is initialised, so call Setup before anything loads the module, and
// only once per process.
func Setup(dir string) (*Env, error) {
	module, err := FindModule()
	if err != nil {
		return nil, err
	}
	return SetupModule(dir, module)
}

// SetupModule writes a SoftHSM2 configuration in dir (tokens in dir/tokens,
// file object store, log level ERROR, slots not removable), creates the token
// directory with mode 0700, and points the process's SOFTHSM2_CONF at the
// configuration. module is the libsofthsm2.so to use (for `--module`).
//
// Call it BEFORE anything in the process initialises the module, and only
// once per process: SoftHSM2 reads SOFTHSM2_CONF at C_Initialize and ignores
// it while initialised. SetupModule returns an error, and changes nothing, if
// the module is initialised in this process and SOFTHSM2_CONF names another
// file.
func SetupModule(dir, module string) (*Env, error) {
	if module == "" {
		return nil, errors.New("softhsm: no module given")
	}
	if err := isFile(module); err != nil {
		return nil, fmt.Errorf("softhsm: module %s: %v", module, err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("softhsm: %v", err)
	}
	e := &Env{
		dir:    abs,
		conf:   filepath.Join(abs, "softhsm2.conf"),
		tokens: filepath.Join(abs, "tokens"),
		module: module,
	}
	if strings.ContainsAny(e.tokens, "\n\r") {
		return nil, fmt.Errorf("softhsm: directory %q has a line break in its name", abs)
	}

	mu.Lock()
	defer mu.Unlock()
	initialised, err := moduleInitialised(module)
	if err != nil {
		return nil, err
	}
	if initialised {
		if cur := os.Getenv(ConfEnv); cur != e.conf {
			return nil, fmt.Errorf("softhsm: %s is already initialised in this process with %s=%q, "+
				"so a new configuration would be ignored: call Setup before anything loads the module, "+
				"or close every crypto11 context first", module, ConfEnv, cur)
		}
	}

	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("softhsm: %v", err)
	}
	if err := os.Mkdir(e.tokens, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("softhsm: %v", err)
	}
	if err := os.Chmod(e.tokens, 0o700); err != nil {
		return nil, fmt.Errorf("softhsm: %v", err)
	}
	conf := "# Written by cryptech-backup's internal/softhsm: a throwaway SoftHSM2 configuration.\n" +
		"directories.tokendir = " + e.tokens + "\n" +
		"objectstore.backend = file\n" +
		"log.level = ERROR\n" +
		"slots.removable = false\n"
	if err := os.WriteFile(e.conf, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("softhsm: %v", err)
	}
	if err := os.Setenv(ConfEnv, e.conf); err != nil {
		return nil, fmt.Errorf("softhsm: setting %s: %v", ConfEnv, err)
	}
	return e, nil
}

// TB is the part of testing.TB that Require uses; *testing.T and *testing.B
// have it. (An interface, so that this package does not import testing.)
type TB interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Require returns the path of libsofthsm2.so for a test that needs SoftHSM2.
// When SoftHSM2 is missing it fails the test if $CI is "true" and skips it
// otherwise, with one message saying how to install it.
func Require(t TB) string {
	t.Helper()
	module, err := FindModule()
	if err == nil {
		return module
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%v (CI=true: SoftHSM2 is required)", err)
	} else {
		t.Skipf("%v", err)
	}
	return ""
}
