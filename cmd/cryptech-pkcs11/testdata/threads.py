# Threads and processes from C's side: C_Initialize with
# CK_C_INITIALIZE_ARGS (CKF_OS_LOCKING_OK), many sessions signing at once
# from threads (ctypes lets go of Python's lock in each call), C_Finalize
# and a second C_Initialize, and fork(): the child gets
# CKR_CRYPTOKI_NOT_INITIALIZED from every function and CKR_GENERAL_ERROR
# from C_Initialize, at once (it must not hang), and has none of the
# module's descriptors, while the parent goes on. Run by TestThreadsFromC
# as: python3 threads.py MODULE (with $CRYPTECH_HSM set), and by
# TestForkOverRPCFromC as python3 threads.py MODULE hold (over the libhal
# socket); prints "ok" or fails.
import ctypes as C
import os
import signal
import subprocess
import sys
import threading

OK, GENERAL_ERROR, NOT_INITIALIZED, SIGNATURE_INVALID = 0, 5, 0x190, 0xC0
CKF_SERIAL_SESSION, CKF_RW_SESSION, CKF_OS_LOCKING_OK = 4, 2, 2
CKM_EC_KEY_PAIR_GEN, CKM_ECDSA_SHA256 = 0x1040, 0x1044
CKA_EC_PARAMS, CKA_TOKEN = 0x180, 1
THREADS, SIGNATURES = 8, 10

lib = C.CDLL(sys.argv[1])


class InitArgs(C.Structure):
    _fields_ = [("create", C.c_void_p), ("destroy", C.c_void_p), ("lock", C.c_void_p),
                ("unlock", C.c_void_p), ("flags", C.c_ulong), ("reserved", C.c_void_p)]


class Attribute(C.Structure):
    _fields_ = [("type", C.c_ulong), ("value", C.c_void_p), ("len", C.c_ulong)]


class Mechanism(C.Structure):
    _fields_ = [("mechanism", C.c_ulong), ("param", C.c_void_p), ("len", C.c_ulong)]


def check(what, got, want):
    if got != want:
        sys.exit("%s: got %r, want %r" % (what, got, want))


def session(flags=CKF_SERIAL_SESSION):
    h = C.c_ulong(0)
    check("C_OpenSession", lib.C_OpenSession(C.c_ulong(0), C.c_ulong(flags), None, None, C.byref(h)), OK)
    return h


def initialize():
    args = InitArgs(None, None, None, None, CKF_OS_LOCKING_OK, None)
    check("C_Initialize(CKF_OS_LOCKING_OK)", lib.C_Initialize(C.byref(args)), OK)
    h = session(CKF_SERIAL_SESSION | CKF_RW_SESSION)
    check("C_Login", lib.C_Login(h, C.c_ulong(1), b"test-pin", C.c_ulong(8)), OK)
    p256 = C.create_string_buffer(bytes.fromhex("06082a8648ce3d030107"), 10)
    false = C.c_ubyte(0)
    pub = (Attribute * 2)(Attribute(CKA_EC_PARAMS, C.cast(p256, C.c_void_p), 10),
                          Attribute(CKA_TOKEN, C.cast(C.byref(false), C.c_void_p), 1))
    priv = (Attribute * 1)(Attribute(CKA_TOKEN, C.cast(C.byref(false), C.c_void_p), 1))
    hpub, hpriv = C.c_ulong(0), C.c_ulong(0)
    mech = Mechanism(CKM_EC_KEY_PAIR_GEN, None, 0)
    check("C_GenerateKeyPair", lib.C_GenerateKeyPair(h, C.byref(mech), pub, C.c_ulong(2), priv, C.c_ulong(1),
                                                     C.byref(hpub), C.byref(hpriv)), OK)
    return hpub, hpriv


def sign_and_verify(hpub, hpriv, n, errors):
    """Signs n messages on a session of its own and verifies each."""
    try:
        h = session()
        mech = Mechanism(CKM_ECDSA_SHA256, None, 0)
        for i in range(n):
            msg = b"thread %d, message %d" % (threading.get_ident(), i)
            check("C_SignInit", lib.C_SignInit(h, C.byref(mech), hpriv), OK)
            sig, n_sig = C.create_string_buffer(64), C.c_ulong(64)
            check("C_Sign", lib.C_Sign(h, msg, C.c_ulong(len(msg)), sig, C.byref(n_sig)), OK)
            check("C_VerifyInit", lib.C_VerifyInit(h, C.byref(mech), hpub), OK)
            check("C_Verify", lib.C_Verify(h, msg, C.c_ulong(len(msg)), sig, n_sig), OK)
            check("C_VerifyInit", lib.C_VerifyInit(h, C.byref(mech), hpub), OK)
            check("C_Verify of another message", lib.C_Verify(h, msg + b"!", C.c_ulong(len(msg) + 1), sig, n_sig), SIGNATURE_INVALID)
    except SystemExit as e:
        errors.append(str(e))


