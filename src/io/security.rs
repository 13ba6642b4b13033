//! ZeroMQ security settings shared by the worker, the client and the broker: PLAIN
//! credentials and CURVE keys, and the checks every config runs on them.
//!
//! PLAIN (RFC 24) sends the username and the password **in clear text** during the
//! handshake: it tells a broker who may register or send requests, it does not hide them
//! from anyone who can read the network. CURVE (RFC 26) encrypts and authenticates, but only
//! with a libzmq built with libsodium, which the `zmq` crate's bundled build is not: see
//! [`curve_available`] and the README's security section.

use std::fmt;

use crate::checks::{invalid, ConfigError};

/// Whether the libzmq this program runs on supports CURVE (`zmq_has("curve")`).
///
/// The libzmq that the `zmq` crate (0.10) builds and links by default has **no** CURVE: its
/// build script asks for libsodium and never gets it. A libzmq built with libsodium (Debian's
/// `libzmq3-dev`, for one) linked instead has it; the README's security section says how.
pub fn curve_available() -> bool {
    zmq::has("curve") == Some(true)
}

/// A CURVE key pair (Curve25519, 32-byte keys), for a broker, a worker or a client.
///
/// `Debug` shows the public key only.
#[derive(Clone, PartialEq, Eq)]
pub struct CurveKeys {
    public: [u8; 32],
    secret: [u8; 32],
}

impl CurveKeys {
    /// A key pair from its two halves, as stored by whoever made it.
    pub fn new(public: [u8; 32], secret: [u8; 32]) -> CurveKeys {
        CurveKeys { public, secret }
    }

    /// A new random key pair, made by libzmq.
    ///
    /// # Errors
    ///
    /// `zmq::Error::ENOTSUP` when libzmq has no CURVE support (see [`curve_available`]).
    pub fn generate() -> Result<CurveKeys, zmq::Error> {
        let pair = zmq::CurveKeyPair::new()?;
        Ok(CurveKeys::new(pair.public_key, pair.secret_key))
    }

    /// The public key: give it to the peers that must know this side.
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// The secret key.
    pub fn secret_key(&self) -> [u8; 32] {
        self.secret
    }
}

impl fmt::Debug for CurveKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurveKeys")
            .field("public", &Hex(&self.public))
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A key in hex, for `Debug` and logs.
pub(crate) struct Hex<'a>(pub(crate) &'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The CURVE settings of a connecting worker or client: its own keys and the broker's
/// public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CurveClient {
    pub(crate) keys: CurveKeys,
    pub(crate) server_key: [u8; 32],
}

/// Checks that CURVE, configured in `field`, can work here, and is not mixed with PLAIN.
pub(crate) fn check_curve(field: &'static str, plain_too: bool) -> Result<(), ConfigError> {
    if plain_too {
        return Err(invalid(
            field,
            "set",
            "CURVE and PLAIN cannot be combined on one socket: choose one",
        ));
    }
    if !curve_available() {
        return Err(invalid(
            field,
            "set",
            "this libzmq has no CURVE support (zmq::has(\"curve\") is false): \
             see the README's security section",
        ));
    }
    Ok(())
}

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
    fn curve_is_refused_with_plain_and_without_libzmq_support() {
        match check_curve("curve_credentials", true) {
            Err(ConfigError::InvalidValue { field, .. }) => assert_eq!(field, "curve_credentials"),
            other => panic!("expected InvalidValue, got {other:?}"),
        }
        let alone = check_curve("curve_credentials", false);
        assert_eq!(alone.is_ok(), curve_available(), "{alone:?}");
        assert_eq!(CurveKeys::generate().is_ok(), curve_available());
    }

    #[test]
    fn curve_keys_debug_shows_the_public_key_only() {
        let keys = CurveKeys::new([0xab; 32], [0xcd; 32]);
        let shown = format!("{keys:?}");
        assert!(shown.contains(&"ab".repeat(32)), "{shown}");
        assert!(!shown.contains("cdcd"), "{shown}");
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let shown = format!("{:?}", PlainCredentials::new("worker", "s3cret"));
        assert!(shown.contains("worker"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
