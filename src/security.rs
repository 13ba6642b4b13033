//! ZeroMQ security settings shared by the worker, the client and the broker: PLAIN
//! credentials on the connecting side, and the checks every config runs on them.
//!
//! PLAIN (RFC 24) sends the username and the password **in clear text** during the
//! handshake: it tells a broker who may register or send requests, it does not hide them
//! from anyone who can read the network. See the README's security section.

use std::fmt;

use crate::config::{invalid, ConfigError};

/// Longest PLAIN username or password: the handshake carries its length in one byte (and
/// libzmq aborts the process on a longer one, so it must be refused here).
pub(crate) const MAX_PLAIN_FIELD_LEN: usize = 255;

/// PLAIN credentials a worker or client presents to the broker.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PlainCredentials {
    pub(crate) username: String,
    pub(crate) password: String,
}

impl PlainCredentials {
    pub(crate) fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        PlainCredentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// Checks the lengths libzmq can carry; names the field, never shows the password.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check_plain(&self.username, &self.password)
    }

    /// Makes `socket` a PLAIN client with these credentials (before it connects).
    pub(crate) fn apply(&self, socket: &zmq::Socket) -> Result<(), (&'static str, zmq::Error)> {
        socket
            .set_plain_username(Some(&self.username))
            .map_err(|e| ("setsockopt(ZMQ_PLAIN_USERNAME)", e))?;
        socket
            .set_plain_password(Some(&self.password))
            .map_err(|e| ("setsockopt(ZMQ_PLAIN_PASSWORD)", e))
    }
}

impl fmt::Debug for PlainCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Checks a PLAIN username and password: a non-empty username, both at most 255 bytes.
pub(crate) fn check_plain(username: &str, password: &str) -> Result<(), ConfigError> {
    if username.is_empty() {
        return Err(invalid("plain_username", "\"\"", "must not be empty"));
    }
    if username.len() > MAX_PLAIN_FIELD_LEN {
        return Err(invalid(
            "plain_username",
            format!("{} bytes", username.len()),
            "must be at most 255 bytes",
        ));
    }
    if password.len() > MAX_PLAIN_FIELD_LEN {
        // The value is a secret: only its length is shown.
        return Err(invalid(
            "plain_password",
            format!("{} bytes", password.len()),
            "must be at most 255 bytes",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_credentials_are_checked_without_showing_the_password() {
        assert_eq!(check_plain("worker", ""), Ok(()));
        assert_eq!(check_plain(&"u".repeat(255), &"p".repeat(255)), Ok(()));
        let cases = [
            ("", "pw", "plain_username", "\"\""),
            (&*"u".repeat(256), "pw", "plain_username", "256 bytes"),
            ("worker", &*"p".repeat(300), "plain_password", "300 bytes"),
        ];
        for (username, password, field, value) in cases {
            match check_plain(username, password) {
                Err(ConfigError::InvalidValue {
                    field: f, value: v, ..
                }) => {
                    assert_eq!((f, v.as_str()), (field, value));
                }
                other => panic!("{field}: expected InvalidValue, got {other:?}"),
            }
        }
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let shown = format!("{:?}", PlainCredentials::new("worker", "s3cret"));
        assert!(shown.contains("worker"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
