//! `greentic tenant delete acme` deletes a tenant and all of its data
//! (platform admins), calling `DELETE /api/v1/tenants/{tenant}` until the
//! tenant is gone, printing each call's progress.
//!
//! `greentic tenant apply`: a bundle's tenants applied to the running
//! platform through the tenant API (`/api/v1/tenants`), each created or
//! updated as a new version, or left alone when nothing changed.
//!
//! The bundle is validated here first, as `greentic bundle validate` does,
//! so a broken file is explained before anything is sent. Applying is
//! declarative: the bundle wins over what the tenant holds now. Each update
//! names the version it read (`If-Match`), so only a change landing between
//! that read and the write is refused (412) rather than overwritten.
//!
//! The bearer token is `GREENTIC_TOKEN`; without it, for development, a
//! token valid for one minute is minted from `SPIN_VARIABLE_AUTH_HS256_SECRET`:
//! role `platform-admin` of the operator's tenant to apply every tenant, or
//! role `admin` of the tenant given with `--tenant`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use greentic::flows::control::TenantDocument;
use greentic::tenancy::ids::TenantId;

use crate::client::Connection;

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Create or update the tenants of a bundle (with the flows beside it in `flows/`).
    Apply(ApplyArgs),
    /// Delete a tenant with all of its data, secrets and queued messages (platform admins).
    Delete(DeleteArgs),
}

#[derive(Args)]
pub struct DeleteArgs {
    /// The tenant to delete.
    tenant: String,
    #[command(flatten)]
    caller: Caller,
}

#[derive(Args)]
pub struct ApplyArgs {
    /// The bundle (e.g. bundles/demo.yaml).
    path: PathBuf,
    /// Apply only this tenant, as its own admin; without it, every tenant as a platform admin.
    #[arg(long)]
    tenant: Option<String>,
    #[command(flatten)]
    caller: Caller,
}

/// Where the platform is and who calls it.
#[derive(Args)]
pub struct Caller {
    /// The operator's own tenant, named by a platform admin's token.
    #[arg(long, default_value = "ops")]
    operator_tenant: String,
    /// The environment the token names.
    #[arg(long, default_value = "prod")]
    env: String,
    #[command(flatten)]
    connection: Connection,
}

/// `X-Tenant-ID` and `X-Env-ID` of a call.
type ScopeHeaders = [(&'static str, String); 2];

impl Caller {
    /// A token of `tenant` with `role` in this env, and the headers naming them.
    fn credentials(&self, tenant: String, role: &str) -> Result<(String, ScopeHeaders), String> {
        let bearer = self
            .connection
            .bearer(&tenant, &self.env, Vec::new(), role)?;
        Ok((
            bearer,
            [("x-tenant-id", tenant), ("x-env-id", self.env.clone())],
        ))
    }
}

pub fn run(command: TenantCommand) -> ExitCode {
    let outcome = match command {
        TenantCommand::Apply(args) => apply(&args),
        TenantCommand::Delete(args) => delete(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn apply(args: &ApplyArgs) -> Result<(), String> {
    let loaded = greentic::flows::bundle::load(&args.path).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        lines.join("\n")
    })?;
    let ids: Vec<String> = match &args.tenant {
        Some(id) if loaded.bundle.tenants.contains_key(id) => vec![id.clone()],
        Some(id) => return Err(format!("{}: no tenant `{id}`", args.path.display())),
        None => loaded.bundle.tenants.keys().cloned().collect(),
    };
    let (caller, role) = match &args.tenant {
        Some(id) => (id.clone(), "admin"),
        None => (args.caller.operator_tenant.clone(), "platform-admin"),
    };
    let (bearer, headers) = args.caller.credentials(caller, role)?;
    let mut failed = false;
    for id in ids {
        let tenant = TenantId::parse(&id).map_err(|e| e.to_string())?;
        let document = TenantDocument::from_bundle(&loaded, &id).expect("listed above");
        match apply_one(args, &tenant, &document, &bearer, &headers) {
            Ok(outcome) => println!("{id}: {outcome}"),
            Err(e) => {
                eprintln!("{id}: {e}");
                failed = true;
            }
        }
    }
    if failed {
        Err("some tenants were not applied".into())
    } else {
        Ok(())
    }
}

/// Calls the deletion until the tenant is gone: each call does a bounded
/// share (202), the last answers 200.
fn delete(args: &DeleteArgs) -> Result<(), String> {
    let tenant = TenantId::parse(&args.tenant).map_err(|e| e.to_string())?;
    let (bearer, headers) = args
        .caller
        .credentials(args.caller.operator_tenant.clone(), "platform-admin")?;
    let url = format!("{}/api/v1/tenants/{tenant}", args.caller.connection.base());
    let mut busy = 0;
    loop {
        let answer = crate::client::request("DELETE", &url, &bearer, &headers, None)?;
        if answer.status == 409 && busy < 30 {
            // Another call of this deletion is running (one at a time).
            busy += 1;
            std::thread::sleep(std::time::Duration::from_secs(5));
            continue;
        }
        let accepted = answer.status == 202;
        let body = answer.success("DELETE", &url)?;
        let removed = &body["removed"];
        println!(
            "{tenant}: {} (sessions {}, secrets {}, messages {}, versions {})",
            body["state"].as_str().unwrap_or("?"),
            removed["sessions"],
            removed["secrets"],
            removed["stream_messages"],
            removed["configuration_versions"],
        );
        if !accepted {
            return Ok(());
        }
    }
}

/// Applies one tenant's document: `created`, `updated to version N` or
/// `unchanged (version N)`.
fn apply_one(
    args: &ApplyArgs,
    tenant: &TenantId,
    document: &TenantDocument,
    bearer: &str,
    headers: &[(&str, String)],
) -> Result<String, String> {
    let url = format!("{}/api/v1/tenants/{tenant}", args.caller.connection.base());
    let current = crate::client::request("GET", &url, bearer, headers, None)?;
    let mut headers = headers.to_vec();
    match current.status {
        404 => {}
        _ => {
            let current = current.success("GET", &url)?;
            let version = current["version"]
                .as_u64()
                .ok_or("GET answered no version")?;
            headers.push(("if-match", format!("\"{version}\"")));
        }
    }
    let body = serde_json::to_string(document).expect("documents serialise");
    let answer = crate::client::call("PUT", &url, bearer, &headers, Some(body))?;
    let version = answer["version"].as_u64().unwrap_or_default();
    Ok(match answer["result"].as_str() {
        Some("created") => format!("created (version {version})"),
        Some("updated") => format!("updated to version {version}"),
        _ => format!("unchanged (version {version})"),
    })
}
