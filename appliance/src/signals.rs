//! Process signals. SIGTERM/SIGINT stop the process in two steps (docs/operations.md,
//! "Stopping"): `/readyz` fails at once while the cores keep serving for
//! `appliance.drain_grace`, so balancers take weir out before its port closes; then the
//! cores stop accepting, finish the transfers in flight (up to the drain timeout), and the
//! process exits. A second SIGTERM or SIGINT exits at once. Signals are blocked in every
//! thread and taken synchronously by one thread with `sigwait`, so no handler ever runs
//! on a core in the middle of a request.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set when SIGTERM or SIGINT arrived: readiness fails from then on.
pub static STOPPING: AtomicBool = AtomicBool::new(false);

/// Set once the grace is over and the cores stop accepting; cores read it between
/// requests (no keep-alive from then on).
pub static DRAINING: AtomicBool = AtomicBool::new(false);

/// True once SIGTERM or SIGINT arrived (`/readyz` answers 503).
pub fn stopping() -> bool {
    STOPPING.load(Ordering::Relaxed)
}

/// True once the listeners are closing.
pub fn draining() -> bool {
    DRAINING.load(Ordering::Relaxed)
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a sigset_t we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        set
    }
}

/// Blocks the handled signals in the calling thread; threads spawned afterwards inherit
/// the mask. Call before starting any other thread.
pub fn block() {
    let set = signal_set();
    // SAFETY: pthread_sigmask with a valid set and a null old-set pointer.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Waits for signals on a dedicated thread; `on_term` runs once when a stop starts,
/// `on_hup` on every SIGHUP; SIGUSR1 reopens the access log (rotation). A second SIGTERM/SIGINT exits the process at once, status 1
/// (transfers still in flight are cut).
pub fn spawn_waiter(
    on_term: impl Fn() + Send + 'static,
    on_hup: impl Fn() + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("weir-signals".into())
        .spawn(move || loop {
            let set = signal_set();
            let mut sig: libc::c_int = 0;
            // SAFETY: sigwait reads the set and writes the signal number into `sig`.
            let rc = unsafe { libc::sigwait(&set, &mut sig) };
            if rc != 0 {
                continue;
            }
            if sig == libc::SIGUSR1 {
                // Log rotation: the access-log writer reopens its file by path.
                crate::access_log::REOPEN.store(true, Ordering::Relaxed);
            } else if sig == libc::SIGHUP {
                on_hup();
            } else if !STOPPING.swap(true, Ordering::Relaxed) {
                on_term();
            } else {
                tracing::warn!("second stop signal: exiting now, cutting what is in flight");
                std::process::exit(1);
            }
        })?;
    Ok(())
}
