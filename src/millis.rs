//! Durations as ZeroMQ's milliseconds, for every socket option and poll in the crate.

use std::time::Duration;

/// Milliseconds for a ZeroMQ option, rounded up so that a short wait never becomes a busy spin.
pub(crate) fn millis_i32(d: Duration) -> i32 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    ms.min(i32::MAX as u128) as i32
}

/// Milliseconds for `zmq::poll`, rounded up.
pub(crate) fn millis_i64(d: Duration) -> i64 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    ms.min(i64::MAX as u128) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_millisecond_waits_round_up_and_huge_ones_saturate() {
        assert_eq!(millis_i32(Duration::from_micros(1)), 1);
        assert_eq!(millis_i32(Duration::from_millis(2500)), 2500);
        assert_eq!(millis_i32(Duration::ZERO), 0);
        assert_eq!(millis_i32(Duration::from_secs(u64::MAX)), i32::MAX);
        assert_eq!(millis_i64(Duration::from_nanos(1_000_001)), 2);
    }
}
