//! This process's id without a system call per PKCS#11 call: glibc no longer caches `getpid`,
//! and the fork check on every entry point cost a quarter of a `C_DigestInit` + `C_Digest` pair
//! (keygate bench, sha256-64, perf). The id is kept in an atomic that a `pthread_atfork` child
//! handler clears, so a forked child asks the OS once and then has its own.
//!
//! In `sys/` because registering the handler is a call into the C library.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Once;

static PID: AtomicU32 = AtomicU32::new(0);
static REGISTERED: Once = Once::new();
static HANDLER: AtomicBool = AtomicBool::new(false);

/// Runs in the child after `fork()`: only an atomic store, which is async-signal-safe.
extern "C" fn forget_pid() {
    PID.store(0, Ordering::Relaxed);
}

/// This process's id.
pub fn id() -> u32 {
    REGISTERED.call_once(|| {
        // SAFETY: registers a child handler that only stores to an atomic; the module is linked
        // `-z nodelete` (build.rs), so the handler stays mapped for the life of the process.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(forget_pid)) };
        if rc == 0 {
            HANDLER.store(true, Ordering::Relaxed);
        } else {
            log::warn!("pthread_atfork failed ({rc}): the process id is asked of the OS every time");
        }
    });
    match PID.load(Ordering::Relaxed) {
        0 => {
            let p = std::process::id();
            if HANDLER.load(Ordering::Relaxed) {
                PID.store(p, Ordering::Relaxed);
            }
            p
        }
        p => p,
    }
}

/// For the `keygate` program only (never the module, which must not change its host's signal
/// handling): output piped into `head` and the like ends the program quietly when the reader
/// is gone, as with other Unix tools, instead of a panic on the broken pipe.
pub fn default_sigpipe() {
    // SAFETY: restores the default disposition of one signal; called before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
