//! The sample configuration documents every option of `shokai serve`, and
//! names no option that does not exist.

use std::collections::BTreeSet;

#[test]
fn the_sample_config_matches_the_serve_options() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_shokai"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let from_help: BTreeSet<String> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next().map(str::to_owned))
        .collect();
    assert!(from_help.len() > 20, "{help}");
    let sample = std::fs::read_to_string(crate::support::repo_path("deploy/shokai.env")).unwrap();
    let from_sample: BTreeSet<String> = sample
        .lines()
        .filter(|l| l.starts_with("SHOKAI_"))
        .filter_map(|l| l.split('=').next().map(str::to_owned))
        // Read by the log setup, not a flag.
        .filter(|k| k != "SHOKAI_LOG")
        .collect();
    assert_eq!(
        from_help, from_sample,
        "deploy/shokai.env and `shokai serve --help` disagree"
    );
    let unit = std::fs::read_to_string(crate::support::repo_path("deploy/shokai.service")).unwrap();
    assert!(
        unit.contains("EnvironmentFile=/etc/shokai/shokai.env")
            && unit.contains("ExecReload=/bin/kill -HUP")
    );
}
