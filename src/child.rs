//! Child processes of our own (`shokai mock-banks`, `shokai serve`) that
//! say on stdout when they are ready.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;

/// Starts `cmd` and reads its stdout line by line until `ready` returns a
/// value (at most 30 s). The rest of its output is read and dropped, so
/// its later lines never meet a closed pipe. `what` names it in errors.
pub async fn spawn_announced<T>(
    mut cmd: tokio::process::Command,
    what: &str,
    mut ready: impl FnMut(&str) -> Option<T>,
) -> anyhow::Result<(tokio::process::Child, T)> {
    let mut child = cmd.stdout(Stdio::piped()).kill_on_drop(true).spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let wait = async {
        while let Some(line) = lines.next_line().await? {
            if let Some(value) = ready(&line) {
                return Ok(value);
            }
        }
        anyhow::bail!("{what} exited before it was ready")
    };
    let value = tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .map_err(|_| anyhow::anyhow!("{what} was not ready within 30 s"))??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, value))
}
