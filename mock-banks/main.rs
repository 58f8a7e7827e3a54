//! `mock-banks`: mock financial institutions speaking the Shokai profile.
//! The implementation is `shokai::mockbank`; see docs/bank-integration.md.

use clap::Parser;

#[derive(Parser)]
#[command(name = "mock-banks", about = "Mock banks for the Shokai gateway")]
struct Cli {
    #[command(flatten)]
    args: shokai::mockbank::Args,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shokai::mockbank::run(Cli::parse().args.into_config()?).await
}
