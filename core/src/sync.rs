//! A mutex that cannot poison. A panic while a guard is held (a bug, caught by a surface's panic
//! boundary or a task) must not turn every later call into a second panic: the data such a lock
//! guards is always left whole between statements, so the lock is simply taken again.

use std::sync::MutexGuard;

#[derive(Debug, Default)]
pub struct Mutex<T>(std::sync::Mutex<T>);

impl<T> Mutex<T> {
    pub const fn new(value: T) -> Mutex<T> {
        Mutex(std::sync::Mutex::new(value))
    }

    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The value, through exclusive access (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.0
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_locked_does_not_poison() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let held = m.clone();
        let panicked = std::thread::spawn(move || {
            let _guard = held.lock();
            panic!("while holding the lock");
        })
        .join();
        assert!(panicked.is_err());
        *m.lock() += 1;
        assert_eq!(*m.lock(), 2);
    }
}
