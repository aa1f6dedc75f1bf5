//! Retrying the work the daemon does itself: file downloads, git clones, one-time-secret fetches and
//! the abort of an incomplete upload. (Requests to object storage are retried inside object_store,
//! by its own `RetryConfig` built from `storage.retry`.)
//!
//! An attempt either succeeds or says whether its failure is worth another try ([`Failure`]);
//! [`run`] repeats it under a [`Policy`]: a number of attempts, with a pause between two of them
//! that grows from `initial_backoff` by `multiplier` up to `max_backoff`, shortened at random by up
//! to `jitter` of itself so that many clients failing together do not retry in step.
//!
//! Cancellation is the caller's: dropping the future of [`run`] (the call was cancelled, or its
//! deadline passed) stops it in the attempt or the pause it is in, and no further attempt starts.

use std::future::Future;
use std::hash::BuildHasher;
use std::time::Duration;

use crate::error::Error;

/// How one attempt failed.
#[derive(Debug)]
pub enum Failure<E = Error> {
    /// Worth another try (network error, server error, timeout): why, for logs and the final message.
    Transient(String),
    /// Not worth another try (refused credentials, missing repository, digest mismatch).
    Final(E),
}

/// How often and how patiently an operation is retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Attempts in all, the first included; at least 1.
    pub attempts: u32,
    /// The pause after the first failed attempt.
    pub initial_backoff: Duration,
    /// No pause is longer than this.
    pub max_backoff: Duration,
    /// Each next pause is this many times the previous one (until `max_backoff`).
    pub multiplier: u32,
    /// The fraction of each pause (0 to 1) that may be taken off at random.
    pub jitter: f64,
}

impl Policy {
    /// The initializers' policy: `attempts` attempts (at least 1), pauses of 250 ms doubling up to
    /// 4 s, each shortened at random by up to a half.
    pub fn with_attempts(attempts: u32) -> Policy {
        Policy {
            attempts: attempts.max(1),
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
            multiplier: 2,
            jitter: 0.5,
        }
    }

    /// The pause before retry `attempt` (1-based: the pause after the first failure is `backoff(1)`)
    /// without jitter: `initial_backoff * multiplier^(attempt-1)`, at most `max_backoff`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let mut pause = self.initial_backoff.min(self.max_backoff);
        for _ in 1..attempt {
            if pause >= self.max_backoff {
                break;
            }
            pause = pause
                .saturating_mul(self.multiplier.max(1))
                .min(self.max_backoff);
        }
        pause
    }

    /// The pause before retry `attempt` with `unit` (in [0, 1)) as the random draw: the backoff
    /// shortened by `unit * jitter` of itself.
    pub fn pause_with(&self, attempt: u32, unit: f64) -> Duration {
        let cut = unit * self.jitter;
        // A NaN would make `mul_f64` panic: no jitter instead.
        let cut = if cut.is_nan() {
            0.0
        } else {
            cut.clamp(0.0, 1.0)
        };
        self.backoff(attempt).mul_f64(1.0 - cut)
    }

    /// The pause before retry `attempt`, with a random jitter.
    pub fn pause(&self, attempt: u32) -> Duration {
        self.pause_with(attempt, random_unit())
    }
}

/// Runs `attempt` (given its 1-based number) until it succeeds, fails finally, or `policy.attempts`
/// attempts have failed transiently, pausing between attempts. `on_transient` sees every transient
/// failure (the last one too) with its attempt number, for logs.
///
/// The error is the final failure, or the last transient one once the attempts are used up.
pub async fn run<T, E, F, Fut>(
    policy: &Policy,
    mut attempt: F,
    mut on_transient: impl FnMut(u32, &str),
) -> Result<T, Failure<E>>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, Failure<E>>>,
{
    let attempts = policy.attempts.max(1);
    let mut number = 1;
    loop {
        match attempt(number).await {
            Ok(value) => return Ok(value),
            Err(Failure::Final(e)) => return Err(Failure::Final(e)),
            Err(Failure::Transient(why)) => {
                on_transient(number, &why);
                if number >= attempts {
                    return Err(Failure::Transient(why));
                }
                tokio::time::sleep(policy.pause(number)).await;
                number += 1;
            }
        }
    }
}

