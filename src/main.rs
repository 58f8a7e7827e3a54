//! The `shokai` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// mimalloc: see Cargo.toml for why. Only the binaries choose it; the
/// library leaves the allocator to whoever links it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use shokai::casework::Role;
use shokai::domain::state::Channel;
use shokai::domain::zengin::InstitutionCode;
use shokai::gateway::{Gateway, GatewayConfig, TlsFiles};
use shokai::store::{DEFAULT_DATABASE_URL, Store, StoreConfig, WriterScheduling};
use shokai::{admin, demo, mockbank, pki};

/// SQLite's C code still allocates with glibc's malloc, which gives each
/// thread that allocates an arena of its own (up to eight per core) and
/// keeps what is freed there. With one worker thread per SQLite connection
/// the gateway's peak at the end of a 1M backlog run was 447 MB; with one
/// arena it was 243–256 MB (BENCHMARKS.md, tenth session).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter, and it runs before
    // any SQLite connection exists; glibc documents M_ARENA_MAX as settable
    // at any time.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[derive(Parser)]
#[command(
    name = "shokai",
    version,
    about = "Deposit-inquiry gateway for welfare offices"
)]
struct Cli {
    /// sqlite://FILE (the default, embedded) or postgres://USER@HOST/DB
    #[arg(long, global = true, env = "SHOKAI_DATABASE_URL")]
    database_url: Option<String>,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "SHOKAI_JSON_LOGS")]
    json_logs: bool,
    /// How the SQLite writer's threads are scheduled: real-time keeps the
    /// write lock short on a busy machine (Linux, with CAP_SYS_NICE or an
    /// RLIMIT_RTPRIO of 1 or more; refused, the gateway warns and runs
    /// shared).
    #[arg(
        long,
        global = true,
        env = "SHOKAI_WRITER_SCHEDULING",
        value_enum,
        default_value = "shared"
    )]
    writer_scheduling: WriterScheduling,
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up: the size of `Serve` costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the gateway: staff API, bank API and delivery engine.
    Serve {
        #[arg(long, env = "SHOKAI_STAFF_LISTEN", default_value = "127.0.0.1:8080")]
        staff_listen: SocketAddr,
        #[arg(long, env = "SHOKAI_BANK_LISTEN", default_value = "127.0.0.1:8443")]
        bank_listen: SocketAddr,
        /// A directory written by `shokai certs init` (or give the files below).
        #[arg(long, env = "SHOKAI_PKI_DIR", default_value = "pki")]
        pki_dir: PathBuf,
        #[arg(long, env = "SHOKAI_SERVER_CERT")]
        server_cert: Option<PathBuf>,
        #[arg(long, env = "SHOKAI_SERVER_KEY")]
        server_key: Option<PathBuf>,
        #[arg(long, env = "SHOKAI_CLIENT_CERT")]
        client_cert: Option<PathBuf>,
        #[arg(long, env = "SHOKAI_CLIENT_KEY")]
        client_key: Option<PathBuf>,
        #[arg(long, env = "SHOKAI_BANK_CLIENT_CA")]
        bank_client_ca: Option<PathBuf>,
        /// A PEM file of CRLs for bank client certificates.
        #[arg(long, env = "SHOKAI_CRL")]
        crl: Option<PathBuf>,
        /// What this process does: `all`, `api` (staff and bank APIs only)
        /// or `dispatcher` (batching and delivery only). Several processes
        /// can share one PostgreSQL database in any mix of roles.
        #[arg(long, env = "SHOKAI_ROLE", value_enum, default_value_t = ProcessRole::All)]
        role: ProcessRole,
        /// Seconds a stopping process waits for deliveries under way.
        #[arg(long, env = "SHOKAI_GRACE_SECS", default_value_t = 30)]
        grace_secs: u64,
        #[command(flatten)]
        tuning: TuningArgs,
        #[command(flatten)]
        departments: DepartmentArgs,
        #[command(flatten)]
        feed: FeedArgs,
        #[arg(long, env = "SHOKAI_WORKERS", default_value_t = 2)]
        workers: usize,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Run everything on this machine with mock banks and sample cases.
    Demo {
        /// Exit after the summary line instead of serving until Ctrl-C.
        #[arg(long)]
        exit: bool,
        #[arg(long, default_value = "shokai-demo")]
        work_dir: PathBuf,
        /// Where banks.csv and branches.csv are.
        #[arg(long, default_value = "data/zengin")]
        directory: PathBuf,
        #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u16).range(1..=2000))]
        subjects: u16,
        #[arg(long, default_value = "127.0.0.1:0")]
        staff_listen: SocketAddr,
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
    },
    /// Development certificates.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// The institution directory and delivery settings.
    Institutions {
        #[command(subcommand)]
        command: InstitutionsCommand,
    },
    /// API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Web UI accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Measure the whole path under load and print figures (last line JSON).
    Bench {
        #[arg(long, default_value_t = 10_000)]
        inquiries: usize,
        #[arg(long, default_value_t = 5)]
        institutions: usize,
        #[arg(long, default_value_t = 500)]
        batch_size: i64,
        /// Fill the queue with every institution paused, then release it.
        #[arg(long)]
        backlog: bool,
        /// Concurrent API clients filing requests.
        #[arg(long, default_value_t = 4)]
        submitters: usize,
        /// Gateway processes sharing the database (PostgreSQL only): the
        /// first runs in the bench process, the others as `shokai serve`
        /// children. The submitters take turns between them; the mock
        /// banks send their answers to the first.
        #[arg(long, default_value_t = 1)]
        gateways: usize,
        /// Requests (of 20 people × each institution) filed per second,
        /// evenly spaced; 0 files them as fast as the submitters can.
        #[arg(long, default_value_t = 0.0)]
        submit_rate: f64,
        #[arg(long, default_value = "shokai-bench")]
        work_dir: PathBuf,
        #[arg(long, default_value = "data/zengin")]
        directory: PathBuf,
    },
    /// Check a bank's inquiry endpoint against the protocol (onboarding kit).
    Conformance {
        /// The bank's endpoint, e.g. https://bank.example/shokai/inquiries
        #[arg(long)]
        bank_url: String,
        /// The bank's institution code.
        #[arg(long)]
        institution: String,
        /// CA that issued the bank's server certificate.
        #[arg(long)]
        ca: PathBuf,
        /// The office's client certificate and key.
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
        #[arg(long, default_value_t = 80 * 1024 * 1024)]
        oversize_bytes: usize,
    },
    /// Personal data past its retention period.
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Steer the delivery queue.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Run mock banks (for the demo, tests and bank engineers).
    MockBanks(mockbank::Args),
    /// Run the mock department systems: the seven pull APIs over HTTPS and
    /// CSV exports, with /control/{people,change,fault,export} to steer them.
    MockDepartments {
        /// Directory written by `shokai certs init` (its departments-server
        /// certificate and CA).
        #[arg(long, default_value = "pki")]
        pki_dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:9443")]
        listen: SocketAddr,
        /// Export a department as CSV into a folder, as NAME=DIR; repeatable.
        #[arg(long = "file")]
        files: Vec<String>,
        /// A JSON file with the residents: [{"kana_name", "birth_date",
        /// "household", "relationship", "kanji_name", "address"}, …].
        #[arg(long)]
        people: Option<PathBuf>,
    },
}

