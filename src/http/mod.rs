//! The HTTP layer: the only code that knows HTTP, JSON and status codes.
//! Two listeners: the staff API (`/api/v1`) and the bank API (`/bank/v1`,
//! mutual TLS, XML), so that banks never reach staff routes.

mod bank;
mod casefile;
pub mod feed;
mod openapi;
mod ops;
mod problem;
mod staff;
mod ui;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::{Extensions, ServerHandle};
use actix_web::{App, HttpServer, web};
use tokio::sync::Notify;

use crate::store::Store;

pub use openapi::openapi_json;
pub use problem::ApiError;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// Wakes the delivery engine when new work is filed.
    pub wake: Arc<Notify>,
    /// The certificates this process presents, with their expiry (ms):
    /// `/readyz` fails and `/metrics` warns before they run out.
    pub certificates: Arc<std::sync::RwLock<Vec<(String, i64)>>>,
    /// The department connectors the comprehensive inquiry asks.
    pub connectors: crate::connectors::Connectors,
}

/// `/readyz` fails when a certificate expires within this many days.
pub const CERTIFICATE_WARNING_DAYS: i64 = 30;

/// The DER of the client certificate the peer presented on this connection.
#[derive(Clone)]
pub struct PeerCertificate(pub Vec<u8>);

fn capture_peer_certificate(conn: &dyn std::any::Any, ext: &mut Extensions) {
    use actix_tls::accept::rustls_0_23::TlsStream;
    if let Some(tls) = conn.downcast_ref::<TlsStream<tokio::net::TcpStream>>()
        && let Some(certs) = tls.get_ref().1.peer_certificates()
        && let Some(leaf) = certs.first()
    {
        ext.insert(PeerCertificate(leaf.as_ref().to_vec()));
    }
}

pub struct Servers {
    pub staff_addr: SocketAddr,
    /// None for an operations-only listener (a dispatcher process).
    pub bank_addr: Option<SocketAddr>,
    handles: Vec<ServerHandle>,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Servers {
    pub async fn stop(self) {
        for h in &self.handles {
            h.stop(true).await;
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

pub struct ServerConfig {
    pub staff_listen: SocketAddr,
    pub bank_listen: SocketAddr,
    /// The bank listener's TLS: server certificate and the banks' client CA.
    pub bank_tls: rustls::ServerConfig,
    pub workers: usize,
}

pub fn start(state: AppState, config: ServerConfig) -> std::io::Result<Servers> {
    let staff_listener = TcpListener::bind(config.staff_listen)?;
    let bank_listener = TcpListener::bind(config.bank_listen)?;
    let staff_addr = staff_listener.local_addr()?;
    let bank_addr = bank_listener.local_addr()?;
    let staff_state = state.clone();
    let staff = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(staff_state.clone()))
            .wrap(actix_web::middleware::from_fn(ops::measure_staff))
            .configure(ops::routes)
            .configure(openapi::routes)
            .configure(staff::routes)
            .configure(ui::routes)
    })
    .workers(config.workers)
    .disable_signals()
    .shutdown_timeout(10)
    .listen(staff_listener)?
    .run();
    let bank = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .wrap(actix_web::middleware::from_fn(ops::measure_bank))
            .configure(bank::routes)
    })
    .on_connect(capture_peer_certificate)
    .workers(config.workers)
    .disable_signals()
    .shutdown_timeout(10)
    .listen_rustls_0_23(bank_listener, config.bank_tls)?
    .run();
    let handles = vec![staff.handle(), bank.handle()];
    let tasks = vec![tokio::spawn(staff), tokio::spawn(bank)];
    Ok(Servers {
        staff_addr,
        bank_addr: Some(bank_addr),
        handles,
        tasks,
    })
}

/// Only /healthz, /readyz and /metrics: what a dispatcher-only process
/// serves, so its delivery metrics can be scraped too.
pub fn start_ops_only(state: AppState, listen: SocketAddr) -> std::io::Result<Servers> {
    let listener = TcpListener::bind(listen)?;
    let staff_addr = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .configure(ops::routes)
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    Ok(Servers {
        staff_addr,
        bank_addr: None,
        handles: vec![server.handle()],
        tasks: vec![tokio::spawn(server)],
    })
}
