//! The binary's configuration handling: clear errors (exit 2) before anything
//! starts, `--check` for deploy pipelines, and no token ever echoed.

mod support;

use std::process::Command;

use support::*;

fn bridge(config: &std::path::Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_greentic-bridge"));
    cmd.arg("--config")
        .arg(config)
        .arg("--check")
        .env_remove("GREENTIC_BRIDGE_PUBLISH_TOKEN")
        .env_remove("GREENTIC_BRIDGE_DELIVERY_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

type Env = &'static [(&'static str, &'static str)];

/// name, config text, environment, what stderr must say
type Case = (&'static str, String, Env, &'static str);

const TOKENS: [(&str, &str); 2] = [
    ("GREENTIC_BRIDGE_PUBLISH_TOKEN", PUBLISH_TOKEN),
    ("GREENTIC_BRIDGE_DELIVERY_TOKEN", DELIVERY_TOKEN),
];

#[test]
fn the_local_config_checks_out_with_tokens_from_the_environment() {
    let local = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bridge.local.toml");
    let out = bridge(&local, &TOKENS);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_configs_exit_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let local = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bridge.local.toml"),
    )
    .unwrap();
    let cases: [Case; 5] = [
        (
            "no tokens",
            local.clone(),
            &[],
            "GREENTIC_BRIDGE_PUBLISH_TOKEN",
        ),
        (
            "short token",
            local.clone(),
            &[("GREENTIC_BRIDGE_PUBLISH_TOKEN", "tiny-secret-value")],
            "at least 32",
        ),
        (
            "unknown key",
            local.replace("max_attempts = 5", "max_attempt = 5"),
            &TOKENS,
            "unknown field `max_attempt`",
        ),
        (
            "bad duration",
            local.replace("timeout = \"10s\"", "timeout = \"ten\""),
            &TOKENS,
            "delivery[0].timeout",
        ),
        (
            "bad pattern",
            local.replace(
                "filter_subject = \"greentic.messaging.ingress.>\"",
                "filter_subject = \"greentic.messaging.ingress.>.x\"",
            ),
            &TOKENS,
            "delivery[0].filter_subject",
        ),
    ];
    for (name, text, env, expected) in cases {
        let path = dir.path().join("bridge.toml");
        std::fs::write(&path, text).unwrap();
        let out = bridge(&path, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(
            !stderr.contains("tiny-secret-value"),
            "{name}: token echoed"
        );
    }
}
