//! The broker's ZAP handler (ZeroMQ Authentication Protocol, RFC 27): libzmq asks it, over
//! a REP socket bound on `inproc://zeromq.zap.01` in the broker's context, whether each
//! PLAIN or CURVE client or worker may connect.
//!
//! [`ZapHandler`] is the pure part, one request in, one reply out; the broker's loop owns
//! the socket. Only one ZAP handler can bind that endpoint per context: a broker with PLAIN
//! users must not share its context with another ZAP handler (its bind then fails).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::io::security::{Hex, PlainCredentials};

/// Where libzmq sends ZAP requests, in the context of the socket being authenticated.
pub(crate) const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";

const VERSION: &[u8] = b"1.0";

/// What the handler decided about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Known user with the right password, or a listed CURVE key (shown in hex).
    Accepted { user: String },
    /// Unknown user, wrong password, unlisted key, or another mechanism.
    Denied { user: String, mechanism: String },
    /// Not a ZAP/1.0 request at all (libzmq never sends one).
    Malformed,
}

/// Checks PLAIN credentials against the broker's users, CURVE keys against its list.
pub(crate) struct ZapHandler {
    users: HashMap<String, String>,
    curve_keys: HashSet<[u8; 32]>,
}

impl ZapHandler {
    pub(crate) fn new(users: &[PlainCredentials], curve_keys: &[[u8; 32]]) -> ZapHandler {
        ZapHandler {
            users: users
                .iter()
                .map(|c| (c.username.clone(), c.password.clone()))
                .collect(),
            curve_keys: curve_keys.iter().copied().collect(),
        }
    }

    /// Answers one request: `version, request id, domain, address, identity, mechanism,
    /// credentials…` in, `version, request id, status code, status text, user id, metadata`
    /// out (RFC 27).
    pub(crate) fn handle_request(&self, request: &[Vec<u8>]) -> (Vec<Vec<u8>>, Verdict) {
        let request_id = request.get(1).cloned().unwrap_or_default();
        if request.len() < 6 || request[0] != VERSION {
            return (
                reply(request_id, b"500", b"malformed ZAP request", b""),
                Verdict::Malformed,
            );
        }
        let mechanism = &request[5];
        let credentials = &request[6..];
        match (mechanism.as_slice(), credentials) {
            (b"PLAIN", [user, password]) if self.check_plain(user, password) => {
                let verdict = Verdict::Accepted {
                    user: text(user).into_owned(),
                };
                (reply(request_id, b"200", b"OK", user), verdict)
            }
            (b"CURVE", [key]) if self.check_curve(key) => {
                let user = Hex(key).to_string();
                let reply = reply(request_id, b"200", b"OK", user.as_bytes());
                (reply, Verdict::Accepted { user })
            }
            _ => {
                let verdict = Verdict::Denied {
                    user: credentials
                        .first()
                        .map_or(Cow::Borrowed(""), |u| text(u))
                        .into_owned(),
                    mechanism: text(mechanism).into_owned(),
                };
                let status = b"credentials refused";
                (reply(request_id, b"400", status, b""), verdict)
            }
        }
    }

    fn check_curve(&self, key: &[u8]) -> bool {
        <[u8; 32]>::try_from(key).is_ok_and(|key| self.curve_keys.contains(&key))
    }

    fn check_plain(&self, user: &[u8], password: &[u8]) -> bool {
        let Ok(user) = std::str::from_utf8(user) else {
            return false;
        };
        self.users
            .get(user)
            .is_some_and(|expected| constant_time_eq(expected.as_bytes(), password))
    }
}

impl fmt::Debug for ZapHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut users: Vec<&String> = self.users.keys().collect();
        users.sort();
        f.debug_struct("ZapHandler")
            .field("users", &users)
            .field("curve_keys", &self.curve_keys.len())
            .finish()
    }
}

