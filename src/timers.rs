//! A table of named deadlines: one optional `Instant` per timer of an enum, as quinn-proto
//! keeps its timers. The session and the pool supervisor each name their own timers and use
//! this one table.

use std::marker::PhantomData;
use std::time::Instant;

/// `N` optional deadlines, indexed by the timers `T` (an enum whose values are `0..N`).
#[derive(Debug, Clone)]
pub(crate) struct TimerTable<T, const N: usize> {
    data: [Option<Instant>; N],
    names: PhantomData<T>,
}

impl<T, const N: usize> Default for TimerTable<T, N> {
    fn default() -> Self {
        TimerTable {
            data: [None; N],
            names: PhantomData,
        }
    }
}

impl<T: Copy + Into<usize>, const N: usize> TimerTable<T, N> {
    pub(crate) fn set(&mut self, timer: T, at: Instant) {
        self.data[timer.into()] = Some(at);
    }

    pub(crate) fn get(&self, timer: T) -> Option<Instant> {
        self.data[timer.into()]
    }

    pub(crate) fn stop(&mut self, timer: T) {
        self.data[timer.into()] = None;
    }

    pub(crate) fn stop_all(&mut self) {
        self.data = [None; N];
    }

    /// Whether `timer` is set and due at `now`.
    pub(crate) fn is_due(&self, timer: T, now: Instant) -> bool {
        self.get(timer).is_some_and(|at| at <= now)
    }

    /// The earliest deadline set, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.data.iter().flatten().min().copied()
    }
}
