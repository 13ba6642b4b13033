//! Which ZeroMQ call failed: one name per call the crate makes, shown in the words of the
//! call itself (`connect`, `setsockopt(ZMQ_LINGER)`), so logs and messages read as before.

use std::fmt;

/// A ZeroMQ call the crate makes, as named in its errors
/// ([`Error::Zmq`](crate::Error::Zmq), [`ClientError::Zmq`](crate::client::ClientError::Zmq),
/// [`BrokerError::Zmq`](crate::broker::BrokerError::Zmq)).
///
/// `Display` gives the call as ZeroMQ names it: `connect`, `setsockopt(ZMQ_LINGER)`, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ZmqOperation {
    /// Creating a socket (`zmq_socket`).
    Socket,
    /// Connecting a socket to an endpoint (`zmq_connect`): a broker address that does not
    /// resolve, or a transport this libzmq lacks.
    Connect,
    /// Starting a socket's monitor (`zmq_socket_monitor`).
    Monitor,
    /// Connecting the PAIR socket that reads a monitor.
    ConnectMonitor,
    /// Sending a message.
    Send,
    /// Receiving a message.
    Recv,
    /// Receiving a socket monitor event.
    RecvMonitorEvent,
    /// Waiting for sockets to become readable (`zmq_poll`).
    Poll,
    /// Receiving a ZAP request (the broker's authentication handler).
    RecvZapRequest,
    /// Sending a ZAP reply (the broker's authentication handler).
    SendZapReply,
    /// Setting `ZMQ_LINGER`.
    SetLinger,
    /// Setting `ZMQ_SNDTIMEO`.
    SetSendTimeout,
    /// Setting `ZMQ_MAXMSGSIZE`.
    SetMaxMessageSize,
    /// Setting `ZMQ_RECONNECT_IVL`.
    SetReconnectInterval,
    /// Setting `ZMQ_IMMEDIATE`.
    SetImmediate,
    /// Setting `ZMQ_BACKLOG`.
    SetBacklog,
    /// Setting `ZMQ_ROUTER_MANDATORY`.
    SetRouterMandatory,
    /// Setting `ZMQ_PLAIN_USERNAME`.
    SetPlainUsername,
    /// Setting `ZMQ_PLAIN_PASSWORD`.
    SetPlainPassword,
    /// Setting `ZMQ_PLAIN_SERVER`.
    SetPlainServer,
    /// Setting `ZMQ_CURVE_SERVER`.
    SetCurveServer,
    /// Setting `ZMQ_CURVE_SERVERKEY`.
    SetCurveServerKey,
    /// Setting `ZMQ_CURVE_PUBLICKEY`.
    SetCurvePublicKey,
    /// Setting `ZMQ_CURVE_SECRETKEY`.
    SetCurveSecretKey,
}

impl ZmqOperation {
    /// The call in ZeroMQ's words, as `Display` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            ZmqOperation::Socket => "socket",
            ZmqOperation::Connect => "connect",
            ZmqOperation::Monitor => "zmq_socket_monitor",
            ZmqOperation::ConnectMonitor => "connect monitor",
            ZmqOperation::Send => "send",
            ZmqOperation::Recv => "recv",
            ZmqOperation::RecvMonitorEvent => "recv monitor event",
            ZmqOperation::Poll => "poll",
            ZmqOperation::RecvZapRequest => "recv ZAP request",
            ZmqOperation::SendZapReply => "send ZAP reply",
            ZmqOperation::SetLinger => "setsockopt(ZMQ_LINGER)",
            ZmqOperation::SetSendTimeout => "setsockopt(ZMQ_SNDTIMEO)",
            ZmqOperation::SetMaxMessageSize => "setsockopt(ZMQ_MAXMSGSIZE)",
            ZmqOperation::SetReconnectInterval => "setsockopt(ZMQ_RECONNECT_IVL)",
            ZmqOperation::SetImmediate => "setsockopt(ZMQ_IMMEDIATE)",
            ZmqOperation::SetBacklog => "setsockopt(ZMQ_BACKLOG)",
            ZmqOperation::SetRouterMandatory => "setsockopt(ZMQ_ROUTER_MANDATORY)",
            ZmqOperation::SetPlainUsername => "setsockopt(ZMQ_PLAIN_USERNAME)",
            ZmqOperation::SetPlainPassword => "setsockopt(ZMQ_PLAIN_PASSWORD)",
            ZmqOperation::SetPlainServer => "setsockopt(ZMQ_PLAIN_SERVER)",
            ZmqOperation::SetCurveServer => "setsockopt(ZMQ_CURVE_SERVER)",
            ZmqOperation::SetCurveServerKey => "setsockopt(ZMQ_CURVE_SERVERKEY)",
            ZmqOperation::SetCurvePublicKey => "setsockopt(ZMQ_CURVE_PUBLICKEY)",
            ZmqOperation::SetCurveSecretKey => "setsockopt(ZMQ_CURVE_SECRETKEY)",
        }
    }
}

impl fmt::Display for ZmqOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_show_in_zmq_words() {
        let cases = [
            (ZmqOperation::Connect, "connect"),
            (ZmqOperation::SetLinger, "setsockopt(ZMQ_LINGER)"),
            (ZmqOperation::RecvMonitorEvent, "recv monitor event"),
            (
                ZmqOperation::SetCurveSecretKey,
                "setsockopt(ZMQ_CURVE_SECRETKEY)",
            ),
            (ZmqOperation::SendZapReply, "send ZAP reply"),
        ];
        for (operation, shown) in cases {
            assert_eq!(operation.to_string(), shown);
        }
    }
}
