//! Giving memory back to the operating system after a crowd leaves.
//!
//! Why: glibc's allocator keeps freed small blocks in its arenas, so after 10,000 connections close
//! the heap is nearly empty but the process's resident memory stays where it was (measured in the
//! benchmark: 0% given back 5 s after everyone left; `malloc_trim(0)` by hand took 113,648 KiB to
//! 10,956 KiB). An operator reading RSS would see a leak that is not one. So when the number of
//! open connections or loaded documents has fallen since the last look, ask glibc to return free
//! pages. The trim walks the heap, so it runs on the blocking pool, at most every [`CHECK`].

use commonpad_core::metrics::Metrics;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const CHECK: Duration = Duration::from_secs(2);

/// Runs until shutdown.
pub async fn trim_after_drops(metrics: Arc<Metrics>, mut shutdown: watch::Receiver<bool>) {
    let load = |m: &Metrics| {
        m.connections_open_edit.load(Relaxed) + m.connections_open_view.load(Relaxed) + m.docs_loaded.load(Relaxed)
    };
    let mut last = load(&metrics);
    let mut tick = tokio::time::interval(CHECK);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = load(&metrics);
        if now < last {
            let _ = tokio::task::spawn_blocking(trim).await;
        }
        last = now;
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only releases free memory at the top of and inside glibc's heaps; it is
    // thread-safe (it takes each arena's lock) and has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