/// A random number in [0, 1). Jitter needs no strong randomness: std's hasher keys are random per
/// process and change with every `RandomState`.
fn random_unit() -> f64 {
    let bits = std::collections::hash_map::RandomState::new().hash_one(0u8);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::convert::Infallible;
    use tokio::time::Instant;

    fn policy(attempts: u32) -> Policy {
        Policy {
            jitter: 0.0,
            ..Policy::with_attempts(attempts)
        }
    }

    #[test]
    fn the_initializers_backoff_doubles_from_250ms_up_to_4s() {
        let p = Policy::with_attempts(3);
        let ms = |a| p.backoff(a).as_millis();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(4), ms(5), ms(9), ms(u32::MAX)],
            [250, 500, 1000, 2000, 4000, 4000, 4000]
        );
        assert_eq!(p.backoff(0), Duration::from_millis(250));
        assert_eq!(Policy::with_attempts(0).attempts, 1);
    }

    #[test]
    fn backoff_grows_by_the_multiplier_and_never_passes_the_maximum() {
        let p = Policy {
            attempts: 5,
            initial_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(600),
            multiplier: 5,
            jitter: 0.0,
        };
        let secs: Vec<u64> = (1..=6).map(|a| p.backoff(a).as_secs()).collect();
        assert_eq!(secs, [5, 25, 125, 600, 600, 600]);
        // An initial pause above the maximum is cut to it.
        let short = Policy {
            max_backoff: Duration::from_secs(1),
            ..p
        };
        assert_eq!(short.backoff(1), Duration::from_secs(1));
    }

    #[test]
    fn jitter_only_shortens_a_pause_and_by_at_most_its_fraction() {
        let p = Policy::with_attempts(3);
        for attempt in 1..=6 {
            let full = p.backoff(attempt);
            assert_eq!(p.pause_with(attempt, 0.0), full);
            assert_eq!(p.pause_with(attempt, 0.5), full.mul_f64(0.75));
            assert!(p.pause_with(attempt, 0.999_999) > full / 2);
            for _ in 0..200 {
                let pause = p.pause(attempt);
                assert!(pause <= full && pause >= full / 2, "{pause:?} of {full:?}");
            }
        }
        // The draws differ: jitter that is always the same would not spread clients out.
        let draws: std::collections::HashSet<u128> =
            (0..50).map(|_| p.pause(5).as_nanos()).collect();
        assert!(draws.len() > 1);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_up_to_the_attempts_with_growing_pauses() {
        let started = Instant::now();
        let times = std::cell::RefCell::new(Vec::new());
        let seen = std::cell::RefCell::new(Vec::new());
        let result: Result<(), Failure<Infallible>> = run(
            &policy(4),
            |n| {
                times.borrow_mut().push(started.elapsed());
                async move { Err(Failure::Transient(format!("HTTP 503 ({n})"))) }
            },
            |n, why| seen.borrow_mut().push((n, why.to_string())),
        )
        .await;
        let Err(Failure::Transient(last)) = result else {
            panic!("expected the last transient failure");
        };
        assert_eq!(last, "HTTP 503 (4)");
        assert_eq!(
            seen.into_inner(),
            (1..=4)
                .map(|n| (n, format!("HTTP 503 ({n})")))
                .collect::<Vec<_>>()
        );
        let ms: Vec<u128> = times.into_inner().iter().map(|t| t.as_millis()).collect();
        // Pauses of 250, 500 and 1000 ms; none after the last attempt.
        assert_eq!(ms, [0, 250, 750, 1750]);
        assert_eq!(started.elapsed().as_millis(), 1750);
    }

    #[tokio::test(start_paused = true)]
    async fn a_final_failure_is_not_retried() {
        let calls = Cell::new(0);
        let transient = Cell::new(0);
        let result: Result<(), Failure<&str>> = run(
            &policy(5),
            |n| {
                calls.set(n);
                async move {
                    if n == 1 {
                        Err(Failure::Transient("reset".into()))
                    } else {
                        Err(Failure::Final("authentication failed"))
                    }
                }
            },
            |_, _| transient.set(transient.get() + 1),
        )
        .await;
        assert!(matches!(
            result,
            Err(Failure::Final("authentication failed"))
        ));
        assert_eq!(calls.get(), 2);
        assert_eq!(transient.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn success_ends_the_retries_with_its_value() {
        let started = Instant::now();
        let result: Result<u32, Failure<Infallible>> = run(
            &policy(3),
            |n| async move {
                if n < 3 {
                    Err(Failure::Transient("timeout".into()))
                } else {
                    Ok(n)
                }
            },
            |_, _| {},
        )
        .await;
        assert!(matches!(result, Ok(3)));
        assert_eq!(started.elapsed(), Duration::from_millis(750));
        // One attempt in all: no pause at all.
        let once: Result<(), Failure<Infallible>> = run(
            &policy(1),
            |_| async { Err(Failure::Transient("x".into())) },
            |_, _| {},
        )
        .await;
        assert!(matches!(once, Err(Failure::Transient(_))));
        assert_eq!(started.elapsed(), Duration::from_millis(750));
    }

    #[tokio::test(start_paused = true)]
    async fn pauses_with_jitter_stay_within_their_bounds() {
        let p = Policy::with_attempts(6);
        let started = Instant::now();
        let times = std::cell::RefCell::new(Vec::new());
        let _: Result<(), Failure<Infallible>> = run(
            &p,
            |_| {
                times.borrow_mut().push(started.elapsed());
                async { Err(Failure::Transient("x".into())) }
            },
            |_, _| {},
        )
        .await;
        let times = times.into_inner();
        assert_eq!(times.len(), 6);
        for (i, pair) in times.windows(2).enumerate() {
            let pause = pair[1] - pair[0];
            let full = p.backoff(i as u32 + 1);
            assert!(pause <= full && pause >= full / 2, "{pause:?} of {full:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn cancelling_stops_further_attempts() {
        let calls = Cell::new(0);
        let policy = policy(10);
        let retries = run(
            &policy,
            |n| {
                calls.set(n);
                async { Err::<(), Failure<Infallible>>(Failure::Transient("down".into())) }
            },
            |_, _| {},
        );
        // The caller gives up during the third pause (after 250 + 500 ms of pauses).
        let cancelled = tokio::time::timeout(Duration::from_millis(1000), retries).await;
        assert!(cancelled.is_err());
        assert_eq!(calls.get(), 3);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(calls.get(), 3, "no attempt after the caller gave up");
    }
}
