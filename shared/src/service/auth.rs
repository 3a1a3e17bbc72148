//! Bearer-token authentication and tenant authorisation for the REST APIs.
//!
//! The one auth check of the platform: [`RequestScope::from_request`] reads the
//! scope headers (syntax only, 400), [`AuthConfig::authenticate`] verifies the JWT
//! (401), and [`Principal::authorise`] checks the headers against the token's
//! claims (403). Components call them in that order, as SPEC §9 fixes.
//!
//! Keys come from Spin variables: an HS256 shared secret for development and
//! PEM public keys (RS256, ES256, EdDSA) for production. The algorithm a token
//! names must match the kind of key that verifies it, so an HS256 token "signed"
//! with a public key, or `alg: none`, is refused.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

use crate::host::Host;
use crate::http::Request;
use crate::http::error::ApiError;
use crate::store::sessions::ListScope;
use crate::tenancy::ids::{IdError, IdKind, TenantCtx, validate_id};

/// Spin variable names read by [`AuthConfig::from_variables`].
pub const VAR_HS256_SECRET: &str = "auth_hs256_secret";
pub const VAR_PUBLIC_KEYS: &str = "auth_public_keys";
pub const VAR_ISSUER: &str = "auth_issuer";
pub const VAR_AUDIENCE: &str = "auth_audience";

/// Shorter HS256 secrets are refused: RFC 7518 asks for a key at least as long as the hash.
pub const MIN_HS256_SECRET_LEN: usize = 32;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// Role names carried in the `roles` claim. A token without roles reads only.
pub mod roles {
    /// Delete sessions.
    pub const WRITER: &str = "writer";
    /// Everything a writer may, and manage (put, delete, list) the tenant's secrets.
    pub const ADMIN: &str = "admin";
    /// Read secret values through the admin API (and list them).
    pub const SECRETS_READER: &str = "secrets-reader";
    /// Manage platform-wide (`global`) secrets.
    pub const PLATFORM_ADMIN: &str = "platform-admin";
}

/// The claims of a platform token. `iss` and `aud` are checked by the verifier
/// and not kept here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub tenant: String,
    pub env: String,
    /// The teams the token may act for; absent means every team of the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teams: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

pub struct AuthConfig {
    hs256: Option<DecodingKey>,
    public_keys: Vec<DecodingKey>,
    issuer: String,
    audience: String,
}

impl AuthConfig {
    /// Reads the verifier's configuration from Spin variables. Empty values
    /// count as unset; with no key at all the API cannot authenticate anyone and
    /// says so (503 `not-configured`) instead of letting requests through.
    pub fn from_variables(get: impl Fn(&str) -> Option<String>) -> Result<Self, ApiError> {
        let non_empty = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let issuer = non_empty(VAR_ISSUER)
            .ok_or_else(|| ApiError::NotConfigured(format!("variable {VAR_ISSUER} is not set")))?;
        let audience = non_empty(VAR_AUDIENCE).ok_or_else(|| {
            ApiError::NotConfigured(format!("variable {VAR_AUDIENCE} is not set"))
        })?;
        let mut config = AuthConfig {
            hs256: None,
            public_keys: Vec::new(),
            issuer,
            audience,
        };
        if let Some(secret) = non_empty(VAR_HS256_SECRET) {
            config = config.with_hs256_secret(secret.as_bytes())?;
        }
        if let Some(pem) = non_empty(VAR_PUBLIC_KEYS) {
            config = config.with_public_keys_pem(&pem)?;
        }
        if config.hs256.is_none() && config.public_keys.is_empty() {
            return Err(ApiError::NotConfigured(format!(
                "no token verification key: set {VAR_HS256_SECRET} (development) or {VAR_PUBLIC_KEYS}"
            )));
        }
        Ok(config)
    }

    pub fn new(issuer: &str, audience: &str) -> Self {
        AuthConfig {
            hs256: None,
            public_keys: Vec::new(),
            issuer: issuer.into(),
            audience: audience.into(),
        }
    }