fn reply(request_id: Vec<u8>, code: &[u8], text: &[u8], user: &[u8]) -> Vec<Vec<u8>> {
    vec![
        VERSION.to_vec(),
        request_id,
        code.to_vec(),
        text.to_vec(),
        user.to_vec(),
        Vec::new(),
    ]
}

/// Compares without stopping at the first difference, so the time taken does not tell an
/// attacker how much of a guessed password was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler() -> ZapHandler {
        ZapHandler::new(
            &[
                PlainCredentials::new("worker", "s3cret"),
                PlainCredentials::new("client", ""),
            ],
            &[[0xab; 32]],
        )
    }

    fn request(mechanism: &[u8], credentials: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut frames: Vec<Vec<u8>> = [&b"1.0"[..], b"7", b"", b"127.0.0.1", b"", mechanism]
            .iter()
            .map(|f| f.to_vec())
            .collect();
        frames.extend(credentials.iter().map(|c| c.to_vec()));
        frames
    }

    fn status(reply: &[Vec<u8>]) -> (&[u8], &[u8], &[u8]) {
        assert_eq!(reply.len(), 6, "{reply:?}");
        assert_eq!(reply[0], b"1.0");
        (&reply[1], &reply[2], &reply[4])
    }

    #[test]
    fn right_credentials_are_accepted_with_the_user_as_user_id() {
        let h = handler();
        let (reply, verdict) = h.handle_request(&request(b"PLAIN", &[b"worker", b"s3cret"]));
        assert_eq!(status(&reply), (&b"7"[..], &b"200"[..], &b"worker"[..]));
        assert_eq!(
            verdict,
            Verdict::Accepted {
                user: "worker".into()
            }
        );
        let (reply, _) = h.handle_request(&request(b"PLAIN", &[b"client", b""]));
        assert_eq!(status(&reply).1, b"200");
        let (reply, verdict) = h.handle_request(&request(b"CURVE", &[&[0xab; 32]]));
        assert_eq!(status(&reply).1, b"200");
        assert_eq!(
            verdict,
            Verdict::Accepted {
                user: "ab".repeat(32)
            }
        );
    }

    #[test]
    fn wrong_credentials_and_other_mechanisms_are_denied() {
        let h = handler();
        let cases: [(&[u8], &[&[u8]]); 8] = [
            (b"CURVE", &[&[0xac; 32]]),
            (b"CURVE", &[&[0xab; 31]]),
            (b"PLAIN", &[b"worker", b"wrong"]),
            (b"PLAIN", &[b"worker", b"s3cre"]),
            (b"PLAIN", &[b"worker", b"s3cret!"]),
            (b"PLAIN", &[b"nobody", b"s3cret"]),
            (b"PLAIN", &[b"worker"]),
            (b"NULL", &[]),
        ];
        for (mechanism, credentials) in cases {
            let (reply, verdict) = h.handle_request(&request(mechanism, credentials));
            assert_eq!(
                status(&reply),
                (&b"7"[..], &b"400"[..], &b""[..]),
                "{credentials:?}"
            );
            assert!(matches!(verdict, Verdict::Denied { .. }), "{verdict:?}");
        }
    }

    #[test]
    fn malformed_requests_get_a_500_reply_never_a_panic() {
        let h = handler();
        for frames in [
            vec![],
            vec![b"1.0".to_vec()],
            request(b"PLAIN", &[])[..5].to_vec(),
        ] {
            let (reply, verdict) = h.handle_request(&frames);
            assert_eq!(reply[2], b"500");
            assert_eq!(verdict, Verdict::Malformed);
        }
        let mut wrong_version = request(b"PLAIN", &[b"worker", b"s3cret"]);
        wrong_version[0] = b"2.0".to_vec();
        assert_eq!(h.handle_request(&wrong_version).1, Verdict::Malformed);
    }

    #[test]
    fn debug_output_lists_users_but_no_password() {
        let shown = format!("{:?}", handler());
        assert_eq!(
            shown,
            r#"ZapHandler { users: ["client", "worker"], curve_keys: 1 }"#
        );
    }
}
