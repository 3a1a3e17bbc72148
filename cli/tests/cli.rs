//! The CLI as a newcomer runs it.

use std::path::Path;
use std::process::Command;

use greentic::auth::AuthConfig;

const SECRET: &str = "cli-test-secret-0123456789abcdef0123";

fn greentic() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_greentic"));
    cmd.env_remove("SPIN_VARIABLE_AUTH_HS256_SECRET");
    cmd
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn a_minted_token_passes_the_apis_verification() {
    let out = greentic()
        .args([
            "token", "mint", "--tenant", "acme", "--env", "prod", "--team", "support", "--role",
            "writer",
        ])
        .env("SPIN_VARIABLE_AUTH_HS256_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let config = AuthConfig::new("greentic-dev", "greentic")
        .with_hs256_secret(SECRET.as_bytes())
        .unwrap();
    let principal = config
        .authenticate(Some(&format!("Bearer {}", token.trim())), now())
        .unwrap();
    assert_eq!(
        (principal.tenant.as_str(), principal.env.as_str()),
        ("acme", "prod")
    );
    assert_eq!(principal.teams, Some(vec!["support".to_string()]));
    assert_eq!(principal.roles, ["writer"]);
}

#[test]
fn minting_refuses_a_missing_or_weak_secret_and_bad_ids() {
    let out = greentic()
        .args(["token", "mint", "--tenant", "acme", "--env", "prod"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = greentic()
        .args(["token", "mint", "--tenant", "acme", "--env", "prod"])
        .env("SPIN_VARIABLE_AUTH_HS256_SECRET", "short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 32 bytes"));
    let out = greentic()
        .args(["token", "mint", "--tenant", "Acme.Corp", "--env", "prod"])
        .env("SPIN_VARIABLE_AUTH_HS256_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tenant id is not valid"));
}

#[test]
fn the_demo_bundle_validates_and_a_broken_one_is_explained() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bundles/demo.yaml");
    let out = greentic()
        .args(["bundle", "validate"])
        .arg(&demo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("ok (2 tenants, 3 teams, 4 channels, 2 flows)")
    );

    let dir = std::env::temp_dir().join(format!("greentic-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("broken.yaml");
    std::fs::write(
        &broken,
        "tenants:\n  acme:\n    name: A\n    environments: []\n",
    )
    .unwrap();
    let out = greentic()
        .args(["bundle", "validate"])
        .arg(&broken)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "broken.yaml: tenants.acme.environments: a tenant needs at least one environment"
        ),
        "{stderr}"
    );
}
