//! `greentic export`: every session of a tenant's scope, with its transcript
//! and state, as NDJSON on stdout (one session per line), from
//! `GET /api/v1/export` page by page. Secrets are never exported: `greentic
//! secret list` gives their names and metadata.
//!
//! Needs a token with role `admin`: `GREENTIC_TOKEN`, or for development one
//! minted from `SPIN_VARIABLE_AUTH_HS256_SECRET` for exactly the tenant, env
//! and team asked for.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;

use crate::client::{Connection, request};

#[derive(Args)]
pub struct ExportArgs {
    #[arg(long)]
    tenant: String,
    #[arg(long)]
    env: String,
    /// Only this team's sessions; without it, every team the token allows.
    #[arg(long)]
    team: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

pub fn run(args: ExportArgs) -> ExitCode {
    match export(&args, &mut std::io::stdout().lock()) {
        Ok(count) => {
            eprintln!("exported {count} sessions");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes every page's lines to `out`; returns how many sessions.
fn export(args: &ExportArgs, out: &mut impl Write) -> Result<usize, String> {
    let teams = args.team.iter().cloned().collect();
    let bearer = args
        .connection
        .bearer(&args.tenant, &args.env, teams, "admin")?;
    let mut headers = vec![
        ("x-tenant-id", args.tenant.clone()),
        ("x-env-id", args.env.clone()),
    ];
    headers.extend(args.team.iter().map(|t| ("x-team-id", t.clone())));
    let (mut cursor, mut count) = (None::<String>, 0);
    loop {
        let mut url = format!("{}/api/v1/export", args.connection.base());
        if let Some(cursor) = &cursor {
            url.push_str(&format!(
                "?cursor={}",
                percent_encoding::utf8_percent_encode(cursor, percent_encoding::NON_ALPHANUMERIC)
            ));
        }
        let answer = request("GET", &url, &bearer, &headers, None)?;
        let next = answer.header("x-next-cursor").map(str::to_owned);
        let lines = answer.text.clone();
        answer.success("GET", &url)?;
        count += lines.lines().filter(|l| !l.is_empty()).count();
        out.write_all(lines.as_bytes())
            .map_err(|e| format!("writing: {e}"))?;
        match next {
            Some(next) => cursor = Some(next),
            None => return Ok(count),
        }
    }
}
