//! A thread for a control listener's blocking work (a reload waits for every core to
//! stage the config), so its executor keeps serving other connections meanwhile.

/// Jobs queued behind the running one; more are refused (503) rather than piled up.
const QUEUED_MAX: usize = 4;

type Job = Box<dyn FnOnce() + Send>;

/// Runs blocking jobs one at a time on its own thread.
pub(super) struct Worker {
    jobs: flume::Sender<Job>,
}

impl Worker {
    /// Starts the thread (`weir-<name>-bg`).
    pub(super) fn start(name: &str) -> std::io::Result<Worker> {
        let (jobs, queue) = flume::bounded::<Job>(QUEUED_MAX);
        std::thread::Builder::new()
            .name(format!("weir-{name}-bg"))
            .spawn(move || {
                for job in queue.iter() {
                    job();
                }
            })?;
        Ok(Worker { jobs })
    }

    /// Runs `f` on the worker and awaits its result; `None` when the queue is full. If
    /// the caller goes away first, `f` still runs to the end (a reload is never cut in
    /// half) and its result is dropped.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = flume::bounded(1);
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs.try_send(job).ok()?;
        rx.recv_async().await.ok()
    }
}
