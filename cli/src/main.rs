//! `greentic`: what a newcomer needs on day one.
//!
//! - `greentic bundle validate bundles/demo.yaml` checks a bundle and its flows,
//!   printing every problem as `file: path: reason`.
//! - `greentic token mint --tenant acme --env prod --role writer` prints a
//!   development JWT signed with the same HS256 secret the session API verifies
//!   (`SPIN_VARIABLE_AUTH_HS256_SECRET`, the variable `spin up` reads).
//! - `greentic secret put|list|delete` manages a tenant's or team's secrets
//!   through the secrets broker's REST API (see [`secret`]).
//! - `greentic tenant apply bundles/demo.yaml` creates or updates a bundle's
//!   tenants in the running platform through the tenant API (see [`tenant`]).
//! - `greentic export --tenant acme --env prod > acme.ndjson` writes every
//!   session of the scope with its transcript and state (see [`export`]).

mod client;
mod export;
mod secret;
mod tenant;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use greentic::service::auth::{Claims, mint_hs256};
use greentic::tenancy::ids::{IdKind, validate_id};

#[derive(Parser)]
#[command(name = "greentic", version, about = "Greentic platform tooling")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Tenant bundles.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Development tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Tenant and team secrets, through the running platform's REST API.
    #[command(subcommand)]
    Secret(secret::SecretCommand),
    /// Tenants' configuration, through the running platform's tenant API.
    #[command(subcommand)]
    Tenant(tenant::TenantCommand),
    /// Every session of a tenant (env, team) with its transcript and state, as NDJSON.
    Export(export::ExportArgs),
    /// Slack helpers for trying the platform locally.
    #[command(subcommand)]
    Slack(SlackCommand),
}

#[derive(Subcommand)]
enum SlackCommand {
    /// Print the `X-Slack-Signature` of the request body on stdin, as Slack
    /// computes it: `v0=` hex HMAC-SHA256 of `v0:{timestamp}:{body}` under the
    /// signing secret (from SLACK_SIGNING_SECRET, never an argument).
    Sign {
        /// The `X-Slack-Request-Timestamp` the request will carry (Unix seconds).
        #[arg(long)]
        timestamp: i64,
        #[arg(
            long = "secret",
            env = "SLACK_SIGNING_SECRET",
            hide_env_values = true,
            hide = true
        )]
        secret: String,
    },
}

#[derive(Subcommand)]
enum BundleCommand {
    /// Validate bundles and the flows they name (from `flows/` beside each bundle).
    Validate {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a development JWT (HS256) for a tenant, env, teams and roles.
    Mint(MintArgs),
}

#[derive(Args)]
struct MintArgs {
    #[arg(long)]
    tenant: String,
    #[arg(long)]
    env: String,
    /// A team the token may act for (repeat for several); none means every team.
    #[arg(long = "team")]
    teams: Vec<String>,
    /// A role (`writer`, `admin`; repeat for several); none means read-only.
    #[arg(long = "role")]
    roles: Vec<String>,
    #[arg(long, default_value = "dev@localhost")]
    sub: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
    #[arg(long, default_value = "greentic-dev")]
    issuer: String,
    #[arg(long, default_value = "greentic")]
    audience: String,
    /// The signing secret; read from the environment only, so it stays out of shell history.
    #[arg(
        long = "secret",
        env = "SPIN_VARIABLE_AUTH_HS256_SECRET",
        hide_env_values = true,
        hide = true
    )]
    secret: String,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Bundle(BundleCommand::Validate { paths }) => validate(&paths),
        Command::Token(TokenCommand::Mint(args)) => mint(args),
        Command::Secret(command) => secret::run(command),
        Command::Tenant(command) => tenant::run(command),
        Command::Export(args) => export::run(args),
        Command::Slack(SlackCommand::Sign { timestamp, secret }) => slack_sign(timestamp, &secret),
    }
}

fn validate(paths: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for path in paths {
        match greentic::flows::bundle::load(path) {
            Ok(loaded) => {
                let tenants = loaded.bundle.tenants.len();
                let teams: usize = loaded.bundle.tenants.values().map(|t| t.teams.len()).sum();
                let channels: usize = loaded
                    .bundle
                    .tenants
                    .values()
                    .flat_map(|t| t.teams.values())
                    .map(|t| t.channels.len())
                    .sum();
                println!(
                    "{}: ok ({tenants} tenants, {teams} teams, {channels} channels, {} flows)",
                    path.display(),
                    loaded.flows.len()
                );
            }
            Err(errors) => {
                failed = true;
                for e in errors {
                    eprintln!("{e}");
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn slack_sign(timestamp: i64, secret: &str) -> ExitCode {
    use hmac::{KeyInit, Mac};
    use std::io::Read;
    let mut body = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut body) {
        eprintln!("error: reading the body from stdin: {e}");
        return ExitCode::FAILURE;
    }
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        eprintln!("error: SLACK_SIGNING_SECRET is not usable as a key");
        return ExitCode::FAILURE;
    };
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(&body);
    println!("v0={}", hex::encode(mac.finalize().into_bytes()));
    ExitCode::SUCCESS
}

fn mint(args: MintArgs) -> ExitCode {
    match mint_token(args) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A development token for `args`, or why none can be made.
fn mint_token(args: MintArgs) -> Result<String, String> {
    let checks = [(IdKind::Tenant, &args.tenant), (IdKind::Env, &args.env)];
    for (kind, id) in checks
        .into_iter()
        .chain(args.teams.iter().map(|t| (IdKind::Team, t)))
    {
        validate_id(kind, id).map_err(|e| e.to_string())?;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = Claims {
        sub: args.sub,
        tenant: args.tenant,
        env: args.env,
        teams: (!args.teams.is_empty()).then_some(args.teams),
        roles: args.roles,
        exp: now + args.ttl,
        nbf: None,
        iat: Some(now),
    };
    let secret = args.secret.as_bytes();
    if secret.len() < greentic::service::auth::MIN_HS256_SECRET_LEN {
        return Err(format!(
            "SPIN_VARIABLE_AUTH_HS256_SECRET must be at least {} bytes (e.g. `openssl rand -hex 32`)",
            greentic::service::auth::MIN_HS256_SECRET_LEN
        ));
    }
    mint_hs256(secret, &args.issuer, &args.audience, &claims).map_err(|e| e.to_string())
}
