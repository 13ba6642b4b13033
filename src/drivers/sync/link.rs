//! The socket monitor under the worker's DEALER: what it tells goes to the session through
//! the drivers' shared step ([`step::handle_link_event`]).

use std::time::Instant;

use super::Worker;
use crate::action::WorkerAction;
use crate::drivers::step;
use crate::error::Error;
use crate::io::transport::{self, Connection};

impl<A: WorkerAction> Worker<A> {
    /// Reads what the socket monitor saw, until the connection is up, or lost (one loss is
    /// enough: the session closes the socket).
    pub(super) fn read_link_events(&mut self) -> Result<(), Error> {
        while let Some(connection) = &mut self.connection {
            let Some(event) = transport::try_recv_event(&connection.monitor)? else {
                return Ok(());
            };
            let now = Instant::now();
            if !step::handle_link_event(&mut self.session, now, event, &self.options) {
                return Ok(());
            }
            connection.up = true;
        }
        Ok(())
    }
}

/// Reads the monitor events waiting and marks the connection up if its handshake passed.
pub(super) fn mark_up(connection: &mut Connection) {
    connection.up |= step::read_up_events(&connection.monitor);
}
