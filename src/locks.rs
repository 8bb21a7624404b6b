//! Locks that stay usable after a panic elsewhere.
//!
//! A std lock is "poisoned" when a thread panicked while holding it. The
//! state behind every lock in snykey is kept consistent by each critical
//! section (no invariant is half-updated across a panic point), so a poisoned
//! lock is taken as it is: one panicking request handler must not take the
//! agent down. `lock.lock().recover()` says so in one word.

use std::sync::{LockResult, PoisonError};

pub(crate) trait Recover<G> {
    /// The guard, poisoned or not.
    fn recover(self) -> G;
}

impl<G> Recover<G> for LockResult<G> {
    fn recover(self) -> G {
        self.unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_lock_poisoned_by_a_panic_is_still_taken() {
        let m = Arc::new(Mutex::new(1));
        let m2 = Arc::clone(&m);
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().recover();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        *m.lock().recover() += 1;
        assert_eq!(*m.lock().recover(), 2);
    }
}
