//! The one way vaxtrail waits out an unavailable dependency: doubling delays up to a ceiling,
//! ended by the shutdown token or an optional deadline, with the caller deciding which errors
//! are worth another try.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// The shutdown token was cancelled while waiting for another try.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("stopped while retrying")]
pub struct Stopped;

/// Doubling delays from `first` up to `max`; with `give_up_after`, the last error is returned
/// once that long has passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    pub give_up_after: Option<Duration>,
}

impl Backoff {
    /// Store and broker calls in the services: 200 ms, doubling to 5 s, never giving up.
    pub const SERVICE: Self = Self::new(Duration::from_millis(200), Duration::from_secs(5));

    /// Waiting out the schema registry: 200 ms, doubling to 10 s, never giving up.
    pub const REGISTRY: Self = Self::new(Duration::from_millis(200), Duration::from_secs(10));

    pub const fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            give_up_after: None,
        }
    }

    /// The same delays, giving up after `limit`.
    pub const fn giving_up_after(self, limit: Duration) -> Self {
        Self {
            give_up_after: Some(limit),
            ..self
        }
    }

    /// The delays, in order.
    pub fn delays(self) -> impl Iterator<Item = Duration> {
        std::iter::successors(Some(self.first), move |d| Some((*d * 2).min(self.max)))
    }

    /// [`Backoff::retry`] for a blocking thread (a librdkafka admin call, say): sleeps between
    /// tries; with no deadline and no shutdown token, so give it one with
    /// [`Backoff::giving_up_after`].
    pub fn retry_blocking<T, E>(
        self,
        mut call: impl FnMut() -> Result<T, E>,
        mut retriable: impl FnMut(&E) -> bool,
    ) -> Result<T, E> {
        let deadline = self.give_up_after.map(|limit| Instant::now() + limit);
        let mut delays = self.delays();
        loop {
            let error = match call() {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if !retriable(&error) || deadline.is_none_or(|d| Instant::now() >= d) {
                return Err(error);
            }
            std::thread::sleep(delays.next().expect("delays never end"));
        }
    }

    /// Calls `call` until it succeeds, fails with an error `retriable` refuses, the deadline
    /// passes (the last error) or `stop` is cancelled while waiting ([`Stopped`]). `retriable`
    /// sees every error first: the place to log it and count it.
    pub async fn retry<T, E, F, Fut>(
        self,
        stop: &CancellationToken,
        mut call: F,
        mut retriable: impl FnMut(&E) -> bool,
    ) -> Result<Result<T, E>, Stopped>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let deadline = self.give_up_after.map(|limit| Instant::now() + limit);
        let mut delays = self.delays();
        loop {
            let error = match call().await {
                Ok(value) => return Ok(Ok(value)),
                Err(error) => error,
            };
            if !retriable(&error) || deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(Err(error));
            }
            let delay = delays.next().expect("delays never end");
            tokio::select! {
                () = stop.cancelled() => return Err(Stopped),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    const QUICK: Backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(4));

    #[test]
    fn delays_double_up_to_the_ceiling() {
        let delays: Vec<u64> = QUICK.delays().take(5).map(|d| d.as_millis() as u64).collect();
        assert_eq!(delays, [1, 2, 4, 4, 4]);
    }

    #[test]
    fn blocking_retries_until_success_and_gives_up_at_its_deadline() {
        let calls = AtomicU32::new(0);
        let patient = QUICK.giving_up_after(Duration::from_secs(5));
        let answer = patient.retry_blocking(
            || match calls.fetch_add(1, Ordering::SeqCst) {
                0..3 => Err("timed out"),
                _ => Ok(7),
            },
            |_| true,
        );
        assert_eq!((answer, calls.load(Ordering::SeqCst)), (Ok(7), 4));

        let started = Instant::now();
        let hopeless = QUICK.giving_up_after(Duration::from_millis(30));
        let answer: Result<(), _> = hopeless.retry_blocking(|| Err("down"), |_| true);
        assert_eq!(answer, Err("down"));
        assert!(started.elapsed() >= Duration::from_millis(30));
        // Without a deadline it does not loop forever: the first error comes back.
        let once = AtomicU32::new(0);
        let answer: Result<(), _> = QUICK.retry_blocking(
            || {
                once.fetch_add(1, Ordering::SeqCst);
                Err("down")
            },
            |_| true,
        );
        assert_eq!((answer, once.load(Ordering::SeqCst)), (Err("down"), 1));
    }

    #[tokio::test]
    async fn retries_until_success_and_returns_at_once_on_a_refused_error() {
        let calls = AtomicU32::new(0);
        let stop = CancellationToken::new();
        let answer = QUICK
            .retry(
                &stop,
                || async {
                    if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                        Err("down")
                    } else {
                        Ok(7)
                    }
                },
                |_| true,
            )
            .await;
        assert_eq!(answer, Ok(Ok(7)));
        assert_eq!(calls.load(Ordering::SeqCst), 4);

        let refused = QUICK
            .retry(&stop, || async { Err::<(), _>("bad") }, |e| *e != "bad")
            .await;
        assert_eq!(refused, Ok(Err("bad")));
    }

    #[tokio::test]
    async fn a_cancelled_stop_or_a_passed_deadline_ends_the_retries() {
        let stop = CancellationToken::new();
        stop.cancel();
        assert_eq!(
            QUICK.retry(&stop, || async { Err::<(), _>(1) }, |_| true).await,
            Err(Stopped)
        );

        let running = CancellationToken::new();
        let limited = QUICK.giving_up_after(Duration::from_millis(20));
        assert_eq!(
            limited.retry(&running, || async { Err::<(), _>(2) }, |_| true).await,
            Ok(Err(2))
        );
    }
}
