//! How a session holds later sends behind a refused one, so a sender's messages keep their
//! order: [`SendHold`].

use std::time::Duration;

use crate::error::ApiError;
use natter_core::service_error::ServiceError;

/// The longest wait after a refused send that holds the connection's later sends too. A
/// longer one (a byte allowance spent on big messages can take an hour to refill) lets later
/// sends that fit through, as the allowance decides: order is kept for short waits, and the
/// connection is not stopped for long ones.
const HOLD_AT_MOST: Duration = Duration::from_secs(5);

/// After a send is refused for a while (the node is busy, the sender's rate, the store is
/// unavailable), the connection's later sends wait as long (up to [`HOLD_AT_MOST`]): the
/// client resends in its order, so a later message cannot take a place freed meanwhile and be
/// stored before the refused one. For a busy node the wait doubles with each such refusal in a
/// row (up to 16 times the node's base wait), with up to half again at random, so that clients
/// of an overloaded node back off and do not all come back at once; an accepted send resets
/// it.
#[derive(Debug, Default)]
pub(super) struct SendHold {
    until: Option<tokio::time::Instant>,
    refusals_in_a_row: u32,
    /// What the sends held behind the hold count under in `natter_rate_limited_total`: the
    /// `kind` of the refusal that set it (a limit's name, `node_sends`, or the error code).
    cause: &'static str,
}

impl SendHold {
    /// The wait left, while sends are held. (Waits are told rounded up to whole milliseconds, so
    /// a resend after the told wait never arrives before the hold ends.)
    pub(super) fn held(&self, now: tokio::time::Instant) -> Option<Duration> {
        self.until
            .and_then(|until| until.checked_duration_since(now))
            .filter(|wait| !wait.is_zero())
    }

    /// The wait for a send refused because the node is busy, from the node's `base` wait.
    pub(super) fn busy(&mut self, base: Duration) -> Duration {
        let doublings = self.refusals_in_a_row.min(4);
        self.refusals_in_a_row = self.refusals_in_a_row.saturating_add(1);
        (base * (1 << doublings)).mul_f64(1.0 + rand::random::<f64>() / 2.0)
    }

    /// Holds later sends for the `wait` a refused send was told, if it is at most
    /// [`HOLD_AT_MOST`] (or the send was refused because the node is busy, whose waits grow past
    /// it). Returns whether it holds.
    pub(super) fn hold(&mut self, wait: Duration, busy: bool, now: tokio::time::Instant) -> bool {
        let holds = busy || wait <= HOLD_AT_MOST;
        if holds {
            self.until = Some(self.until.map_or(now + wait, |until| until.max(now + wait)));
        }
        holds
    }

    /// What a refused send is told (a busy node's wait grown, see [`Self::busy`]); any wait it
    /// tells holds later sends, unless the send was itself held behind an earlier refusal,
    /// whose hold stands as it is.
    ///
    /// A send held behind the hold is counted in `natter_rate_limited_total` under the cause of
    /// the hold (the refusal that set it was counted where it was refused), so that every send
    /// refused with `rate_limited` is counted once.
    pub(super) fn refused(&mut self, error: ServiceError, now: tokio::time::Instant) -> ApiError {
        let busy = matches!(error, ServiceError::Busy { .. });
        let held = matches!(error, ServiceError::HeldBehind { .. });
        let limit = match &error {
            ServiceError::RateLimited { kind, .. } => Some(*kind),
            ServiceError::Busy { .. } => Some(natter_core::messages::NODE_SENDS),
            _ => None,
        };
        let error = ApiError::from(match error {
            ServiceError::Busy { retry_after: base } => ServiceError::Busy {
                retry_after: self.busy(base),
            },
            error => error,
        });
        if held {
            metrics::counter!("natter_rate_limited_total", "kind" => self.cause).increment(1);
        } else if let Some(wait) = error.retry_after()
            && self.hold(wait, busy, now)
        {
            self.cause = limit.unwrap_or(error.code());
        }
        error
    }

