//! How the tools reach a broker as its clients: where the broker is unless told otherwise,
//! and a client for asking the broker about itself (`mmi.services`, `mmi.stats`), shared by
//! `mdp services` and `mdp top`.

use std::time::Duration;

use majordomo_worker::client::{Client, ClientConfig, ClientError};
use majordomo_worker::mmi::ServiceStats;

use crate::error::{client_error, CliError};

/// The broker `mdp` talks to unless told otherwise.
pub const DEFAULT_BROKER: &str = "tcp://127.0.0.1:5555";

/// A client that waits `timeout` for each answer and does not retry (a lookup is cheap to
/// ask again, and a refresh loop asks again anyway).
pub fn lookups(broker: &str, timeout: Duration) -> Result<Client, CliError> {
    let config = ClientConfig::new(broker).timeout(timeout).retries(0);
    Client::connect(config).map_err(client_error)
}

/// Every service the broker knows, with its load, in the broker's (bytewise) name order.
///
/// `mmi.services` first: it is the listing, and a 501 to it is the clear "not supported"
/// answer. Then `mmi.stats` with no name, which reports every known service in one
/// snapshot, with the raw names (asking by the listed names would send their lossy text).
///
/// # Errors
///
/// [`ClientError::Unsupported`] from a broker without these extensions, and whatever
/// [`Client::request`] returns.
pub fn service_load(client: &mut Client) -> Result<Vec<ServiceStats>, ClientError> {
    client.services()?;
    client.service_stats(&[])
}
