//! Process signals. SIGTERM/SIGINT start a drain: cores stop accepting, finish the
//! transfers in flight (up to the drain timeout), then the process exits. Signals are
//! blocked in every thread and taken synchronously by one thread with `sigwait`, so no
//! handler ever runs on a core in the middle of a request.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a drain has started; cores read it between requests.
pub static DRAINING: AtomicBool = AtomicBool::new(false);

/// True once SIGTERM or SIGINT arrived.
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

/// Waits for signals on a dedicated thread; `on_term` runs once when a drain starts,
/// `on_hup` on every SIGHUP.
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
            if sig == libc::SIGHUP {
                on_hup();
            } else if !DRAINING.swap(true, Ordering::Relaxed) {
                on_term();
            }
        })?;
    Ok(())
}