/// Delivery engine settings for `serve`.
#[derive(clap::Args)]
struct TuningArgs {
    /// How long a claimed batch is ours before another process may take it.
    #[arg(long, env = "SHOKAI_LEASE_MS", default_value_t = 60_000)]
    lease_ms: u64,
    /// Timeout of one HTTP attempt to a bank.
    #[arg(long, env = "SHOKAI_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    request_timeout_ms: u64,
    #[arg(long, env = "SHOKAI_POLL_MS", default_value_t = 200)]
    poll_ms: u64,
    /// Retry backoff: base and cap of the exponential, full-jitter delay.
    #[arg(long, env = "SHOKAI_RETRY_BASE_MS", default_value_t = 2_000)]
    retry_base_ms: u64,
    #[arg(long, env = "SHOKAI_RETRY_CAP_MS", default_value_t = 900_000)]
    retry_cap_ms: u64,
    #[arg(long, env = "SHOKAI_RETRY_MAX_ATTEMPTS", default_value_t = 20)]
    retry_max_attempts: u32,
    /// Give up on a batch this long after its first attempt (0: never).
    #[arg(long, env = "SHOKAI_RETRY_DEADLINE_SECS", default_value_t = 259_200)]
    retry_deadline_secs: u64,
    /// Consecutive failures that open an institution's circuit breaker.
    #[arg(long, env = "SHOKAI_BREAKER_THRESHOLD", default_value_t = 5)]
    breaker_threshold: i64,
    #[arg(long, env = "SHOKAI_BREAKER_COOLDOWN_MS", default_value_t = 30_000)]
    breaker_cooldown_ms: u64,
    /// Purge personal data of cases closed this many days ago (hourly).
    #[arg(long, env = "SHOKAI_RETENTION_DAYS")]
    retention_days: Option<u32>,
}

