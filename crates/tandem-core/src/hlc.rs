//! A hybrid logical clock (Kulkarni et al.): wall-clock milliseconds in the
//! high 48 bits and a logical counter in the low 16. It never goes backwards,
//! stays close to real time, and orders causally related changes across
//! regions even when their clocks disagree, which last-writer-wins conflict
//! resolution needs.

use std::sync::Mutex;

const LOGICAL_BITS: u32 = 16;
const LOGICAL_MASK: u64 = (1 << LOGICAL_BITS) - 1;

/// A clock shared by every writer of one region.
#[derive(Debug)]
pub struct HybridClock {
    last: Mutex<u64>,
}

impl HybridClock {
    /// Starts after `floor`, the highest timestamp already issued (read from
    /// the journal at start-up, so a restart with a clock set back still moves
    /// forward).
    pub fn new(floor: u64) -> Self {
        HybridClock {
            last: Mutex::new(floor),
        }
    }

    /// A timestamp greater than every one issued or observed before.
    pub fn now(&self, wall_millis: i64) -> u64 {
        let physical = (wall_millis.max(0) as u64) << LOGICAL_BITS;
        let mut last = self.last.lock().expect("clock lock poisoned");
        let next = if physical > *last { physical } else { *last + 1 };
        *last = next;
        next
    }

    /// Folds in a timestamp seen from another region, so later local changes
    /// order after it.
    pub fn observe(&self, remote: u64) {
        let mut last = self.last.lock().expect("clock lock poisoned");
        if remote > *last {
            *last = remote;
        }
    }

    /// The wall-clock milliseconds of a timestamp.
    pub fn millis(timestamp: u64) -> i64 {
        (timestamp >> LOGICAL_BITS) as i64
    }

    pub fn logical(timestamp: u64) -> u64 {
        timestamp & LOGICAL_MASK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_goes_backwards_when_the_wall_clock_does() {
        let clock = HybridClock::new(0);
        let first = clock.now(1_000);
        let second = clock.now(500);
        let third = clock.now(1_000);
        assert!(first < second && second < third);
        assert_eq!(HybridClock::millis(third), 1_000);
        assert_eq!(HybridClock::logical(third), 2);
    }

    #[test]
    fn orders_after_an_observed_remote_timestamp() {
        let clock = HybridClock::new(0);
        let remote = HybridClock::new(0).now(10_000);
        clock.observe(remote);
        assert!(clock.now(9_000) > remote);
    }
}
