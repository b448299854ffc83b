//! The `no_grad` switch. Recording is per thread, like PyTorch's grad mode.
use std::cell::Cell;

thread_local! {
    static DISABLED: Cell<usize> = const { Cell::new(0) };
}

/// Whether new ops are recorded for `backward` on this thread.
pub fn is_grad_enabled() -> bool {
    DISABLED.with(|d| d.get() == 0)
}

/// While alive, ops on this thread record no graph (evaluation loops cannot grow memory).
pub struct NoGradGuard(());

impl NoGradGuard {
    /// Turns recording off on this thread until the guard drops (guards nest).
    ///
    /// ```
    /// # use senet_tensor::{is_grad_enabled, NoGradGuard};
    /// {
    ///     let _guard = NoGradGuard::new();
    ///     assert!(!is_grad_enabled());
    /// }
    /// assert!(is_grad_enabled());
    /// ```
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        DISABLED.with(|d| d.set(d.get() + 1));
        NoGradGuard(())
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        DISABLED.with(|d| d.set(d.get() - 1));
    }
}

/// Runs `f` with recording off.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _guard = NoGradGuard::new();
    f()
}