    pub fn with_hs256_secret(mut self, secret: &[u8]) -> Result<Self, ApiError> {
        if secret.len() < MIN_HS256_SECRET_LEN {
            return Err(ApiError::NotConfigured(format!(
                "{VAR_HS256_SECRET} must be at least {MIN_HS256_SECRET_LEN} bytes"
            )));
        }
        let key = DecodingKey::from_secret(secret).map_err(|e| {
            ApiError::NotConfigured(format!("{VAR_HS256_SECRET} is not usable: {e}"))
        })?;
        self.hs256 = Some(key);
        Ok(self)
    }

    /// Adds every public key in `pem` (one or more `-----BEGIN PUBLIC KEY-----`
    /// blocks: RSA, P-256 or Ed25519), so keys can be rotated by listing both.
    pub fn with_public_keys_pem(mut self, pem: &str) -> Result<Self, ApiError> {
        let starts: Vec<usize> = pem.match_indices("-----BEGIN").map(|(i, _)| i).collect();
        if starts.is_empty() {
            return Err(ApiError::NotConfigured(format!(
                "{VAR_PUBLIC_KEYS} holds no PEM block"
            )));
        }
        for (n, &start) in starts.iter().enumerate() {
            let end = starts.get(n + 1).copied().unwrap_or(pem.len());
            let bytes = pem[start..end].trim().as_bytes();
            let key = DecodingKey::from_rsa_pem(bytes)
                .or_else(|_| DecodingKey::from_ec_pem(bytes))
                .or_else(|_| DecodingKey::from_ed_pem(bytes))
                .map_err(|_| {
                    ApiError::NotConfigured(format!(
                        "{VAR_PUBLIC_KEYS}: PEM block {} is not an RSA, P-256 or Ed25519 public key",
                        n + 1
                    ))
                })?;
            self.public_keys.push(key);
        }
        Ok(self)
    }

    /// Verifies a bearer token's signature, issuer, audience and lifetime at
    /// `now` (Unix seconds), and that its scope claims are valid ids.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        now: u64,
    ) -> Result<Principal, ApiError> {
        let unauthorized = |why: &str| ApiError::Unauthorized(why.to_owned());
        let authorization = authorization.ok_or_else(|| unauthorized("missing bearer token"))?;
        let token = crate::http::bearer_token(authorization)
            .ok_or_else(|| unauthorized("authorization must be a Bearer token"))?;
        // `alg: none` and unknown algorithms fail right here: jsonwebtoken has no such variant.
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| unauthorized("malformed token"))?;
        let candidates: Vec<&DecodingKey> = match header.alg {
            Algorithm::HS256 => self.hs256.iter().collect(),
            Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA => self
                .public_keys
                .iter()
                .filter(|key| key.family() == header.alg.family())
                .collect(),
            _ => Vec::new(),
        };
        if candidates.is_empty() {
            return Err(unauthorized("token algorithm is not accepted"));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        // Lifetime is checked below against the caller's clock, so tests and
        // benchmarks can pin time; jsonwebtoken still requires `exp` to be present.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let mut outcome = Err(unauthorized("bad token signature"));
        for key in candidates {
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => {
                    outcome = Ok(data.claims);
                    break;
                }
                Err(e) if *e.kind() == ErrorKind::InvalidSignature => continue,
                Err(e) => {
                    outcome = Err(unauthorized(match e.kind() {
                        ErrorKind::InvalidIssuer => "token issuer is not accepted",
                        ErrorKind::InvalidAudience => "token audience is not accepted",
                        ErrorKind::MissingRequiredClaim(_) | ErrorKind::Json(_) => {
                            "token lacks required claims"
                        }
                        _ => "token is not valid",
                    }));
                    break;
                }
            }
        }
        let claims = outcome?;
        if now > claims.exp.saturating_add(LEEWAY_SECS) {
            return Err(unauthorized("token expired"));
        }
        if claims
            .nbf
            .is_some_and(|nbf| now.saturating_add(LEEWAY_SECS) < nbf)
        {
            return Err(unauthorized("token not yet valid"));
        }
        Principal::from_claims(claims)
            .map_err(|_| unauthorized("token scope claims are not valid ids"))
    }
}

