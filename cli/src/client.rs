//! The one way the CLI talks to the platform's REST APIs: where the
//! platform is, the bearer token, and the request.

use clap::Args;
use serde_json::Value;

use crate::{MintArgs, mint_token};

/// Where the platform answers and with which credential.
#[derive(Args)]
pub struct Connection {
    /// Base URL of the running platform.
    #[arg(long, env = "GREENTIC_URL", default_value = "http://127.0.0.1:3000")]
    url: String,
    /// Bearer token; from the environment only, so it stays out of shell history.
    #[arg(
        long = "token",
        env = "GREENTIC_TOKEN",
        hide_env_values = true,
        hide = true
    )]
    token: Option<String>,
    #[arg(
        long = "hs256-secret",
        env = "SPIN_VARIABLE_AUTH_HS256_SECRET",
        hide_env_values = true,
        hide = true
    )]
    hs256_secret: Option<String>,
}

impl Connection {
    pub fn base(&self) -> &str {
        self.url.trim_end_matches('/')
    }

    /// `GREENTIC_TOKEN`, or for development a token valid for one minute,
    /// minted from the signing secret for exactly this tenant, env, teams and role.
    pub fn bearer(
        &self,
        tenant: &str,
        env: &str,
        teams: Vec<String>,
        role: &str,
    ) -> Result<String, String> {
        if let Some(token) = &self.token {
            return Ok(token.trim().to_owned());
        }
        let secret = self.hs256_secret.clone().ok_or(
            "set GREENTIC_TOKEN, or SPIN_VARIABLE_AUTH_HS256_SECRET to mint a development token",
        )?;
        mint_token(MintArgs {
            tenant: tenant.to_owned(),
            env: env.to_owned(),
            teams,
            roles: vec![role.to_owned()],
            sub: "greentic-cli".to_owned(),
            ttl: 60,
            issuer: "greentic-dev".to_owned(),
            audience: "greentic".to_owned(),
            secret,
        })
    }
}

/// An answer: status, headers, and body as JSON (`null` when empty, a
/// string when not JSON).
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    /// The body as it came (NDJSON is not one JSON value).
    pub text: String,
}

impl Answer {
    /// A header's value (names compare without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body of a success, or the problem's status, title and detail.
    pub fn success(self, method: &str, url: &str) -> Result<Value, String> {
        if (200..300).contains(&self.status) {
            return Ok(self.body);
        }
        let mut detail = [&self.body["title"], &self.body["detail"]]
            .into_iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(": ");
        for error in self.body["errors"].as_array().into_iter().flatten() {
            detail.push_str(&format!("\n  {}", error.as_str().unwrap_or_default()));
        }
        Err(format!("{method} {url} answered {}: {detail}", self.status))
    }
}

/// One request with a bearer token and `headers`; a JSON body when given.
pub fn request(
    method: &str,
    url: &str,
    bearer: &str,
    headers: &[(&str, String)],
    body: Option<String>,
) -> Result<Answer, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {bearer}"));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = match body {
        Some(body) => agent.run(
            request
                .header("content-type", "application/json")
                .body(body)
                .map_err(|e| e.to_string())?,
        ),
        None => agent.run(request.body(()).map_err(|e| e.to_string())?),
    }
    .map_err(|e| format!("{method} {url}: {e}"))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
        .collect();
    let text = response
        .into_body()
        .read_to_string()
        .map_err(|e| format!("{method} {url}: reading the answer: {e}"))?;
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()))
    };
    Ok(Answer {
        status,
        headers,
        body,
        text,
    })
}

/// [`request`], and its body if it succeeded.
pub fn call(
    method: &str,
    url: &str,
    bearer: &str,
    headers: &[(&str, String)],
    body: Option<String>,
) -> Result<Value, String> {
    request(method, url, bearer, headers, body)?.success(method, url)
}