impl TuningArgs {
    fn into_tuning(self, grace: Duration) -> anyhow::Result<shokai::delivery::EngineTuning> {
        // A lease shorter than a request would let a second process resend
        // a batch that is still on its way.
        anyhow::ensure!(
            self.lease_ms > self.request_timeout_ms,
            "--lease-ms ({}) must be longer than --request-timeout-ms ({})",
            self.lease_ms,
            self.request_timeout_ms
        );
        let ms = Duration::from_millis;
        Ok(shokai::delivery::EngineTuning {
            lease: ms(self.lease_ms),
            request_timeout: ms(self.request_timeout_ms),
            poll_interval: ms(self.poll_ms),
            retry: shokai::domain::retry::RetryPolicy {
                base: ms(self.retry_base_ms),
                cap: ms(self.retry_cap_ms),
                max_attempts: self.retry_max_attempts,
                deadline: (self.retry_deadline_secs > 0)
                    .then(|| Duration::from_secs(self.retry_deadline_secs)),
            },
            breaker: shokai::domain::breaker::BreakerPolicy {
                failure_threshold: self.breaker_threshold,
                cool_down: ms(self.breaker_cooldown_ms),
            },
            shutdown_grace: grace,
            retention_days: self.retention_days,
            ..Default::default()
        })
    }
}

/// The city's departments (connectors) for `serve`.
#[derive(clap::Args)]
struct DepartmentArgs {
    /// A department connector, as NAME=https://endpoint (pull API) or
    /// NAME=file:/folder (CSV file linkage); repeatable, or comma-separated
    /// in the environment. NAME is resident_registry, tax, child_allowance,
    /// child_rearing_allowance, national_health_insurance, long_term_care
    /// or pension.
    #[arg(long = "department", env = "SHOKAI_DEPARTMENTS", value_delimiter = ',')]
    departments: Vec<String>,
    /// CA bundle that issued the departments' server certificates.
    #[arg(long, env = "SHOKAI_DEPARTMENT_CA")]
    department_ca: Option<PathBuf>,
    /// How long one connector may take before its result counts as failed.
    #[arg(long, env = "SHOKAI_DEPARTMENT_TIMEOUT_MS", default_value_t = 10_000)]
    department_timeout_ms: u64,
    /// A longer or shorter timeout for one department, as NAME=MS; repeatable.
    #[arg(
        long = "department-timeout",
        env = "SHOKAI_DEPARTMENT_TIMEOUTS",
        value_delimiter = ','
    )]
    department_timeouts: Vec<String>,
    /// Re-query open cases for changes this often (0: never).
    #[arg(long, env = "SHOKAI_REQUERY_SECS", default_value_t = 86_400)]
    requery_secs: u64,
}

