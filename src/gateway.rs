//! Assembles a running gateway: store, delivery engine and both listeners.
//! `shokai serve`, `shokai demo` and the tests all start it this way.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::connectors::{Connectors, ConnectorsConfig};
use crate::delivery::{Engine, EngineConfig, EngineTuning};
use crate::http::feed::{FeedConfig, FeedSender};
use crate::http::{self, AppState, Servers};
use crate::store::{ChainWait, Dialect, Store, StoreConfig};
use crate::tls::{
    ClientVerifier, Identity, ServerCert, load_certs, load_crls, reloadable_server_config,
};

#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The bank listener's server certificate and key.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// The certificate and key presented to banks.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// CA(s) that issue the banks' client certificates.
    pub bank_client_ca: PathBuf,
    pub crl: Option<PathBuf>,
}

impl TlsFiles {
    /// The layout `shokai certs init` writes.
    pub fn from_pki_dir(dir: &std::path::Path) -> Self {
        let pki = crate::pki::PkiLayout::new(dir);
        let (server_cert, server_key) = pki.gateway_server();
        let (client_cert, client_key) = pki.gateway_client();
        Self {
            server_cert,
            server_key,
            client_cert,
            client_key,
            bank_client_ca: pki.ca_cert(),
            crl: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub database: StoreConfig,
    pub staff_listen: SocketAddr,
    pub bank_listen: SocketAddr,
    pub tls: TlsFiles,
    pub workers: usize,
    /// Run the batcher and dispatcher in this process.
    pub run_engine: bool,
    /// Serve the staff and bank APIs from this process. Several processes
    /// can split the roles over one PostgreSQL database.
    pub serve_api: bool,
    pub engine: EngineTuning,
    /// The department connectors and the re-query schedule.
    pub connectors: ConnectorsConfig,
    /// The case-file feed (signed webhooks); off when None.
    pub feed: Option<FeedSettings>,
}

/// Where the case-file feed goes; its retry schedule is the engine's.
#[derive(Debug, Clone)]
pub struct FeedSettings {
    pub url: String,
    pub secret: Vec<u8>,
    pub ca: Option<PathBuf>,
}

/// The task lease under which one engine process re-queries departments.
const REQUERY_TASK: &str = "department-requery";

/// How often a gateway links the audit entries that PostgreSQL
/// transactions left pending: the trail's lag behind the actions, at most.
const AUDIT_CHAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

pub struct Gateway {
    pub store: Store,
    /// None when this process does not serve the APIs.
    pub staff_addr: Option<SocketAddr>,
    pub bank_addr: Option<SocketAddr>,
    engine: Option<Engine>,
    servers: Option<Servers>,
    retention: Option<tokio::task::JoinHandle<()>>,
    audit_chainer: Option<tokio::task::JoinHandle<()>>,
    requery: Option<tokio::task::JoinHandle<()>>,
    feed: Option<FeedSender>,
    pub connectors: Connectors,
    tls_files: TlsFiles,
    server_cert: Arc<ServerCert>,
    verifier: Arc<ClientVerifier>,
    certificates: Arc<std::sync::RwLock<Vec<(String, i64)>>>,
}

/// Everything read from the certificate files, read together so that a
/// reload either takes all of it or none.
struct TlsMaterial {
    server: Identity,
    client: Identity,
    bank_cas: Vec<rustls::pki_types::CertificateDer<'static>>,
    crls: Vec<rustls::pki_types::CertificateRevocationListDer<'static>>,
}

impl TlsMaterial {
    fn load(t: &TlsFiles) -> anyhow::Result<TlsMaterial> {
        Ok(TlsMaterial {
            server: Identity::load(&t.server_cert, &t.server_key)?,
            client: Identity::load(&t.client_cert, &t.client_key)?,
            bank_cas: load_certs(&t.bank_client_ca)?,
            crls: t
                .crl
                .as_deref()
                .map(load_crls)
                .transpose()?
                .unwrap_or_default(),
        })
    }
}

/// The expiry of the certificates this process presents; warns in the log
/// when one runs out within the warning period.
fn certificate_expiries(server: &Identity, client: &Identity) -> Vec<(String, i64)> {
    let soon = crate::domain::time::now_millis() + http::CERTIFICATE_WARNING_DAYS * 86_400_000;
    [("bank-api-server", server), ("bank-client", client)]
        .into_iter()
        .filter_map(|(name, id)| {
            let expires = crate::tls::not_after(id.chain.first()?.as_ref())?;
            if expires < soon {
                tracing::warn!(certificate = name, expires = %crate::domain::time::rfc3339(expires), "certificate expires soon");
            }
            Some((name.to_owned(), expires))
        })
        .collect()
}

impl Gateway {
    pub async fn start(config: GatewayConfig) -> anyhow::Result<Gateway> {
        crate::tls::install_crypto_provider();
        let mut database = config.database.clone();
        database.feed_events = config.feed.is_some();
        let store = Store::open(&database).await?;
        let connectors = Connectors::build(&config.connectors, &store)?;
        let t = &config.tls;
        let material = TlsMaterial::load(t)?;
        let server_cert = ServerCert::new(&material.server)?;
        let verifier = ClientVerifier::new(&material.bank_cas, material.crls.clone())?;
        let bank_tls = reloadable_server_config(server_cert.clone(), verifier.clone());
        let client = material.client.clone();
        let server = material.server.clone();
        let certificates = Arc::new(std::sync::RwLock::new(certificate_expiries(
            &server, &client,
        )));
        let wake = Arc::new(Notify::new());
        let engine = config.run_engine.then(|| {
            Engine::start(
                store.clone(),
                EngineConfig::new(client, config.engine.clone()),
                wake.clone(),
            )
        });
        let certificates_handle = certificates.clone();
        let state = AppState {
            store: store.clone(),
            wake,
            certificates,
            connectors: connectors.clone(),
        };
        let servers = if config.serve_api {
            Some(http::start(
                state,
                http::ServerConfig {
                    staff_listen: config.staff_listen,
                    bank_listen: config.bank_listen,
                    bank_tls,
                    workers: config.workers,
                },
            )?)
        } else {
            Some(http::start_ops_only(state, config.staff_listen)?)
        };
        let retention = match (config.run_engine, config.engine.retention_days) {
            (true, Some(days)) => {
                let store = store.clone();
                Some(tokio::spawn(async move {
                    let mut hourly = tokio::time::interval(std::time::Duration::from_secs(3600));
                    loop {
                        hourly.tick().await;
                        if let Err(e) = crate::admin::purge_expired(&store, days).await {
                            tracing::error!(error = %e, "retention purge failed");
                        }
                    }
                }))
            }
            _ => None,
        };
        let audit_chainer = (store.dialect() == Dialect::Postgres).then(|| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(AUDIT_CHAIN_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if let Err(e) = store.chain_pending_audit(ChainWait::Skip).await {
                        tracing::error!(error = %e, "linking the audit trail failed");
                    }
                }
            })
        });
        let requery = match (config.run_engine, config.connectors.requery_every) {
            (true, Some(every)) if !connectors.is_empty() => {
                let (store, connectors) = (store.clone(), connectors.clone());
                // Several engine processes may run; one of them holds the
                // lease and re-queries, the others stand by.
                let holder = crate::domain::ids::ClaimToken::generate().to_string();
                let lease_ms = every.as_millis() as i64 + 60_000;
                Some(tokio::spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    tick.tick().await;
                    loop {
                        tick.tick().await;
                        let now = crate::domain::time::now_millis();
                        match store
                            .take_task_lease(REQUERY_TASK, &holder, lease_ms, now)
                            .await
                        {
                            Ok(true) => {}
                            Ok(false) => continue,
                            Err(e) => {
                                tracing::error!(error = %e, "re-query lease unavailable");
                                continue;
                            }
                        }
                        match crate::casework::requery_open_cases(&store, &connectors).await {
                            Ok(s) => tracing::info!(
                                cases = s.cases,
                                alerts = s.alerts,
                                incomplete = s.incomplete,
                                errors = s.errors,
                                "department re-query done"
                            ),
                            Err(e) => tracing::error!(error = %e, "department re-query failed"),
                        }
                    }
                }))
            }
            _ => None,
        };
        let feed = match (&config.feed, config.run_engine) {
            (Some(f), true) => Some(FeedSender::start(
                store.clone(),
                FeedConfig {
                    url: f.url.clone(),
                    secret: f.secret.clone(),
                    ca: f.ca.clone(),
                    retry: config.engine.retry.clone(),
                    lease: config.engine.lease,
                    request_timeout: config.engine.request_timeout,
                    poll_interval: config.engine.poll_interval,
                },
            )?),
            _ => None,
        };
        Ok(Gateway {
            requery,
            feed,
            connectors,
            tls_files: config.tls.clone(),
            server_cert,
            verifier,
            certificates: certificates_handle,
            retention,
            audit_chainer,
            store,
            staff_addr: servers.as_ref().map(|s| s.staff_addr),
            bank_addr: servers.as_ref().and_then(|s| s.bank_addr),
            engine,
            servers,
        })
    }

    /// Rereads the certificate, key, CA and CRL files and uses them for
    /// every new connection (SIGHUP). A file that does not load leaves
    /// everything as it was.
    pub async fn reload_certificates(&self) -> anyhow::Result<()> {
        let m = TlsMaterial::load(&self.tls_files)?;
        // Check the key is usable before anything is swapped.
        ServerCert::new(&m.server)?;
        self.verifier.replace(&m.bank_cas, m.crls)?;
        self.server_cert.replace(&m.server)?;
        if let Some(engine) = &self.engine {
            engine.set_client_identity(m.client.clone()).await;
        }
        *self.certificates.write().expect("certificates lock") =
            certificate_expiries(&m.server, &m.client);
        tracing::info!("certificates and CRLs reloaded");
        Ok(())
    }

    pub fn answers_url(&self) -> String {
        format!(
            "https://{}/bank/v1/answers",
            self.bank_addr.expect("this process serves the bank API")
        )
    }

    pub fn api_url(&self) -> String {
        format!(
            "http://{}/api/v1",
            self.staff_addr.expect("this process serves the staff API")
        )
    }

    /// Stops taking requests, lets deliveries under way finish, closes the store.
    pub async fn stop(self) {
        for task in [&self.retention, &self.requery, &self.audit_chainer]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
        if let Some(feed) = self.feed {
            feed.stop();
        }
        if let Some(servers) = self.servers {
            servers.stop().await;
        }
        if let Some(engine) = self.engine {
            engine.stop().await;
        }
        // What the last transactions left unlinked; another gateway or the
        // next read links it otherwise.
        if let Err(e) = self.store.chain_pending_audit(ChainWait::Wait).await {
            tracing::warn!(error = %e, "linking the audit trail at shutdown failed");
        }
        self.store.close().await;
    }
}
