//! Where the click pipeline's heavy CPU work runs: [`off_workers`] puts it on a
//! thread of its own, at a lower scheduling priority than the runtime's workers.
//!
//! Why: a store write folds, cuts and merges hundreds of thousands of clicks and
//! rollup rows, tens to hundreds of milliseconds of CPU at a time. Under
//! `block_in_place` alone that work ran at the workers' priority and took cores from
//! the redirects: at a fixed 10,000 redirects/s the p99 was 1.1–1.5 ms in windows
//! with a store write and 0.5–0.6 ms in windows without one. On a thread [`NICE`]
//! steps lower, a waking worker preempts it; side by side the median p99 fell from
//! 1.08 to 0.82 ms, the CPU per redirect inside the runs' spread
//! (bench/results/2026-12-06.md).
//!
//! What it costs: when every core is busy with redirects, the pipeline's work gets
//! a small share and waits. That is DESIGN.md's promise for a slow sink ("redirects
//! unaffected"): a write slower than the sink timeout is spooled and replayed later,
//! and nothing is lost. The SQLite writer's thread is not lowered: creates share it.
//!
//! The thread is scoped, so the work can borrow the caller's data, and started per
//! call: there are a few calls per batch of clicks or part of a write, each over
//! the whole batch or part (thousands of clicks under load); the redirect's own
//! overflow path never comes here.
//!
//! Over SQLite the store's lane does better: [`spawn_below_workers`] runs all of it
//! on one lower-priority thread with a runtime of its own, where [`off_workers`]
//! runs its work in place. Side by side at 10,000 redirects/s, analytics on, that
//! cost 3.3–4.5 µs less CPU per redirect than the lane on the workers with a
//! thread per call (bench/results/2026-12-07.md).

/// How many nice steps below the caller the work runs. Linux weighs nice 10 at 110
/// against nice 0's 1,024, so under contention the work gets about a tenth of a busy
/// worker's share of a core: a pipeline under a saturating load slows down but goes on.
pub const NICE: i32 = 10;

/// The work's thread, as `top -H` and `/proc/<pid>/task/*/comm` show it.
pub const THREAD_NAME: &str = "kurz-click-work";

/// The store lane's thread ([`spawn_below_workers`]).
pub const LANE_THREAD_NAME: &str = "kurz-click-store";

/// Runs pure CPU or blocking file work (folding a batch, merging rollup rows, a spool
/// fsync or read) without stalling the connections scheduled on this runtime worker:
/// `block_in_place` hands them to another worker first, and the work itself runs on
/// a lower-priority thread (see the module's doc). Only synchronous work goes here.
/// An `.await` inside (`block_in_place` + `block_on`) can hang the runtime's shutdown
/// for ever (tokio#6463), which a CI run once hit. A single-threaded runtime, as in
/// some tests, just runs `work` in place.
pub fn off_workers<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| on_own_thread(work))
        }
        _ => work(),
    }
}

/// Runs `task` to its end on a thread of its own, [`NICE`] steps below the caller,
/// with a single-threaded runtime of its own; the handle, on the caller's runtime,
/// finishes when `task` does. For the store's lane over an embedded database
/// (SQLite), whose work (binding and decoding rows, folding, merging, journaling) is
/// all CPU of this process.
///
/// Why: on the runtime, the lane's own polls (hundreds of thousands of rows bound
/// and decoded per held write) ran on the redirects' workers at their priority, and
/// each fold or merge went through [`off_workers`], a `block_in_place` hand-off and
/// a new thread per call. Here everything the lane does is below the workers, and
/// [`off_workers`] runs its work in place. Only for in-process stores: a networked
/// store's connections belong to the reactor of the runtime that opened them, and
/// a lane here would open some on this thread's.
///
/// If the runtime or the thread cannot be made, `task` runs on the caller's runtime.
pub fn spawn_below_workers<F>(task: F) -> tokio::task::JoinHandle<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(error) => {
            tracing::warn!(%error, "the store's lane runs on the runtime's workers");
            return tokio::spawn(task);
        }
    };
    // Handed to the thread through a slot, so a thread that does not start leaves it here.
    let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(task)));
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    let theirs = slot.clone();
    let started = std::thread::Builder::new()
        .name(LANE_THREAD_NAME.into())
        .spawn(move || {
            lower_priority();
            let task = theirs.lock().ok().and_then(|mut t| t.take());
            if let Some(task) = task {
                runtime.block_on(task);
            }
            let _ = done.send(());
        });
    if let Err(error) = started {
        tracing::warn!(%error, "the store's lane runs on the runtime's workers");
        let task = slot.lock().ok().and_then(|mut t| t.take());
        return tokio::spawn(async move {
            if let Some(task) = task {
                task.await;
            }
        });
    }
    // A panic on the thread drops `done` unsent: the lane is over either way.
    tokio::spawn(async move {
        let _ = finished.await;
    })
}