def sign_in_threads(hpub, hpriv):
    errors = []
    threads = [threading.Thread(target=sign_and_verify, args=(hpub, hpriv, SIGNATURES, errors)) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check("errors in threads", errors, [])


# Twice: C_Finalize releases what the first C_Initialize took.
for round in range(2):
    hpub, hpriv = initialize()
    sign_in_threads(hpub, hpriv)
    check("C_Finalize", lib.C_Finalize(None), OK)
    check("C_OpenSession after C_Finalize", lib.C_OpenSession(C.c_ulong(0), C.c_ulong(CKF_SERIAL_SESSION), None, None, C.byref(C.c_ulong())), NOT_INITIALIZED)

# fork(), the module initialized in the parent. The child gets the codes
# above, and holds none of the module's descriptors (the HSM directory's
# files, the RPC sockets): it lives on while the parent signs and
# finalizes, and another process and then the parent open the HSM again,
# which the child's copy of the directory's lock would prevent. With "hold" (TestForkOverRPCFromC) the parent says
# "finalized" and waits for a line on stdin, for the server to be looked
# at while the child still lives.
hpub, hpriv = initialize()
checked_r, checked_w = os.pipe()
done_r, done_w = os.pipe()
pid = os.fork()
if pid == 0:
    signal.alarm(20)  # a hang kills the child, which the parent sees
    os.close(checked_r)
    os.close(done_w)
    h, n = C.c_ulong(0), C.c_ulong(0)
    results = [
        ("C_GetSlotList", lib.C_GetSlotList(C.c_ubyte(1), None, C.byref(n)), NOT_INITIALIZED),
        ("C_OpenSession", lib.C_OpenSession(C.c_ulong(0), C.c_ulong(CKF_SERIAL_SESSION), None, None, C.byref(h)), NOT_INITIALIZED),
        ("C_SignInit", lib.C_SignInit(C.c_ulong(1), C.byref(Mechanism(CKM_ECDSA_SHA256, None, 0)), hpriv), NOT_INITIALIZED),
        ("C_Finalize", lib.C_Finalize(None), NOT_INITIALIZED),
        ("C_Initialize", lib.C_Initialize(None), GENERAL_ERROR),
        ("C_GetInfo", lib.C_GetInfo(None), NOT_INITIALIZED),
    ]
    bad = ["child %s: got %#x, want %#x" % r for r in results if r[1] != r[2]]
    hsm = os.environ.get("CRYPTECH_HSM")
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            continue  # the listing's own
        if target.startswith("socket:") or hsm and target.startswith(os.path.realpath(hsm) + "/"):
            bad.append("child holds descriptor %s: %s" % (fd, target))
    os.write(2, ("\n".join(bad) + "\n").encode() if bad else b"")
    os.write(checked_w, b"x")
    os.read(done_r, 1)  # lives on until the parent is done
    os._exit(1 if bad else 0)
os.close(checked_w)
os.close(done_r)
check("the child's checks", os.read(checked_r, 1), b"x")
sign_in_threads(hpub, hpriv)  # the parent goes on
check("C_Finalize", lib.C_Finalize(None), OK)
if sys.argv[2:] == ["hold"]:
    print("finalized", flush=True)
    sys.stdin.readline()
# The child, still there, holds no lock: another process opens the HSM,
# and so does this one again.
other = subprocess.run([sys.executable, "-c", "import ctypes, sys; sys.exit(ctypes.CDLL(sys.argv[1]).C_Initialize(None))", sys.argv[1]])
check("C_Initialize in another process", other.returncode, OK)
hpub, hpriv = initialize()
sign_in_threads(hpub, hpriv)
check("C_Finalize", lib.C_Finalize(None), OK)
os.write(done_w, b"x")
_, status = os.waitpid(pid, 0)
check("the child's exit status", status, 0)
print("ok")