impl DepartmentArgs {
    fn into_config(self) -> anyhow::Result<shokai::connectors::ConnectorsConfig> {
        use shokai::domain::department::Department;
        let specs = self
            .departments
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| shokai::connectors::ConnectorSpec::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        let timeouts = self
            .department_timeouts
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|t| {
                let (name, ms) = t.split_once('=').ok_or_else(|| {
                    anyhow::anyhow!("--department-timeout must be NAME=MS, got '{t}'")
                })?;
                Ok((
                    Department::parse(name.trim())?,
                    Duration::from_millis(ms.trim().parse()?),
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(shokai::connectors::ConnectorsConfig {
            specs,
            ca: self.department_ca,
            timeout: Duration::from_millis(self.department_timeout_ms),
            timeouts,
            requery_every: (self.requery_secs > 0).then(|| Duration::from_secs(self.requery_secs)),
        })
    }
}

/// The case-file feed for `serve`.
#[derive(clap::Args)]
struct FeedArgs {
    /// POST case-file events here as signed webhooks.
    #[arg(long, env = "SHOKAI_FEED_URL")]
    feed_url: Option<String>,
    /// A file holding the HMAC secret shared with the receiver.
    #[arg(long, env = "SHOKAI_FEED_SECRET_FILE")]
    feed_secret_file: Option<PathBuf>,
    /// CA bundle of the receiver's server certificate.
    #[arg(long, env = "SHOKAI_FEED_CA")]
    feed_ca: Option<PathBuf>,
}

impl FeedArgs {
    fn into_settings(self) -> anyhow::Result<Option<shokai::gateway::FeedSettings>> {
        let Some(url) = self.feed_url.filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        let path = self
            .feed_secret_file
            .ok_or_else(|| anyhow::anyhow!("--feed-url needs --feed-secret-file"))?;
        let secret = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            .trim()
            .as_bytes()
            .to_vec();
        anyhow::ensure!(
            secret.len() >= 32,
            "the feed secret in {} must be at least 32 bytes",
            path.display()
        );
        Ok(Some(shokai::gateway::FeedSettings {
            url,
            secret,
            ca: self.feed_ca,
        }))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ProcessRole {
    All,
    Api,
    Dispatcher,
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Remove the personal data of cases closed more than DAYS ago.
    Purge {
        #[arg(long)]
        days: u32,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the whole hash chain; exit 1 naming the first broken entry.
    Verify,
    /// Print entries, optionally for one case.
    List {
        #[arg(long)]
        case: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Stop sending to an institution (its queue keeps filling).
    Pause { code: String },
    /// Send to it again.
    Resume { code: String },
    /// Send a dead batch again from scratch.
    RetryBatch { id: String },
    /// List batches in a state (dead, retry_wait, in_flight, sealed, acknowledged).
    Batches {
        #[arg(long, default_value = "dead")]
        state: String,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Cancel an inquiry that has no answer yet.
    CancelInquiry { id: String },
    /// Send the case-file feed's dead events again (the receiver is fixed).
    RetryFeed,
    /// Re-query the departments of every open case now and raise alerts for
    /// changes (what `serve` does every --requery-secs).
    Requery {
        #[command(flatten)]
        departments: DepartmentArgs,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Write a CA, the gateway's certificates and a pair per bank into DIR.
    Init {
        dir: PathBuf,
        /// Institution codes to make bank certificates for.
        #[arg(long = "bank", default_values_t = ["0001".to_owned(), "0005".to_owned(), "0009".to_owned()])]
        banks: Vec<String>,
    },
}

#[derive(Subcommand)]
enum InstitutionsCommand {
    /// Load banks.csv (and branches.csv) in the zengin directory format.
    Import {
        banks: PathBuf,
        branches: Option<PathBuf>,
    },
    /// Change the delivery settings of one institution.
    Set {
        code: String,
        #[arg(long)]
        channel: Option<String>,
        #[arg(long)]
        endpoint: Option<String>,
        /// PEM file of the CA that issued the bank's server certificate.
        #[arg(long)]
        server_ca: Option<PathBuf>,
        #[arg(long)]
        max_batch_size: Option<i64>,
        #[arg(long)]
        max_in_flight: Option<i64>,
        #[arg(long)]
        batch_max_age_ms: Option<i64>,
        #[arg(long)]
        paused: Option<bool>,
        /// When batches may be sent (JST), e.g. "weekdays 08:00-19:00"; "always" clears it.
        #[arg(long)]
        delivery_window: Option<String>,
    },
    /// Register the client certificate a bank uses on the bank API.
    AddCert { code: String, cert: PathBuf },
    /// Show one institution.
    Show { code: String },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it once.
    Create {
        #[arg(long)]
        role: String,
        #[arg(long)]
        office: String,
        #[arg(long, default_value = "cli")]
        label: String,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account; the password is read from stdin (one line) or a file.
    Create {
        username: String,
        #[arg(long)]
        name: String,
        /// caseworker, supervisor, admin or auditor.
        #[arg(long)]
        role: String,
        /// The office's 6-digit local government code.
        #[arg(long)]
        office: String,
        #[arg(long, conflicts_with = "password_stdin")]
        password_file: Option<PathBuf>,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Stop an account from logging in (its sessions end at once).
    Disable {
        username: String,
    },
    /// Let a disabled account log in again.
    Enable {
        username: String,
    },
    List,
}

async fn user_command(store: &Store, command: UserCommand) -> anyhow::Result<()> {
    use shokai::domain::time::{now_millis, rfc3339};
    match command {
        UserCommand::Create {
            username,
            name,
            role,
            office,
            password_file,
            password_stdin,
        } => {
            let password = match (password_file, password_stdin) {
                (Some(path), _) => std::fs::read_to_string(&path)?,
                (None, true) => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line
                }
                (None, false) => anyhow::bail!("give --password-stdin or --password-file"),
            };
            let user = shokai::accounts::create_user(
                store,
                shokai::accounts::NewUser {
                    username,
                    display_name: name,
                    password: password.trim_end_matches(['\r', '\n']).to_owned(),
                    role: Role::parse(&role)?,
                    office,
                },
            )
            .await?;
            println!(
                "created user {} ({}, office {})",
                user.username, user.role, user.office
            );
        }
        UserCommand::Disable { username } => {
            store
                .set_user_disabled(&username, Some(now_millis()))
                .await?;
            println!("disabled {username}");
        }
        UserCommand::Enable { username } => {
            store.set_user_disabled(&username, None).await?;
            println!("enabled {username}");
        }
        UserCommand::List => {
            for u in store.users().await? {
                println!(
                    "{} {} {} {} {}",
                    u.username,
                    u.role,
                    u.office,
                    rfc3339(u.created_at),
                    if u.disabled_at.is_some() {
                        "disabled"
                    } else {
                        "active"
                    }
                );
            }
        }
    }
    Ok(())
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHOKAI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    limit_malloc_arenas();
    let cli = Cli::parse();
    init_logging(cli.json_logs);
    shokai::tls::install_crypto_provider();
    let mut db = StoreConfig::new(
        cli.database_url
            .clone()
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
    );
    // Commands that change case files (admin requery) tell the feed as
    // `serve` would, when the same environment configures one.
    db.feed_events = std::env::var("SHOKAI_FEED_URL").is_ok_and(|u| !u.is_empty());
    db.writer_scheduling = cli.writer_scheduling;
    match cli.command {
        Command::Serve {
            staff_listen,
            bank_listen,
            pki_dir,
            server_cert,
            server_key,
            client_cert,
            client_key,
            bank_client_ca,
            crl,
            role,
            grace_secs,
            tuning,
            departments,
            feed,
            workers,
        } => {
            let d = TlsFiles::from_pki_dir(&pki_dir);
            let tls = TlsFiles {
                server_cert: server_cert.unwrap_or(d.server_cert),
                server_key: server_key.unwrap_or(d.server_key),
                client_cert: client_cert.unwrap_or(d.client_cert),
                client_key: client_key.unwrap_or(d.client_key),
                bank_client_ca: bank_client_ca.unwrap_or(d.bank_client_ca),
                crl,
            };
            let gateway = Gateway::start(GatewayConfig {
                database: db,
                staff_listen,
                bank_listen,
                tls,
                workers,
                run_engine: role != ProcessRole::Api,
                serve_api: role != ProcessRole::Dispatcher,
                engine: tuning.into_tuning(Duration::from_secs(grace_secs))?,
                connectors: departments.into_config()?,
                feed: feed.into_settings()?,
            })
            .await?;
            match (gateway.staff_addr, gateway.bank_addr) {
                (Some(_), Some(bank)) => println!(
                    "shokai: staff API {} ; bank API https://{bank}/bank/v1",
                    gateway.api_url()
                ),
                (Some(ops), None) => {
                    println!("shokai: dispatcher running; metrics at http://{ops}/metrics")
                }
                _ => println!("shokai: running"),
            }
            run_until_stopped(&gateway).await;
            println!("shokai: stopping");
            gateway.stop().await;
        }
        Command::Migrate => {
            let store = Store::open(&db).await?;
            println!(
                "migrations applied: {:?}",
                store.applied_migrations().await?
            );
        }
        Command::Demo {
            exit,
            work_dir,
            directory,
            subjects,
            staff_listen,
            timeout_secs,
        } => {
            demo::run(demo::DemoConfig {
                database_url: cli.database_url,
                work_dir,
                directory_dir: directory,
                exit,
                subjects: usize::from(subjects),
                staff_listen,
                timeout: Duration::from_secs(timeout_secs),
            })
            .await?;
        }
        Command::Certs {
            command: CertsCommand::Init { dir, banks },
        } => {
            pki::init(&dir, &banks)?;
            println!("wrote a development PKI to {}", dir.display());
        }
        Command::Institutions { command } => {
            institutions(&Store::open(&db).await?, command).await?
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    role,
                    office,
                    label,
                },
        } => {
            let store = Store::open(&db).await?;
            let token = admin::create_token(&store, Role::parse(&role)?, &office, &label).await?;
            println!("{token}");
        }
        Command::User { command } => {
            let store = Store::open(&db).await?;
            user_command(&store, command).await?;
        }
        Command::Bench {
            inquiries,
            institutions,
            batch_size,
            backlog,
            submitters,
            gateways,
            submit_rate,
            work_dir,
            directory,
        } => {
            shokai::bench::run(shokai::bench::BenchConfig {
                gateways: gateways.clamp(1, 8),
                submit_rate: submit_rate.max(0.0),
                inquiries,
                institutions: institutions.clamp(1, 50),
                batch_size: batch_size.clamp(1, 10_000),
                database_url: cli.database_url,
                writer_scheduling: cli.writer_scheduling,
                backlog,
                submitters,
                work_dir,
                directory_dir: directory,
            })
            .await?;
        }
        Command::Conformance {
            bank_url,
            institution,
            ca,
            cert,
            key,
            oversize_bytes,
        } => {
            let results = shokai::conformance::run(&shokai::conformance::ConformanceConfig {
                bank_url,
                institution: InstitutionCode::parse(&institution)?,
                ca,
                cert,
                key,
                oversize_bytes,
            })
            .await?;
            print!("{}", shokai::conformance::render(&results));
            if results.iter().any(|r| !r.passed) {
                std::process::exit(1);
            }
        }
        Command::Retention {
            command: RetentionCommand::Purge { days },
        } => {
            let c = admin::purge_expired(&Store::open(&db).await?, days).await?;
            println!(
                "purged {} cases, {} subjects, {} requests, {} inquiries, {} answers, {} batch payloads",
                c.cases, c.subjects, c.requests, c.inquiries, c.answers, c.batch_payloads
            );
        }
        Command::Audit { command } => audit_command(&Store::open(&db).await?, command).await?,
        Command::Admin { command } => admin_command(&Store::open(&db).await?, command).await?,
        Command::MockBanks(args) => mockbank::run(args.into_config()?).await?,
        Command::MockDepartments {
            pki_dir,
            listen,
            files,
            people,
        } => {
            use shokai::domain::department::Department;
            let departments = shokai::mockdept::MockDepartments::start(&pki_dir, listen).await?;
            if let Some(path) = people {
                let text = std::fs::read_to_string(&path)?;
                departments.register(&serde_json::from_str::<Vec<shokai::mockdept::Person>>(
                    &text,
                )?)?;
            }
            let exports = files
                .iter()
                .map(|f| {
                    let (name, dir) = f
                        .split_once('=')
                        .ok_or_else(|| anyhow::anyhow!("--file must be NAME=DIR, got '{f}'"))?;
                    Ok((Department::parse(name)?, PathBuf::from(dir)))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            for (d, dir) in &exports {
                let path = departments.export_csv(*d, dir)?;
                println!("mock-department {} file {}", d.as_str(), path.display());
            }
            departments.set_exports(exports);
            for d in Department::ALL {
                println!("mock-department {} {}", d.as_str(), departments.url(d));
            }
            println!("mock-departments ready");
            tokio::signal::ctrl_c().await?;
            departments.stop().await;
        }
    }
    Ok(())
}

async fn institutions(store: &Store, command: InstitutionsCommand) -> anyhow::Result<()> {
    match command {
        InstitutionsCommand::Import { banks, branches } => {
            let (b, br) = admin::import_directory(store, &banks, branches.as_deref()).await?;
            println!("imported {b} institutions and {br} branches");
        }
        InstitutionsCommand::Set {
            code,
            channel,
            endpoint,
            server_ca,
            max_batch_size,
            max_in_flight,
            batch_max_age_ms,
            paused,
            delivery_window,
        } => {
            let code = InstitutionCode::parse(&code)?;
            let current = store
                .institution(&code)
                .await?
                .ok_or_else(|| anyhow::anyhow!("institution {code} is not in the directory"))?;
            let mut s = current.settings;
            if let Some(c) = channel {
                s.channel = Channel::parse(&c)?;
            }
            if let Some(e) = endpoint {
                s.endpoint_url = Some(e);
            }
            if let Some(p) = server_ca {
                s.server_ca_pem = Some(
                    std::fs::read_to_string(&p)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
                );
            }
            s.max_batch_size = max_batch_size.unwrap_or(s.max_batch_size);
            s.max_in_flight = max_in_flight.unwrap_or(s.max_in_flight);
            s.batch_max_age_ms = batch_max_age_ms.unwrap_or(s.batch_max_age_ms);
            s.paused = paused.unwrap_or(s.paused);
            if let Some(w) = delivery_window {
                s.delivery_window = (w != "always").then_some(w);
            }
            admin::set_institution(store, &code, &s).await?;
            println!("updated institution {code}");
        }
        InstitutionsCommand::AddCert { code, cert } => {
            let fp =
                admin::add_bank_certificate(store, &InstitutionCode::parse(&code)?, &cert).await?;
            println!("registered certificate {fp} for institution {code}");
        }
        InstitutionsCommand::Show { code } => {
            let i = store
                .institution(&InstitutionCode::parse(&code)?)
                .await?
                .ok_or_else(|| anyhow::anyhow!("institution {code} is not in the directory"))?;
            let s = &i.settings;
            println!("{} {} ({})", i.code, i.name, i.kana);
            println!(
                "  channel {} endpoint {} paused {}",
                s.channel,
                s.endpoint_url.as_deref().unwrap_or("-"),
                s.paused
            );
            println!(
                "  max batch {} in flight {} max age {} ms",
                s.max_batch_size, s.max_in_flight, s.batch_max_age_ms
            );
        }
    }
    Ok(())
}

async fn admin_command(store: &Store, command: AdminCommand) -> anyhow::Result<()> {
    use shokai::domain::ids::{BatchId, InquiryId};
    use shokai::domain::state::BatchState;
    use shokai::domain::time::{now_millis, rfc3339};
    match command {
        AdminCommand::Pause { code } => {
            store
                .set_paused(&InstitutionCode::parse(&code)?, true)
                .await?;
            println!("paused institution {code}");
        }
        AdminCommand::Resume { code } => {
            store
                .set_paused(&InstitutionCode::parse(&code)?, false)
                .await?;
            println!("resumed institution {code}");
        }
        AdminCommand::RetryBatch { id } => {
            store
                .retry_dead_batch(&BatchId::parse(&id)?, now_millis())
                .await?;
            println!("batch {id} will be sent again");
        }
        AdminCommand::Batches { state, limit } => {
            for b in store
                .batches_in_state(BatchState::parse(&state)?, limit)
                .await?
            {
                println!(
                    "{} {} {} inquiries, {} attempts, next {} {}",
                    b.id,
                    b.institution,
                    b.inquiry_count,
                    b.attempts,
                    rfc3339(b.next_attempt_at),
                    b.last_error.unwrap_or_default()
                );
            }
        }
        AdminCommand::CancelInquiry { id } => {
            let n = store
                .cancel_inquiries(
                    &[InquiryId::parse(&id)?],
                    "cancelled by the operator",
                    now_millis(),
                )
                .await?;
            println!("cancelled {n} inquiry");
        }
        AdminCommand::RetryFeed => {
            let n = store.retry_dead_feed_events(now_millis()).await?;
            println!("{n} feed events will be sent again");
        }
        AdminCommand::Requery { departments } => {
            let connectors =
                shokai::connectors::Connectors::build(&departments.into_config()?, store)?;
            let s = shokai::casework::requery_open_cases(store, &connectors).await?;
            println!(
                "re-queried {} cases: {} change alerts, {} incomplete fetches, {} errors",
                s.cases, s.alerts, s.incomplete, s.errors
            );
        }
    }
    Ok(())
}

async fn audit_command(store: &Store, command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify => match admin::verify_audit(store).await? {
            admin::AuditVerdict::Intact { entries, head } => {
                println!("audit: {entries} entries verified; head {head}");
            }
            admin::AuditVerdict::Broken(brk) => {
                println!("audit: entry {} is broken: {}", brk.seq, brk.reason);
                std::process::exit(1);
            }
        },
        AuditCommand::List { case, limit } => {
            let filter = shokai::store::AuditFilter {
                case_id: case,
                limit,
                ..Default::default()
            };
            for c in store.audit_entries(&filter).await? {
                let e = &c.entry;
                println!(
                    "{} {} {} {} {} {} {}",
                    c.seq,
                    shokai::domain::time::rfc3339(e.at),
                    e.actor,
                    e.role,
                    e.action.as_str(),
                    e.target,
                    e.legal_basis.as_deref().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}

/// Serves until SIGTERM or Ctrl-C; SIGHUP reloads certificates and CRLs.
async fn run_until_stopped(gateway: &Gateway) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hup.recv() => {
                if let Err(e) = gateway.reload_certificates().await {
                    tracing::error!(error = %e, "certificate reload failed; the previous certificates stay in use");
                    eprintln!("shokai: certificate reload failed: {e}");
                }
            }
        }
    }
}