    /// A send went through: the next refusal starts from the base wait again.
    pub(super) fn accepted(&mut self) {
        self.refusals_in_a_row = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_wait_holds_later_sends_and_a_long_one_does_not() {
        let now = tokio::time::Instant::now();
        let wait = Duration::from_micros(1_500_200);
        let mut hold = SendHold::default();
        assert!(hold.hold(wait, false, now));
        assert_eq!(hold.held(now), Some(wait));
        assert_eq!(hold.held(now + wait), None, "held no longer than it said");
        // A shorter wait after it does not shorten the hold; a long one does not hold at all,
        // unless the node is busy.
        assert!(hold.hold(Duration::from_millis(10), false, now));
        assert_eq!(hold.held(now), Some(wait));
        let mut long = SendHold::default();
        assert!(!long.hold(HOLD_AT_MOST * 2, false, now));
        assert_eq!(long.held(now), None);
        assert!(long.hold(HOLD_AT_MOST * 2, true, now));
        assert_eq!(long.held(now), Some(HOLD_AT_MOST * 2));
    }

    #[test]
    fn a_refusal_holds_for_the_wait_it_tells_but_a_held_send_moves_no_hold() {
        let now = tokio::time::Instant::now();
        let mut hold = SendHold::default();
        let rate = |wait| ServiceError::RateLimited {
            kind: "user_bytes",
            retry_after: wait,
        };
        let told = hold.refused(rate(Duration::from_secs(2)), now);
        assert_eq!(told.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(hold.held(now), Some(Duration::from_secs(2)));
        // A later send held behind it, a second on, is told the rest and leaves the hold (its
        // refusal is handled a little after the rest was measured).
        let later = now + Duration::from_secs(1);
        let left = hold.held(later).unwrap();
        let handled = later + Duration::from_millis(100);
        let told = hold.refused(ServiceError::HeldBehind { retry_after: left }, handled);
        assert_eq!(told.retry_after(), Some(left));
        assert_eq!(hold.held(now), Some(Duration::from_secs(2)), "not moved");
        // A busy node's wait grows and holds; a long wait for the rate holds nothing.
        let busy = hold.refused(
            ServiceError::Busy {
                retry_after: HOLD_AT_MOST,
            },
            now,
        );
        assert!(busy.retry_after().is_some_and(|wait| wait >= HOLD_AT_MOST));
        assert_eq!(hold.held(now), busy.retry_after());
        let mut long = SendHold::default();
        long.refused(rate(HOLD_AT_MOST * 2), now);
        assert_eq!(long.held(now), None);
    }

    #[test]
    fn busy_refusals_in_a_row_double_the_wait_up_to_sixteen_times_with_jitter() {
        let base = Duration::from_millis(100);
        let mut busy = SendHold::default();
        for (refusal, factor) in [1, 2, 4, 8, 16, 16].into_iter().enumerate() {
            let wait = busy.busy(base);
            let least = base * factor;
            assert!(
                wait >= least && wait <= least.mul_f64(1.5),
                "refusal {refusal}: {wait:?}"
            );
        }
        busy.accepted();
        assert!(busy.busy(base) <= base.mul_f64(1.5));
    }

    #[test]
    fn waits_are_told_in_whole_milliseconds_rounded_up() {
        let told = |wait| {
            let error = ApiError::from(ServiceError::Busy { retry_after: wait });
            error.retry_after_ms()
        };
        assert_eq!(told(Duration::from_micros(1_500_200)), Some(1_501));
        assert_eq!(told(Duration::from_millis(250)), Some(250));
        assert_eq!(told(Duration::from_micros(10)), Some(1));
        let past_a_millisecond = Duration::from_millis(1) + Duration::from_nanos(1);
        assert_eq!(
            told(past_a_millisecond),
            Some(2),
            "never early, to the nanosecond"
        );
        // The words say the same.
        let busy = ApiError::from(ServiceError::Busy {
            retry_after: past_a_millisecond,
        });
        assert!(busy.detail().contains("retry in 2 ms"), "{}", busy.detail());
    }
}