/// Runs `work` on a new, lower-priority thread and waits for it; a panic in it
/// goes on in the caller. If the system will not start a thread, `work` runs here.
fn on_own_thread<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    let mut work = Some(work);
    let ran = std::thread::scope(|scope| {
        let job = &mut work;
        std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn_scoped(scope, move || {
                lower_priority();
                job.take().map(|w| w())
            })
            .ok()
            .map(|thread| thread.join())
    });
    match (ran, work) {
        (Some(Ok(Some(r))), _) => r,
        (Some(Err(panic)), _) => std::panic::resume_unwind(panic),
        // No thread started, so the work is still here.
        (_, Some(w)) => w(),
        (Some(Ok(None)) | None, None) => unreachable!("the work ran on its thread or is still here"),
    }
}

/// Lowers this thread's priority by [`NICE`]. On Linux a nice value belongs to one
/// thread, so the rest of the process keeps its own; elsewhere it would be the whole
/// process's, so nothing changes there.
#[cfg(target_os = "linux")]
fn lower_priority() {
    let thread = rustix::thread::gettid();
    let now = rustix::process::getpriority_process(Some(thread)).unwrap_or(0);
    if let Err(error) = rustix::process::setpriority_process(Some(thread), now.saturating_add(NICE).min(19)) {
        tracing::debug!(%error, "click work runs at the workers' priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// This thread's nice value, for the tests that check where work runs (0 where
/// there is none to read).
#[cfg(test)]
pub(crate) fn nice_here() -> i32 {
    #[cfg(target_os = "linux")]
    return rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap_or(i32::MIN);
    #[cfg(not(target_os = "linux"))]
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_work_runs_on_its_own_thread_below_the_workers() {
        let caller = std::thread::current().id();
        let (thread, name) = off_workers(|| {
            let me = std::thread::current();
            (me.id(), me.name().map(str::to_owned))
        });
        assert_ne!(thread, caller, "not on the runtime's thread");
        assert_eq!(name.as_deref(), Some(THREAD_NAME));
        #[cfg(target_os = "linux")]
        {
            let workers = nice_here();
            assert_eq!(off_workers(nice_here), (workers + NICE).min(19));
            assert_eq!(nice_here(), workers, "the caller keeps its priority");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_work_borrows_and_changes_the_callers_data() {
        let mut clicks = vec![3, 1, 2];
        let total: i32 = off_workers(|| {
            clicks.sort_unstable();
            clicks.iter().sum()
        });
        assert_eq!((clicks, total), (vec![1, 2, 3], 6));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_in_the_work_reaches_the_caller() {
        let caught = std::panic::catch_unwind(|| off_workers(|| -> u8 { panic!("fold failed") }));
        let message = caught
            .err()
            .and_then(|p| p.downcast_ref::<&str>().map(|s| s.to_string()));
        assert_eq!(message.as_deref(), Some("fold failed"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_single_threaded_runtime_runs_it_in_place() {
        let caller = std::thread::current().id();
        assert_eq!(off_workers(|| std::thread::current().id()), caller);
    }
}
