//! Where the job runner runs (S18, S19, B9): a tokio runtime of its own, on
//! threads that ask the OS for a lower scheduling priority (`jobs.nice`).
//!
//! Jobs and requests share the machine's cores with the database. When all
//! of them are busy, a request someone is waiting on should get the CPU
//! before a push nobody is watching; with equal priorities a lookup queued
//! behind a burst's jobs for tens of milliseconds. A job runs a little later
//! instead, which its queue already allows for. The runtime also takes the
//! jobs off the single thread that the HTTP server's system runs on.

use std::io;

use actix_web::web;

use crate::state::AppState;

/// Starts the job runner on its own runtime, `concurrency` jobs at once, for
/// as long as the process runs.
pub fn start(
    state: web::Data<AppState>,
    worker_id: String,
    concurrency: usize,
    nice: i32,
) -> io::Result<()> {
    let runtime = runtime(nice)?;
    std::thread::Builder::new()
        .name("crosslink-jobs-runner".into())
        .spawn(move || {
            lower_priority(nice);
            runtime.block_on(crate::worker::run(state, worker_id, concurrency));
        })?;
    Ok(())
}

/// A runtime with a worker thread per core, each of its threads (the
/// blocking ones that run the database calls included) `nice` steps down.
fn runtime(nice: i32) -> io::Result<tokio::runtime::Runtime> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("crosslink-jobs")
        .on_thread_start(move || lower_priority(nice))
        .enable_all()
        .build()
}

/// Lowers the calling thread's scheduling priority by `by` nice steps (on
/// Linux a thread has a nice value of its own); a failure is logged, since
/// jobs still run at the process's priority.
fn lower_priority(by: i32) {
    if by <= 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getpriority and setpriority only read and set the calling
        // thread's nice value (`who` 0 is the calling thread on Linux).
        let now = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, (now + by).min(19)) };
        if result != 0 {
            tracing::warn!(
                error = %io::Error::last_os_error(),
                "cannot lower the job runner's scheduling priority; jobs run at the process's"
            );
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn own_nice() -> i32 {
        // SAFETY: reads the calling thread's nice value.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    #[test]
    fn a_job_thread_is_niced_and_the_others_are_not() {
        let before = own_nice();
        let job_thread = std::thread::spawn(|| {
            lower_priority(3);
            own_nice()
        })
        .join()
        .unwrap();
        assert_eq!(job_thread, (before + 3).min(19));
        assert_eq!(own_nice(), before, "only the calling thread changes");
        let unchanged = std::thread::spawn(|| {
            lower_priority(0);
            own_nice()
        })
        .join()
        .unwrap();
        assert_eq!(unchanged, before);
    }

    #[test]
    fn the_runtime_runs_its_tasks_on_niced_threads() {
        let before = own_nice();
        let runtime = runtime(2).unwrap();
        let (in_task, in_blocking) = runtime.block_on(async {
            let task = tokio::spawn(async { own_nice() }).await.unwrap();
            let blocking = tokio::task::spawn_blocking(own_nice).await.unwrap();
            (task, blocking)
        });
        assert_eq!(in_task, (before + 2).min(19));
        assert_eq!(in_blocking, (before + 2).min(19));
    }
}
