//! `mock-banks`: mock financial institutions speaking the Shokai profile.
//! The implementation is `shokai::mockbank`; see docs/bank-integration.md.

use clap::Parser;

/// mimalloc: see Cargo.toml for why. Only the binaries choose it; the
/// library leaves the allocator to whoever links it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