/// Signs claims with the development HS256 secret (the CLI and tests use it).
pub fn mint_hs256(
    secret: &[u8],
    issuer: &str,
    audience: &str,
    claims: &Claims,
) -> Result<String, ApiError> {
    #[derive(Serialize)]
    struct Signed<'a> {
        #[serde(flatten)]
        claims: &'a Claims,
        iss: &'a str,
        aud: &'a str,
    }
    let cannot_sign =
        |e: jsonwebtoken::errors::Error| ApiError::Internal(format!("cannot sign token: {e}"));
    let key = EncodingKey::from_secret(secret).map_err(cannot_sign)?;
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &Signed {
            claims,
            iss: issuer,
            aud: audience,
        },
        &key,
    )
    .map_err(cannot_sign)
}

/// Who is calling, as the verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub tenant: String,
    pub env: String,
    /// Team tokens the caller may act for; `None` means every team.
    pub teams: Option<Vec<String>>,
    pub roles: Vec<String>,
}

impl Principal {
    fn from_claims(claims: Claims) -> Result<Self, IdError> {
        validate_id(IdKind::Tenant, &claims.tenant)?;
        validate_id(IdKind::Env, &claims.env)?;
        for team in claims.teams.iter().flatten() {
            validate_id(IdKind::Team, team)?;
        }
        Ok(Principal {
            subject: claims.sub,
            tenant: claims.tenant,
            env: claims.env,
            teams: claims.teams,
            roles: claims.roles,
        })
    }

    pub fn has_any_role(&self, wanted: &[&str]) -> bool {
        self.roles.iter().any(|r| wanted.contains(&r.as_str()))
    }

    /// Checks the requested scope against the claims and resolves the request's
    /// [`TenantCtx`]: `X-Env-ID` defaults to the token's env, and without
    /// `X-Team-ID` the request covers every team the token allows.
    pub fn authorise(&self, requested: &RequestScope) -> Result<Access, ApiError> {
        if requested.tenant != self.tenant {
            return Err(ApiError::Forbidden(
                "token does not grant this tenant".into(),
            ));
        }
        let env = requested.env.as_deref().unwrap_or(&self.env);
        if env != self.env {
            return Err(ApiError::Forbidden(
                "token does not grant this environment".into(),
            ));
        }
        if let (Some(team), Some(allowed)) = (&requested.team, &self.teams)
            && !allowed.contains(team)
        {
            return Err(ApiError::Forbidden("token does not grant this team".into()));
        }
        let ctx = TenantCtx::new(&requested.tenant, env, requested.team.as_deref())?;
        Ok(Access {
            ctx,
            team_given: requested.team.is_some(),
            principal: self.clone(),
        })
    }
}

/// The one auth check of a REST request, in SPEC §9's order: scope headers
/// (400), token (401), headers against claims (403). The verifier's keys come
/// from the component's variables (503 `not-configured` without any).
pub fn authorise_request(req: &Request, host: &dyn Host) -> Result<Access, ApiError> {
    let scope = RequestScope::from_request(req)?;
    let config = AuthConfig::from_variables(|name| host.variable(name))?;
    let now_secs = u64::try_from(host.now_ms() / 1000).unwrap_or(0);
    let principal = config.authenticate(req.header("authorization")?, now_secs)?;
    principal.authorise(&scope)
}

/// The scope a REST request asks for, from `X-Tenant-ID` (required),
/// `X-Env-ID` and `X-Team-ID`; ids checked for syntax only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestScope {
    pub tenant: String,
    pub env: Option<String>,
    pub team: Option<String>,
}

impl RequestScope {
    pub fn from_request(req: &Request) -> Result<Self, ApiError> {
        let tenant = req
            .header("x-tenant-id")?
            .ok_or(IdError::Missing(IdKind::Tenant))?;
        validate_id(IdKind::Tenant, tenant)?;
        let optional = |name: &str, kind: IdKind| -> Result<Option<String>, ApiError> {
            let value = req.header(name)?;
            if let Some(v) = value {
                validate_id(kind, v)?;
            }
            Ok(value.map(str::to_owned))
        };
        Ok(RequestScope {
            tenant: tenant.to_owned(),
            env: optional("x-env-id", IdKind::Env)?,
            team: optional("x-team-id", IdKind::Team)?,
        })
    }
}

/// An authorised request: its context and what the token lets it see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// Tenant, env and the requested team (none when `X-Team-ID` was absent).
    pub ctx: TenantCtx,
    pub team_given: bool,
    pub principal: Principal,
}

