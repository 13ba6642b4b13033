//! What the socket monitor tells about the connection under the worker's DEALER, and what
//! the worker does about it.

use std::time::Instant;

use tracing::{debug, warn};

use super::Worker;
use crate::action::WorkerAction;
use crate::error::Error;
use crate::security::Hex;
use crate::session::DisconnectReason;
use crate::transport::{self, Connection, LinkEvent, ZmqOperation};

impl<A: WorkerAction> Worker<A> {
    /// Acts on what the socket monitor saw: a connection refused in the handshake or dropped
    /// under the socket is left at once (a new socket after the reconnect delay), instead of
    /// leaving libzmq to retry it behind the session's back or waiting out broker liveness.
    pub(super) fn read_link_events(&mut self) -> Result<(), Error> {
        while let Some(connection) = &mut self.connection {
            let Some(event) = transport::try_recv_event(&connection.monitor)
                .map_err(Error::zmq(ZmqOperation::RecvMonitorEvent))?
            else {
                return Ok(());
            };
            let reason = match event {
                LinkEvent::HandshakeSucceeded => {
                    debug!("connection up, handshake passed");
                    connection.up = true;
                    continue;
                }
                LinkEvent::AuthFailed { status } => self.auth_failed(status),
                LinkEvent::HandshakeFailed { event, value } => {
                    let cause = transport::handshake_failure_cause(event, value);
                    warn!(
                        cause,
                        event, value, "security handshake failed, reconnecting"
                    );
                    DisconnectReason::ConnectionLost
                }
                LinkEvent::Disconnected => {
                    warn!("connection to the broker dropped, reconnecting");
                    DisconnectReason::ConnectionLost
                }
            };
            self.session.handle_connection_lost(Instant::now(), reason);
            return Ok(());
        }
        Ok(())
    }

    /// Logs credentials the broker refused; the session counts it, backs off and retries.
    fn auth_failed(&self, status: u32) -> DisconnectReason {
        match (&self.options.plain, &self.options.curve) {
            (Some(plain), _) => warn!(
                user = %plain.username,
                status,
                "authentication failed: broker rejected the PLAIN credentials, not registered"
            ),
            (None, Some(curve)) => warn!(
                public_key = %Hex(&curve.keys.public_key()),
                status,
                "authentication failed: broker rejected the CURVE key, not registered"
            ),
            (None, None) => warn!(
                status,
                "authentication failed: broker refused the connection"
            ),
        }
        DisconnectReason::AuthenticationFailed
    }
}

/// Reads the monitor events waiting and marks the connection up if its handshake passed.
pub(super) fn mark_up(connection: &mut Connection) {
    while let Ok(Some(event)) = transport::try_recv_event(&connection.monitor) {
        if event == LinkEvent::HandshakeSucceeded {
            connection.up = true;
        }
    }
}
