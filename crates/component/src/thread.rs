//! Blocking work (file I/O, an fsync, decoding) awaited from async code.

use crate::BoxFuture;

/// Runs blocking work (file I/O, an fsync) on a thread of its own and resolves with its
/// result: for sinks and sources whose work is not async, so it never stalls the
/// runtime's workers. The thread is not joined at shutdown: a read blocked on a pipe
/// cannot hold the process.
pub fn on_thread<T: Send + 'static>(
    name: String,
    work: impl FnOnce() -> T + Send + 'static,
) -> BoxFuture<'static, T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let _ = tx.send(work());
    });
    Box::pin(async move {
        if let Err(e) = spawned {
            panic!("cannot start a thread: {e}");
        }
        match rx.await {
            Ok(result) => result,
            // The thread panicked (with panic = "abort" the process is gone already).
            Err(_) => panic!("a worker thread panicked"),
        }
    })
}
