//! `greentic secret put|list|delete`: a thin client of the secrets broker's
//! admin API (`/api/v1/secrets`), so a newcomer can store the demo channels'
//! secrets without hand-writing requests.
//!
//! The value is read from stdin, never from an argument: arguments end up in
//! shell history and in `ps`. The bearer token is `GREENTIC_TOKEN`; without it,
//! for development, a token valid for one minute is minted from
//! `SPIN_VARIABLE_AUTH_HS256_SECRET` (the secret `spin up` verifies with) for
//! exactly the tenant/env/team addressed, with role `admin` (`platform-admin`
//! for `--global`).

use std::io::Read;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use greentic::tenancy::ids::SecretName;
use serde_json::Value;

use crate::client::Connection;

#[derive(Subcommand)]
pub enum SecretCommand {
    /// Create or replace a secret; the value is read from stdin (one trailing newline is dropped).
    Put {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// List the secrets of the scope: names and metadata, never values.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Delete a secret.
    Delete {
        name: String,
        #[command(flatten)]
        target: Target,
    },
}

/// Where a secret lives and how to reach the API that holds it.
#[derive(Args)]
pub struct Target {
    #[arg(long)]
    tenant: String,
    #[arg(long)]
    env: String,
    /// The team's own secret; without it, the tenant's.
    #[arg(long)]
    team: Option<String>,
    /// A platform-wide secret (needs a `platform-admin` token).
    #[arg(long, conflicts_with = "team")]
    global: bool,
    #[command(flatten)]
    connection: Connection,
}

pub fn run(command: SecretCommand) -> ExitCode {
    let outcome = match command {
        SecretCommand::Put { name, target } => put(&name, &target),
        SecretCommand::List { target } => list(&target),
        SecretCommand::Delete { name, target } => delete(&name, &target),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn put(name: &str, target: &Target) -> Result<(), String> {
    let url = target.secret_url(name)?;
    let mut value = String::new();
    std::io::stdin()
        .read_to_string(&mut value)
        .map_err(|e| format!("reading the value from stdin: {e}"))?;
    let value = value
        .strip_suffix('\n')
        .map(|v| v.strip_suffix('\r').unwrap_or(v))
        .unwrap_or(&value);
    if value.is_empty() {
        return Err(
            "no value on stdin (e.g. `printf %s \"$VALUE\" | greentic secret put ...`)".into(),
        );
    }
    let body = serde_json::json!({ "value": value }).to_string();
    let meta = target.call("PUT", &url, Some(body))?;
    println!(
        "{}",
        serde_json::to_string_pretty(&meta).unwrap_or_default()
    );
    Ok(())
}

fn list(target: &Target) -> Result<(), String> {
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "200".to_owned())];
        query.extend(cursor.take().map(|c| ("cursor", c)));
        query.extend(target.global.then(|| ("scope", "global".to_owned())));
        let url = format!("{}/api/v1/secrets?{}", target.base(), encode_query(&query));
        let page = target.call("GET", &url, None)?;
        for secret in page["secrets"].as_array().into_iter().flatten() {
            println!("{secret}");
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(()),
        }
    }
}

fn delete(name: &str, target: &Target) -> Result<(), String> {
    let url = target.secret_url(name)?;
    target.call("DELETE", &url, None)?;
    println!("deleted {name}");
    Ok(())
}

impl Target {
    fn base(&self) -> &str {
        self.connection.base()
    }

    fn secret_url(&self, name: &str) -> Result<String, String> {
        // Validated here so a bad name is a clear local error, not a path.
        let name = SecretName::parse(name).map_err(|e| e.to_string())?;
        let scope = if self.global { "?scope=global" } else { "" };
        Ok(format!(
            "{}/api/v1/secrets/{}{scope}",
            self.base(),
            name.as_str()
        ))
    }

    fn bearer(&self) -> Result<String, String> {
        let role = if self.global {
            "platform-admin"
        } else {
            "admin"
        };
        let teams = self.team.iter().cloned().collect();
        self.connection.bearer(&self.tenant, &self.env, teams, role)
    }

    fn call(&self, method: &str, url: &str, body: Option<String>) -> Result<Value, String> {
        let mut headers = vec![
            ("x-tenant-id", self.tenant.clone()),
            ("x-env-id", self.env.clone()),
        ];
        headers.extend(self.team.iter().map(|t| ("x-team-id", t.clone())));
        crate::client::call(method, url, &self.bearer()?, &headers, body)
    }
}

fn encode_query(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}
