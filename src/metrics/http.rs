//! `GET /metrics` and `GET /healthz` on a small HTTP server of its own thread.

use std::io;
use std::thread::{self, JoinHandle};

use tiny_http::{Header, Response, Server};

use super::Metrics;

/// OpenMetrics text, as Prometheus asks for it.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics endpoint; stops (and frees its port) when dropped.
#[must_use = "dropping the MetricsServer stops it at once: keep it for as long as it should serve"]
pub struct MetricsServer {
    server: std::sync::Arc<Server>,
    thread: Option<JoinHandle<()>>,
    addr: String,
}

impl MetricsServer {
    pub(super) fn start(metrics: Metrics, addr: &str) -> io::Result<MetricsServer> {
        let server = Server::http(addr).map_err(io::Error::other)?;
        let server = std::sync::Arc::new(server);
        let bound = server
            .server_addr()
            .to_ip()
            .map_or_else(|| addr.to_string(), |a| a.to_string());
        let serving = std::sync::Arc::clone(&server);
        let thread = thread::Builder::new()
            .name("mdp-metrics".into())
            .spawn(move || serve(&serving, &metrics))?;
        Ok(MetricsServer {
            server,
            thread: Some(thread),
            addr: bound,
        })
    }

    /// The address it listens on (a port of 0 resolved).
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(server: &Server, metrics: &Metrics) {
    loop {
        // `unblock()` (on drop) wakes `recv`, not `recv_timeout`: it must be this one.
        let Ok(request) = server.recv() else {
            return;
        };
        let response = match (request.method().as_str(), request.url()) {
            ("GET", "/metrics") => text(200, metrics.encode(), OPENMETRICS),
            ("GET", "/healthz") => match metrics.not_ready_reason() {
                None => text(200, "ready\n".into(), "text/plain"),
                Some(reason) => text(503, format!("{reason}\n"), "text/plain"),
            },
            _ => text(
                404,
                "not found: try /metrics or /healthz\n".into(),
                "text/plain",
            ),
        };
        let _ = request.respond(response);
    }
}

fn text(status: u16, body: String, content_type: &str) -> Response<io::Cursor<Vec<u8>>> {
    let response = Response::from_data(body.into_bytes()).with_status_code(status);
    match Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes()) {
        Ok(header) => response.with_header(header),
        Err(()) => response,
    }
}
