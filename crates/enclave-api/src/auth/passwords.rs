//! Argon2id password hashing. It costs tens of milliseconds of CPU by design, so it runs on
//! the blocking pool, at most one hash per core at a time, never on the async runtime — and
//! behind a bounded queue: past [`MAX_WAITING`] checks waiting, more are refused at once (503)
//! rather than queued, so a flood of sign-ins cannot make every other one wait for seconds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use enclave_core::{Error, Result};
use tokio::sync::Semaphore;

/// Checks that may wait for a core (about a second of work on two cores).
pub const MAX_WAITING: usize = 32;

#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
}

impl Default for Passwords {
    fn default() -> Self {
        Self::new()
    }
}

impl Passwords {
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Passwords {
            permits: Arc::new(Semaphore::new(cores)),
            waiting: Arc::default(),
        }
    }

    pub async fn hash(&self, password: String) -> Result<String> {
        self.run(move || {
            let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|_| Error::internal())
        })
        .await
    }

    /// Whether `password` matches `hash`. With no hash (unknown user, or a user who never set a
    /// password) a dummy hash is checked, so the answer takes as long either way.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool> {
        self.run(move || {
            let hash = hash.unwrap_or_else(|| DUMMY_HASH.to_string());
            let parsed = PasswordHash::new(&hash).map_err(|_| Error::internal())?;
            let ok = Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
            Ok(ok && hash != DUMMY_HASH)
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let _waiting = Waiting::enter(&self.waiting).ok_or_else(|| {
                    Error::unavailable("too many sign-ins are being checked; retry shortly")
                })?;
                self.permits
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| Error::internal())?
            }
        };
        let _permit = permit;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|_| Error::internal())?
    }
}

/// A place in the queue for a core, given back when dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Option<Waiting<'a>> {
        let before = count.fetch_add(1, Ordering::SeqCst);
        let place = Waiting(count);
        (before < MAX_WAITING).then_some(place)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Argon2id of a random password nobody knows, with the default parameters.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$6rDHZyNRR1DBzrsDr1nYmZ2Rhbk02NJ/qnV8tkSdrTc";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let p = Passwords::new();
        let h = p.hash("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(p
            .verify("correct horse battery".into(), Some(h.clone()))
            .await
            .unwrap());
        assert!(!p
            .verify("wrong horse battery".into(), Some(h))
            .await
            .unwrap());
        assert!(!p.verify("anything".into(), None).await.unwrap());
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_checks_is_refused_past_the_queue_not_queued() {
        let p = Passwords::new();
        let checks: Vec<_> = (0..200)
            .map(|_| {
                let p = p.clone();
                tokio::spawn(async move { p.verify("guess".into(), None).await })
            })
            .collect();
        let mut refused = 0;
        for c in checks {
            match c.await.unwrap() {
                Ok(ok) => assert!(!ok),
                Err(e) => {
                    assert_eq!(e.code, enclave_core::ErrorCode::ServiceUnavailable);
                    refused += 1;
                }
            }
        }
        assert!(
            refused > 0 && refused <= 200 - MAX_WAITING,
            "{refused} refused"
        );
        // Once the flood is over, checks run again.
        assert!(!p.verify("again".into(), None).await.unwrap());
    }
}