impl Access {
    /// Whether the caller may see data of `team` (a team id or `default`).
    pub fn can_see_team(&self, team: &str) -> bool {
        if self.team_given {
            return self.ctx.team_token() == team;
        }
        self.principal
            .teams
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|t| t == team))
    }

    /// The sessions this request may list.
    pub fn list_scope(&self) -> ListScope {
        if self.team_given {
            ListScope::Team(self.ctx.clone())
        } else {
            ListScope::Env {
                ctx: self.ctx.clone(),
                teams: self.principal.teams.clone(),
            }
        }
    }

    pub fn require_any_role(&self, wanted: &[&str]) -> Result<(), ApiError> {
        if self.principal.has_any_role(wanted) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "requires role {}",
                wanted.join(" or ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{
        self, NOW_SECS, TEST_AUDIENCE, TEST_HS256_SECRET, TEST_ISSUER, keys, token,
    };
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    fn hs_config() -> AuthConfig {
        AuthConfig::new(TEST_ISSUER, TEST_AUDIENCE)
            .with_hs256_secret(TEST_HS256_SECRET.as_bytes())
            .unwrap()
    }

    fn public_config() -> AuthConfig {
        let pems = [keys::RSA_PUBLIC, keys::EC_PUBLIC, keys::ED25519_PUBLIC].join("\n");
        AuthConfig::new(TEST_ISSUER, TEST_AUDIENCE)
            .with_public_keys_pem(&pems)
            .unwrap()
    }

    fn sign(alg: Algorithm, key: &EncodingKey, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap()
    }

    fn claims_json() -> serde_json::Value {
        json!({"sub": "ops@acme", "tenant": "acme", "env": "prod", "exp": NOW_SECS + 600,
               "iss": TEST_ISSUER, "aud": TEST_AUDIENCE})
    }

    fn auth(config: &AuthConfig, token: &str) -> Result<Principal, ApiError> {
        config.authenticate(Some(&format!("Bearer {token}")), NOW_SECS)
    }

    fn refused(result: Result<Principal, ApiError>, why: &str) {
        match result {
            Err(ApiError::Unauthorized(detail)) => assert_eq!(detail, why),
            other => panic!("expected 401 `{why}`, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_dev_token_yields_its_principal() {
        let t = token("acme", "prod")
            .teams(&["support"])
            .roles(&["writer"])
            .mint();
        let p = auth(&hs_config(), &t).unwrap();
        assert_eq!(p.tenant, "acme");
        assert_eq!(p.env, "prod");
        assert_eq!(p.teams, Some(vec!["support".to_string()]));
        assert!(p.has_any_role(&[roles::WRITER]));
    }

    #[test]
    fn production_algorithms_verify_with_their_public_keys() {
        for (alg, private) in [
            (
                Algorithm::RS256,
                EncodingKey::from_rsa_pem(keys::RSA_PRIVATE.as_bytes()).unwrap(),
            ),
            (
                Algorithm::ES256,
                EncodingKey::from_ec_pem(keys::EC_PRIVATE.as_bytes()).unwrap(),
            ),
            (
                Algorithm::EdDSA,
                EncodingKey::from_ed_pem(keys::ED25519_PRIVATE.as_bytes()).unwrap(),
            ),
        ] {
            let t = sign(alg, &private, claims_json());
            assert_eq!(
                auth(&public_config(), &t).unwrap().tenant,
                "acme",
                "{alg:?}"
            );
        }
    }

    #[test]
    fn lifetime_is_enforced() {
        let mut expired = token("acme", "prod");
        expired.claims.exp = NOW_SECS - LEEWAY_SECS - 1;
        refused(auth(&hs_config(), &expired.mint()), "token expired");
        let mut early = token("acme", "prod");
        early.claims.nbf = Some(NOW_SECS + LEEWAY_SECS + 60);
        refused(auth(&hs_config(), &early.mint()), "token not yet valid");
    }

    #[test]
    fn issuer_and_audience_are_enforced() {
        let key = EncodingKey::from_secret(TEST_HS256_SECRET.as_bytes()).unwrap();
        let mut c = claims_json();
        c["iss"] = json!("someone-else");
        refused(
            auth(&hs_config(), &sign(Algorithm::HS256, &key, c)),
            "token issuer is not accepted",
        );
        let mut c = claims_json();
        c["aud"] = json!("another-api");
        refused(
            auth(&hs_config(), &sign(Algorithm::HS256, &key, c)),
            "token audience is not accepted",
        );
    }

    #[test]
    fn a_tampered_token_is_refused() {
        let t = token("acme", "prod").mint();
        let parts: Vec<&str> = t.split('.').collect();
        let mut payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        payload["tenant"] = json!("bigcorp");
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(payload.to_string()),
            parts[2]
        );
        refused(auth(&hs_config(), &forged), "bad token signature");
        let other_key = EncodingKey::from_rsa_pem(keys::RSA_OTHER_PRIVATE.as_bytes()).unwrap();
        refused(
            auth(
                &public_config(),
                &sign(Algorithm::RS256, &other_key, claims_json()),
            ),
            "bad token signature",
        );
    }

    #[test]
    fn alg_none_is_refused() {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims_json().to_string());
        for t in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}"),
        ] {
            refused(auth(&hs_config(), &t), "malformed token");
        }
    }

    #[test]
    fn hs_rs_confusion_is_refused() {
        // An HS256 token whose HMAC key is the server's RSA *public* key.
        let confused_key = EncodingKey::from_secret(keys::RSA_PUBLIC.as_bytes()).unwrap();
        let t = sign(Algorithm::HS256, &confused_key, claims_json());
        refused(
            auth(&public_config(), &t),
            "token algorithm is not accepted",
        );
        let both = public_config()
            .with_hs256_secret(TEST_HS256_SECRET.as_bytes())
            .unwrap();
        refused(auth(&both, &t), "bad token signature");
        // And the other way: an RS256 token where only the dev secret is configured.
        let rsa = EncodingKey::from_rsa_pem(keys::RSA_PRIVATE.as_bytes()).unwrap();
        refused(
            auth(&hs_config(), &sign(Algorithm::RS256, &rsa, claims_json())),
            "token algorithm is not accepted",
        );
        // HS384/HS512 are not platform algorithms even with the right secret.
        let hs = EncodingKey::from_secret(TEST_HS256_SECRET.as_bytes()).unwrap();
        refused(
            auth(&hs_config(), &sign(Algorithm::HS512, &hs, claims_json())),
            "token algorithm is not accepted",
        );
    }

    #[test]
    fn missing_or_invalid_claims_are_refused() {
        let key = EncodingKey::from_secret(TEST_HS256_SECRET.as_bytes()).unwrap();
        for claim in ["sub", "tenant", "env", "exp"] {
            let mut c = claims_json();
            c.as_object_mut().unwrap().remove(claim);
            refused(
                auth(&hs_config(), &sign(Algorithm::HS256, &key, c)),
                "token lacks required claims",
            );
        }
        for (claim, value) in [
            ("tenant", json!("acme.prod")),
            ("env", json!("*")),
            ("teams", json!(["a:b"])),
        ] {
            let mut c = claims_json();
            c[claim] = value;
            refused(
                auth(&hs_config(), &sign(Algorithm::HS256, &key, c)),
                "token scope claims are not valid ids",
            );
        }
    }

    #[test]
    fn the_header_must_be_a_bearer_token() {
        let config = hs_config();
        refused(config.authenticate(None, NOW_SECS), "missing bearer token");
        let t = token("acme", "prod").mint();
        for bad in [
            format!("Basic {t}"),
            t.clone(),
            "Bearer ".into(),
            "Bearer".into(),
        ] {
            refused(
                config.authenticate(Some(&bad), NOW_SECS),
                "authorization must be a Bearer token",
            );
        }
        refused(
            config.authenticate(Some("Bearer not.a.jwt"), NOW_SECS),
            "malformed token",
        );
        assert!(
            config
                .authenticate(Some(&format!("bearer {t}")), NOW_SECS)
                .is_ok()
        );
    }

    #[test]
    fn configuration_refuses_to_run_open() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let base: &'static [_] = &[(VAR_ISSUER, TEST_ISSUER), (VAR_AUDIENCE, TEST_AUDIENCE)];
        assert!(matches!(
            AuthConfig::from_variables(vars(base)),
            Err(ApiError::NotConfigured(_))
        ));
        let empty: &'static [_] = &[
            (VAR_ISSUER, TEST_ISSUER),
            (VAR_AUDIENCE, TEST_AUDIENCE),
            (VAR_HS256_SECRET, " "),
        ];
        assert!(matches!(
            AuthConfig::from_variables(vars(empty)),
            Err(ApiError::NotConfigured(_))
        ));
        let short: &'static [_] = &[
            (VAR_ISSUER, TEST_ISSUER),
            (VAR_AUDIENCE, TEST_AUDIENCE),
            (VAR_HS256_SECRET, "short"),
        ];
        assert!(matches!(
            AuthConfig::from_variables(vars(short)),
            Err(ApiError::NotConfigured(_))
        ));
        let bad_pem: &'static [_] = &[
            (VAR_ISSUER, TEST_ISSUER),
            (VAR_AUDIENCE, TEST_AUDIENCE),
            (
                VAR_PUBLIC_KEYS,
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
            ),
        ];
        assert!(matches!(
            AuthConfig::from_variables(vars(bad_pem)),
            Err(ApiError::NotConfigured(_))
        ));
        let no_issuer: &'static [_] = &[
            (VAR_AUDIENCE, TEST_AUDIENCE),
            (VAR_HS256_SECRET, TEST_HS256_SECRET),
        ];
        assert!(matches!(
            AuthConfig::from_variables(vars(no_issuer)),
            Err(ApiError::NotConfigured(_))
        ));
        let ok: &'static [_] = &[
            (VAR_ISSUER, TEST_ISSUER),
            (VAR_AUDIENCE, TEST_AUDIENCE),
            (VAR_HS256_SECRET, TEST_HS256_SECRET),
        ];
        assert!(AuthConfig::from_variables(vars(ok)).is_ok());
    }

    fn scope(tenant: &str, env: Option<&str>, team: Option<&str>) -> RequestScope {
        RequestScope {
            tenant: tenant.into(),
            env: env.map(Into::into),
            team: team.map(Into::into),
        }
    }

    #[test]
    fn headers_must_lie_inside_the_claims() {
        let p = auth(
            &hs_config(),
            &token("acme", "prod").teams(&["support"]).mint(),
        )
        .unwrap();
        let forbidden = |r: Result<Access, ApiError>| {
            assert!(matches!(r, Err(ApiError::Forbidden(_))), "{r:?}")
        };
        forbidden(p.authorise(&scope("bigcorp", None, None)));
        forbidden(p.authorise(&scope("acme", Some("staging"), None)));
        forbidden(p.authorise(&scope("acme", None, Some("sales"))));
        forbidden(p.authorise(&scope("acme", None, Some("default"))));
        let access = p.authorise(&scope("acme", None, Some("support"))).unwrap();
        assert_eq!(
            access.ctx,
            TenantCtx::new("acme", "prod", Some("support")).unwrap()
        );
        let access = p.authorise(&scope("acme", Some("prod"), None)).unwrap();
        assert!(
            access.can_see_team("support")
                && !access.can_see_team("sales")
                && !access.can_see_team("default")
        );
        let all_teams = auth(&hs_config(), &token("acme", "prod").mint()).unwrap();
        let access = all_teams.authorise(&scope("acme", None, None)).unwrap();
        assert!(access.can_see_team("sales") && access.can_see_team("default"));
        assert!(
            access
                .require_any_role(&[roles::WRITER, roles::ADMIN])
                .is_err()
        );
    }

    #[test]
    fn scope_headers_are_checked_for_syntax_before_anything_else() {
        let req = |tenant: &str, env: &str, team: &str| {
            Request::new("GET", "/")
                .with_header("x-tenant-id", tenant)
                .with_header("x-env-id", env)
                .with_header("x-team-id", team)
        };
        assert!(RequestScope::from_request(&req("acme", "prod", "support")).is_ok());
        for bad in testing::UNSAFE_IDS {
            for r in [
                req(bad, "prod", "support"),
                req("acme", bad, "support"),
                req("acme", "prod", bad),
            ] {
                assert!(
                    matches!(RequestScope::from_request(&r), Err(ApiError::InvalidId(_))),
                    "{bad:?}"
                );
            }
        }
        assert_eq!(
            RequestScope::from_request(&Request::new("GET", "/")),
            Err(ApiError::InvalidId(IdError::Missing(IdKind::Tenant)))
        );
    }
}
