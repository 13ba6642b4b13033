//! Broker introspection over 8/MMI: the standard `mmi.service`, and our broker's
//! `mmi.services` (the service names) and `mmi.stats` (per-service load). Other brokers
//! answer `501` to the extensions, which the parsers report as [`MmiError::Unsupported`]
//! (and the clients as [`ClientError::Unsupported`](crate::client::ClientError::Unsupported)).
//!
//! Frame layouts (reply bodies, each number decimal ASCII):
//!
//! | request | reply body |
//! |---|---|
//! | `mmi.service`, body: a service name | `200` (has workers) or `404` |
//! | `mmi.services`, no body | `200`, then one frame per known service name, sorted bytewise |
//! | `mmi.stats`, body: service names (none: all) | `200`, then per service: name, workers, waiting, queued, served, oldest queued age in ms |

use std::time::Duration;

/// Why an MMI reply could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MmiError {
    /// The broker answered `501`: it does not support this `mmi.` extension.
    #[error("{service} is not supported by this broker (501)")]
    Unsupported {
        /// The `mmi.` service asked.
        service: String,
    },
    /// A reply code other than `200` and `501`.
    #[error("unexpected mmi reply code {code}")]
    UnexpectedCode {
        /// The code received (lossy UTF-8).
        code: String,
    },
    /// A `200` reply whose frames do not have the documented layout.
    #[error("malformed mmi reply: {what}")]
    Malformed {
        /// What is wrong: `empty reply`, `7 frames after 200`, `not a number: "x"`.
        what: String,
    },
}

/// One service as `mmi.stats` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStats {
    /// The service name (lossy UTF-8).
    pub name: String,
    /// Workers registered, busy or idle.
    pub workers: u64,
    /// Idle workers.
    pub waiting: u64,
    /// Requests queued for a worker.
    pub queued: u64,
    /// Replies routed since the broker (last) created the service.
    pub served: u64,
    /// How long the oldest queued request has waited (zero when none is queued).
    pub oldest_queued: Duration,
}

/// The names in an `mmi.services` reply.
///
/// # Errors
///
/// [`MmiError::Unsupported`] for `501`, [`MmiError::UnexpectedCode`] for any other code but
/// `200`, [`MmiError::Malformed`] for an empty reply.
pub fn parse_services(reply: Vec<Vec<u8>>) -> Result<Vec<String>, MmiError> {
    let names = expect_ok("mmi.services", reply)?;
    Ok(names.iter().map(|n| text(n)).collect())
}

/// The services in an `mmi.stats` reply.
///
/// # Errors
///
/// As [`parse_services`], and [`MmiError::Malformed`] when the frames after `200` do not come
/// in groups of six with numbers where numbers belong.
pub fn parse_stats(reply: Vec<Vec<u8>>) -> Result<Vec<ServiceStats>, MmiError> {
    let frames = expect_ok("mmi.stats", reply)?;
    if frames.len() % 6 != 0 {
        return Err(malformed(format!("{} frames after 200", frames.len())));
    }
    frames.chunks(6).map(parse_one).collect()
}

fn parse_one(group: &[Vec<u8>]) -> Result<ServiceStats, MmiError> {
    let number = |i: usize| -> Result<u64, MmiError> {
        std::str::from_utf8(&group[i])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| malformed(format!("not a number: {:?}", text(&group[i]))))
    };
    Ok(ServiceStats {
        name: text(&group[0]),
        workers: number(1)?,
        waiting: number(2)?,
        queued: number(3)?,
        served: number(4)?,
        oldest_queued: Duration::from_millis(number(5)?),
    })
}

/// The frames after a `200`.
fn expect_ok(service: &str, mut reply: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>, MmiError> {
    if reply.is_empty() {
        return Err(malformed("empty reply".into()));
    }
    let code = reply.remove(0);
    match code.as_slice() {
        b"200" => Ok(reply),
        b"501" => Err(MmiError::Unsupported {
            service: service.to_string(),
        }),
        other => Err(MmiError::UnexpectedCode { code: text(other) }),
    }
}

fn malformed(what: String) -> MmiError {
    MmiError::Malformed { what }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(parts: &[&str]) -> Vec<Vec<u8>> {
        parts.iter().map(|p| p.as_bytes().to_vec()).collect()
    }

    #[test]
    fn services_and_stats_replies_are_parsed() {
        assert_eq!(
            parse_services(frames(&["200", "a", "b"])).unwrap(),
            vec!["a".to_string(), "b".to_string()]
        );
        let stats = parse_stats(frames(&["200", "echo", "2", "1", "0", "7", "1500"])).unwrap();
        assert_eq!(
            stats,
            vec![ServiceStats {
                name: "echo".into(),
                workers: 2,
                waiting: 1,
                queued: 0,
                served: 7,
                oldest_queued: Duration::from_millis(1500),
            }]
        );
    }

    #[test]
    fn a_501_is_unsupported_and_bad_layouts_are_errors_not_panics() {
        assert!(matches!(
            parse_stats(frames(&["501"])),
            Err(MmiError::Unsupported { .. })
        ));
        assert!(matches!(
            parse_services(frames(&["501"])),
            Err(MmiError::Unsupported { .. })
        ));
        let malformed = |what: &str| MmiError::Malformed { what: what.into() };
        let cases = [
            (frames(&[]), malformed("empty reply")),
            (
                frames(&["404"]),
                MmiError::UnexpectedCode { code: "404".into() },
            ),
            (
                frames(&["200", "echo", "2"]),
                malformed("2 frames after 200"),
            ),
            (
                frames(&["200", "echo", "x", "1", "0", "7", "0"]),
                malformed("not a number: \"x\""),
            ),
        ];
        for (bad, expected) in cases {
            assert_eq!(parse_stats(bad.clone()), Err(expected), "{bad:?}");
        }
    }
}
