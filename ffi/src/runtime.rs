//! The one tokio runtime of the process, built on first use. Blocking calls
//! from host threads run their future on it with `block_on`.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::Runtime;

use crate::boundary::ensure_may_block;
use crate::status::{tidings_status, FfiError, FfiResult};

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The process's runtime (multi-thread, I/O and timers on).
pub(crate) fn get() -> FfiResult<&'static Runtime> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .thread_name("tidings")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the tidings runtime: {e}"))
        })
        .as_ref()
        .map_err(|e| FfiError::new(tidings_status::Config, e.clone()))
}

/// Runs `future` to completion on the runtime, blocking the calling host
/// thread; `REENTRANT` from a callback or a runtime thread.
pub(crate) fn block_on<F: Future>(function: &'static str, future: F) -> FfiResult<F::Output> {
    ensure_may_block(function)?;
    Ok(get()?.block_on(future))
}
