//! The rules every configuration shares, and the error that names what broke one.
//!
//! [`WorkerConfig`](crate::WorkerConfig), [`ClientConfig`](crate::client::ClientConfig) and
//! [`BrokerConfig`](crate::broker::BrokerConfig) check what they have in common (durations,
//! heartbeat and liveness, endpoints, service names, frame size, credentials) with the same
//! functions, so one value is refused with the same words wherever it is given.

use std::fmt;
use std::time::Duration;

use crate::protocol::MAX_SERVICE_NAME_LEN;

/// Longest duration any setting accepts: 2^31 − 1 ms, about 24.8 days.
///
/// ZeroMQ takes its timeouts as `int` milliseconds, and every interval of the crate is added
/// to an [`Instant`](std::time::Instant) somewhere: a bound that fits both keeps every such
/// sum far from overflow, and no real heartbeat, backoff or deadline comes near it.
pub const MAX_DURATION: Duration = Duration::from_millis(i32::MAX as u64);

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The broker address list holds no address at all.
    #[error("broker_address is empty")]
    NoBrokerAddress,
    /// An item of the comma-separated broker address list is empty.
    #[error("broker_address {list:?} has an empty item at position {position}")]
    EmptyBrokerAddress {
        /// The whole list as given.
        list: String,
        /// Zero-based position of the empty item.
        position: usize,
    },
    /// A broker address is not a ZeroMQ endpoint a worker can connect to.
    #[error("broker_address item {endpoint:?} is not a valid endpoint: {reason}")]
    InvalidEndpoint {
        /// The offending item, trimmed.
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The service name is empty.
    #[error("service_name is empty")]
    EmptyServiceName,
    /// The service name starts with `mmi.`, which 8/MMI reserves for brokers.
    #[error(
        "service_name {name:?} is reserved: names starting with \"mmi.\" belong to the broker"
    )]
    ReservedServiceName {
        /// The name given.
        name: String,
    },
    /// The service name is longer than the protocol's 255 bytes.
    #[error("service_name of {len} bytes is longer than {MAX_SERVICE_NAME_LEN}")]
    ServiceNameTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A numeric or duration value is out of its range.
    #[error("{field} = {value} is invalid: {reason}")]
    InvalidValue {
        /// The configuration field.
        field: &'static str,
        /// The value given, as text.
        value: String,
        /// Why it cannot be used.
        reason: &'static str,
    },
}

pub(crate) fn invalid(
    field: &'static str,
    value: impl fmt::Display,
    reason: &'static str,
) -> ConfigError {
    ConfigError::InvalidValue {
        field,
        value: value.to_string(),
        reason,
    }
}

pub(crate) fn non_zero(field: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        Err(invalid(field, "0 ms", "must be greater than zero"))
    } else {
        Ok(())
    }
}

/// Checks that `value` is at most [`MAX_DURATION`].
pub(crate) fn fits_millis(field: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value > MAX_DURATION {
        Err(invalid(
            field,
            format!("{} ms", value.as_millis()),
            "must be at most 2^31-1 ms (about 24.8 days)",
        ))
    } else {
        Ok(())
    }
}

/// A duration that must be greater than zero and at most [`MAX_DURATION`].
pub(crate) fn positive(field: &'static str, value: Duration) -> Result<(), ConfigError> {
    non_zero(field, value)?;
    fits_millis(field, value)
}

/// Heartbeat and liveness, as worker and broker both take them: a positive heartbeat, at
/// least one heartbeat of liveness, and a liveness window (their product) within
/// [`MAX_DURATION`].
pub(crate) fn check_heartbeat(heartbeat: Duration, liveness: u32) -> Result<(), ConfigError> {
    positive("heartbeat", heartbeat)?;
    if liveness == 0 {
        return Err(invalid("liveness", 0, "must be at least 1"));
    }
    match heartbeat.checked_mul(liveness) {
        Some(window) if window <= MAX_DURATION => Ok(()),
        _ => Err(invalid(
            "liveness",
            liveness,
            "heartbeat x liveness must be at most 2^31-1 ms",
        )),
    }
}

/// The largest frame a socket accepts (`ZMQ_MAXMSGSIZE`, an `int64_t`).
pub(crate) fn check_max_message_size(value: u64) -> Result<(), ConfigError> {
    if value == 0 || value > i64::MAX as u64 {
        Err(invalid(
            "max_message_size",
            value,
            "must be between 1 and 2^63-1",
        ))
    } else {
        Ok(())
    }
}

/// Checks a service name a worker may register.
///
/// # Errors
///
/// [`ConfigError::EmptyServiceName`], [`ConfigError::ReservedServiceName`] or
/// [`ConfigError::ServiceNameTooLong`].
pub fn validate_service_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        Err(ConfigError::EmptyServiceName)
    } else if name.starts_with("mmi.") {
        Err(ConfigError::ReservedServiceName {
            name: name.to_string(),
        })
    } else if name.len() > MAX_SERVICE_NAME_LEN {
        Err(ConfigError::ServiceNameTooLong { len: name.len() })
    } else {
        Ok(())
    }
}

/// Splits a comma-separated endpoint list, trims each item and checks it.
///
/// # Errors
///
/// A [`ConfigError`] naming the first bad item.
pub fn parse_endpoints(list: &str) -> Result<Vec<String>, ConfigError> {
    if list.trim().is_empty() {
        return Err(ConfigError::NoBrokerAddress);
    }
    list.split(',')
        .enumerate()
        .map(|(position, item)| {
            let endpoint = item.trim();
            if endpoint.is_empty() {
                return Err(ConfigError::EmptyBrokerAddress {
                    list: list.to_string(),
                    position,
                });
            }
            check_endpoint(endpoint).map_err(|reason| ConfigError::InvalidEndpoint {
                endpoint: endpoint.to_string(),
                reason,
            })?;
            Ok(endpoint.to_string())
        })
        .collect()
}

/// Checks one endpoint a socket can connect to: `tcp://host:port`, `ipc://path`,
/// `inproc://name`.
fn check_endpoint(endpoint: &str) -> Result<(), &'static str> {
    let (scheme, rest) = endpoint
        .split_once("://")
        .ok_or("expected transport://address")?;
    if rest.is_empty() {
        return Err("address after :// is empty");
    }
    if rest.chars().any(char::is_whitespace) {
        return Err("address contains white space");
    }
    match scheme {
        "tcp" => check_tcp(rest),
        "ipc" | "inproc" => Ok(()),
        _ => Err("transport must be tcp, ipc or inproc"),
    }
}

fn check_tcp(address: &str) -> Result<(), &'static str> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or("tcp address needs host:port")?;
    // A source address may precede the host: tcp://eth0;192.168.1.1:5555.
    let host = host.rsplit_once(';').map_or(host, |(_, host)| host);
    if host.is_empty() {
        return Err("tcp address has no host");
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err("tcp port must be a number from 1 to 65535"),
        Ok(_) => Ok(()),
    }
}
