//! The host-independent HTTP request and response every component handler
//! speaks. Each component converts Spin's types to these at its edge, so the
//! handlers run unchanged in native tests and in wasm. [`error`] is the one
//! error type of the HTTP surface.
//!
//! Uses only `tenancy` (an invalid id is an [`error::ApiError`]).

pub mod error;
pub mod ratelimit;

use serde::Serialize;

use crate::http::error::ApiError;

/// Largest request body accepted unless an endpoint documents another limit.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Upper case, as sent (`GET`, `DELETE`, ...).
    pub method: String,
    /// The path only, percent-encoded as received.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// Names in lower case; values as bytes, since nothing guarantees UTF-8.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn new(method: &str, path_and_query: &str) -> Self {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        Request {
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            query: query.to_owned(),
            ..Request::default()
        }
    }

    pub fn with_header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.as_ref().to_vec()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The single value of a header. Sent twice or not UTF-8, it is refused
    /// rather than guessed at: two `X-Tenant-ID`s must not let a caller pick.
    pub fn header(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let Some((_, value)) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(ApiError::BadRequest(format!(
                "header {name} is sent more than once"
            )));
        }
        std::str::from_utf8(value)
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("header {name} is not UTF-8")))
    }

    /// Query parameters, percent-decoded, each name at most once and only names
    /// in `allowed`, so a typo (`limt=5`) is an error rather than silently ignored.
    pub fn query_params(&self, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
        let mut params: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(self.query.as_bytes()) {
            if !allowed.contains(&name.as_ref()) {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter; allowed: {}",
                    allowed.join(", ")
                )));
            }
            if params.iter().any(|(n, _)| *n == name) {
                return Err(ApiError::BadRequest(format!(
                    "query parameter {name} is given more than once"
                )));
            }
            params.push((name.into_owned(), value.into_owned()));
        }
        Ok(params)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, body: &impl Serialize) -> Self {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(body).expect("response bodies always serialise"),
        }
    }

    pub fn no_content() -> Self {
        Response {
            status: 204,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Adds `RateLimit-Policy` and `RateLimit` for the windows this request counted in.
    pub fn with_rate_limit(mut self, windows: &[ratelimit::RateWindow]) -> Self {
        if !windows.is_empty() {
            for (name, value) in ratelimit::headers(windows) {
                self = self.with_header(name, value);
            }
        }
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON, for tests and clients; `Null` when it is not JSON.
    pub fn json_body(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// The segments of a path (what follows a route's prefix), each
/// percent-decoded: the one rule for every route, so `%61cme` is `acme`
/// wherever an id is read. A segment that does not decode to UTF-8 is kept as
/// sent; ids never hold `%`, so it is then refused as an invalid id, as is a
/// segment that decodes to one holding `/`.
pub fn path_segments(rest: &str) -> Vec<String> {
    rest.split('/')
        .map(|segment| {
            percent_encoding::percent_decode_str(segment)
                .decode_utf8()
                .map_or_else(|_| segment.to_owned(), |decoded| decoded.into_owned())
        })
        .collect()
}

/// The token of an `Authorization` header value of the `Bearer` scheme,
/// or `None` for any other scheme or an empty token. The one parser every
/// boundary uses (REST APIs, providers, bridge deliveries); the scheme is
/// case-insensitive, as HTTP defines it (RFC 9110, 11.1).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    authorization
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_whatever_the_schemes_case() {
        for ok in ["Bearer t0k", "bearer t0k", "BEARER  t0k "] {
            assert_eq!(bearer_token(ok), Some("t0k"), "{ok}");
        }
        for bad in ["Basic t0k", "t0k", "Bearer ", "Bearer", "Bearert0k", ""] {
            assert_eq!(bearer_token(bad), None, "{bad}");
        }
    }

    #[test]
    fn duplicate_or_binary_headers_are_refused() {
        let req = Request::new("GET", "/")
            .with_header("X-Tenant-ID", "acme")
            .with_header("x-tenant-id", "bigcorp");
        assert!(req.header("X-Tenant-ID").is_err());
        let req = Request::new("GET", "/").with_header("X-Tenant-ID", [0xff, 0xfe]);
        assert!(req.header("x-tenant-id").is_err());
        let req = Request::new("GET", "/").with_header("X-Tenant-ID", "acme");
        assert_eq!(req.header("x-tenant-id").unwrap(), Some("acme"));
    }

    #[test]
    fn query_params_are_decoded_and_strict() {
        let req = Request::new("GET", "/x?limit=5&cursor=a%2Bb");
        assert_eq!(req.path, "/x");
        let params = req.query_params(&["limit", "cursor"]).unwrap();
        assert_eq!(
            params,
            vec![
                ("limit".into(), "5".into()),
                ("cursor".into(), "a+b".into())
            ]
        );
        assert!(
            Request::new("GET", "/x?limt=5")
                .query_params(&["limit"])
                .is_err()
        );
        assert!(
            Request::new("GET", "/x?limit=5&limit=6")
                .query_params(&["limit"])
                .is_err()
        );
    }
}
