//! Per-core pool of kernel pipes for `splice`. A pipe is the kernel-side buffer a spliced
//! body passes through (socket → pipe → socket), so its size bounds how much one relay step
//! can move. Pipes count against the per-user pipe budget (`/proc/sys/fs/pipe-user-pages-*`):
//! when the kernel grants less than asked, we use what it granted; when it grants nothing,
//! the relay falls back to copying through user space.

use std::cell::RefCell;
use std::io;
use std::os::fd::RawFd;

/// One nonblocking pipe, closed on drop.
#[derive(Debug)]
pub struct Pipe {
    read_fd: RawFd,
    write_fd: RawFd,
    capacity: usize,
}

impl Pipe {
    /// Creates a pipe and asks the kernel for `size_bytes` of capacity.
    pub fn new(size_bytes: usize) -> io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut pipe = Pipe {
            read_fd: fds[0],
            write_fd: fds[1],
            capacity: 65536,
        };
        // SAFETY: fcntl on descriptors we own. Failure (EPERM past the user's pipe budget)
        // leaves the default size, which is still correct, only slower.
        let granted = unsafe { libc::fcntl(pipe.write_fd, libc::F_SETPIPE_SZ, size_bytes as i32) };
        if granted > 0 {
            pipe.capacity = granted as usize;
        } else {
            // SAFETY: as above.
            let current = unsafe { libc::fcntl(pipe.write_fd, libc::F_GETPIPE_SZ) };
            if current > 0 {
                pipe.capacity = current as usize;
            }
        }
        Ok(pipe)
    }

    /// The read end.
    pub fn read_fd(&self) -> RawFd {
        self.read_fd
    }

    /// The write end.
    pub fn write_fd(&self) -> RawFd {
        self.write_fd
    }

    /// Capacity the kernel granted, in bytes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // SAFETY: both descriptors are owned by this value and closed exactly once.
        unsafe {
            libc::close(self.read_fd);
            libc::close(self.write_fd);
        }
    }
}

/// A core's stock of empty pipes, bounded so idle cores do not hoard the pipe budget.
#[derive(Debug)]
pub struct PipePool {
    free: RefCell<Vec<Pipe>>,
    size_bytes: usize,
    idle_max: usize,
}

impl PipePool {
    /// A pool handing out pipes of `size_bytes`, keeping at most `idle_max` idle ones.
    pub fn new(size_bytes: usize, idle_max: usize) -> Self {
        PipePool {
            free: RefCell::new(Vec::new()),
            size_bytes,
            idle_max,
        }
    }

    /// An empty pipe, or `None` when the kernel will not give one (descriptor or pipe
    /// budget exhausted): the caller then copies through user space.
    pub fn get(&self) -> Option<Pipe> {
        if let Some(p) = self.free.borrow_mut().pop() {
            return Some(p);
        }
        match Pipe::new(self.size_bytes) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "no pipe available; falling back to copy");
                None
            }
        }
    }

    /// Returns a pipe that is known to be empty; a pipe holding bytes must be dropped
    /// instead, or the next body would start with the previous one's tail.
    pub fn put_empty(&self, pipe: Pipe) {
        let mut free = self.free.borrow_mut();
        if free.len() < self.idle_max {
            free.push(pipe);
        }
    }

    /// Idle pipes currently held.
    pub fn idle(&self) -> usize {
        self.free.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_gets_requested_size_or_reports_the_granted_one() {
        let p = Pipe::new(1 << 20).expect("pipe");
        // SAFETY: querying a descriptor we own.
        let actual = unsafe { libc::fcntl(p.write_fd(), libc::F_GETPIPE_SZ) } as usize;
        assert_eq!(p.capacity(), actual);
        assert!(actual >= 65536);
    }

    #[test]
    fn pool_reuses_and_bounds_idle_pipes() {
        let pool = PipePool::new(65536, 1);
        let a = pool.get().expect("a");
        let b = pool.get().expect("b");
        let a_fd = a.read_fd();
        pool.put_empty(a);
        pool.put_empty(b);
        assert_eq!(pool.idle(), 1);
        assert_eq!(pool.get().expect("again").read_fd(), a_fd);
    }
}
