//! A value that belongs to the thread that created it (an HVF vCPU): created
//! lazily on first use by the thread that uses it, refused to every other
//! thread afterwards. Plain Rust, so the ownership rules are tested on any host.

use std::fmt;
use std::thread::ThreadId;

/// A use of a [`ThreadBound`] value from a thread that does not own it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the value belongs to thread {owner:?} (which created it) but was used from {caller:?}")]
pub struct WrongThread {
    /// The thread that created the value.
    pub owner: ThreadId,
    /// The thread that tried to use it.
    pub caller: ThreadId,
}

impl From<WrongThread> for crate::error::AccelError {
    fn from(e: WrongThread) -> Self {
        Self::hypervisor(
            "using a thread-bound vCPU",
            std::io::Error::other(format!(
                "{e}; this hypervisor binds a vCPU to its creating thread"
            )),
        )
    }
}

/// A value created on, and usable only from, one thread.
pub struct ThreadBound<T> {
    inner: Option<(T, ThreadId)>,
}

impl<T> Default for ThreadBound<T> {
    fn default() -> Self {
        Self { inner: None }
    }
}

impl<T: fmt::Debug> fmt::Debug for ThreadBound<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            None => f.write_str("ThreadBound(not created)"),
            Some((value, owner)) => write!(f, "ThreadBound({value:?} on {owner:?})"),
        }
    }
}

impl<T> ThreadBound<T> {
    /// The value, if it exists and the calling thread owns it; `Ok(None)` before creation.
    pub fn get(&self) -> Result<Option<&T>, WrongThread> {
        let caller = std::thread::current().id();
        match &self.inner {
            None => Ok(None),
            Some((value, owner)) if *owner == caller => Ok(Some(value)),
            Some((_, owner)) => Err(WrongThread {
                owner: *owner,
                caller,
            }),
        }
    }

    /// The value, creating it with `create` on the calling thread (which then owns it).
    pub fn get_or_try_create<E: From<WrongThread>>(
        &mut self,
        create: impl FnOnce() -> Result<T, E>,
    ) -> Result<&T, E> {
        let caller = std::thread::current().id();
        let pair = match self.inner.take() {
            Some(pair) => pair,
            None => (create()?, caller),
        };
        let (value, owner) = self.inner.insert(pair);
        if *owner != caller {
            return Err(WrongThread {
                owner: *owner,
                caller,
            }
            .into());
        }
        Ok(value)
    }

    /// Removes the value; `Err` carries it back when the caller does not own it
    /// (it must then not be destroyed from here).
    pub fn take(&mut self) -> Option<Result<T, (T, WrongThread)>> {
        let (value, owner) = self.inner.take()?;
        let caller = std::thread::current().id();
        Some(if owner == caller {
            Ok(value)
        } else {
            Err((value, WrongThread { owner, caller }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    enum TestError {
        Wrong(WrongThread),
        CreateFailed,
    }

    impl From<WrongThread> for TestError {
        fn from(e: WrongThread) -> Self {
            Self::Wrong(e)
        }
    }

    #[test]
    fn created_lazily_by_the_first_user_and_owned_by_it() {
        let mut bound = ThreadBound::<u32>::default();
        assert_eq!(bound.get(), Ok(None));
        let failed = bound.get_or_try_create(|| Err::<u32, _>(TestError::CreateFailed));
        assert_eq!(failed, Err(TestError::CreateFailed));
        assert_eq!(bound.get(), Ok(None), "a failed creation leaves nothing");
        // Moved to another thread before creation: that thread becomes the owner.
        let mut bound = std::thread::spawn(move || {
            assert_eq!(bound.get_or_try_create(|| Ok::<_, TestError>(7)), Ok(&7));
            assert_eq!(bound.get_or_try_create(|| Ok::<_, TestError>(8)), Ok(&7));
            bound
        })
        .join()
        .unwrap();
        let err = bound.get().unwrap_err();
        assert_ne!(err.owner, err.caller);
        assert!(err.to_string().contains("created it"), "{err}");
        assert!(matches!(
            bound.get_or_try_create(|| Ok::<_, TestError>(9)),
            Err(TestError::Wrong(_))
        ));
        assert!(matches!(bound.take(), Some(Err((7, _)))));
        assert!(bound.take().is_none());
    }

    #[test]
    fn the_owner_takes_the_value_back() {
        let mut bound = ThreadBound::<&str>::default();
        bound
            .get_or_try_create(|| Ok::<_, TestError>("vcpu"))
            .unwrap();
        assert!(format!("{bound:?}").contains("vcpu"));
        assert!(matches!(bound.take(), Some(Ok("vcpu"))));
    }
}
