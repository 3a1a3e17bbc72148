//! Outbound HTTP as Spin allows it: a component reaches only the hosts in its
//! `allowed_outbound_hosts`; anything else is `HttpRequestDenied`.
//!
//! Allowed requests to `http://<component-id>.spin.internal` are served
//! in-process by that component (service chaining, see `lib.rs`); other
//! allowed requests go to real servers, but only on loopback and over plain
//! HTTP, so tests stay off the network.

use anyhow::{Context, bail};
use http::Uri;
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::hyper_request_error;
use wasmtime_wasi_http::p2::types::{IncomingResponse, OutgoingRequestConfig};

/// One `allowed_outbound_hosts` entry: `scheme://host[:port]`, where the scheme,
/// host and port may be `*`, the host may be `*.domain`, and the port a range
/// `a..b`. Without a port, the scheme's default port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPattern {
    scheme: Option<String>,
    host: String,
    ports: Option<(u16, u16)>,
}

/// A component's `allowed_outbound_hosts`, templates already rendered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts(Vec<HostPattern>);

/// Where an outbound request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Destination {
    /// Service chaining to this component id.
    Component(String),
    /// A real server (allowed; loopback is checked when sending).
    Network,
}

impl AllowedHosts {
    pub fn parse(entries: &[String]) -> anyhow::Result<Self> {
        entries
            .iter()
            .map(|e| HostPattern::parse(e).with_context(|| format!("allowed_outbound_hosts `{e}`")))
            .collect::<anyhow::Result<_>>()
            .map(AllowedHosts)
    }

    /// The destination of an outbound request, or `HttpRequestDenied`.
    pub fn check(&self, uri: &Uri) -> Result<Destination, ErrorCode> {
        let scheme = uri.scheme_str().unwrap_or("http");
        let host = uri.host().ok_or(ErrorCode::HttpRequestUriInvalid)?;
        let port = uri.port_u16().or_else(|| default_port(scheme));
        if !self.0.iter().any(|p| p.allows(scheme, host, port)) {
            return Err(ErrorCode::HttpRequestDenied);
        }
        Ok(match host.strip_suffix(".spin.internal") {
            Some(id) => Destination::Component(id.to_owned()),
            None => Destination::Network,
        })
    }
}

impl HostPattern {
    fn parse(entry: &str) -> anyhow::Result<Self> {
        let Some((scheme, rest)) = entry.split_once("://") else {
            bail!("expected scheme://host[:port]");
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            bail!("a host may not have a path");
        }
        // `[::1]:80` has a port, `[::1]` has none.
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => (host, Some(port)),
            _ => (rest, None),
        };
        let ports = match port {
            Some("*") => None,
            Some(p) => Some(match p.split_once("..") {
                Some((lo, hi)) => (lo.parse()?, hi.parse()?),
                None => (p.parse()?, p.parse()?),
            }),
            None if scheme == "*" => bail!("a `*` scheme needs a port"),
            None => match default_port(scheme) {
                Some(p) => Some((p, p)),
                None => bail!("no port, and `{scheme}` has no default port"),
            },
        };
        if host.is_empty() || (host.contains('*') && host != "*" && !host.starts_with("*.")) {
            bail!("host must be a name, `*` or `*.domain`");
        }
        Ok(HostPattern {
            scheme: (scheme != "*").then(|| scheme.to_owned()),
            host: host.to_ascii_lowercase(),
            ports,
        })
    }

    fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let host = host.to_ascii_lowercase();
        self.scheme.as_deref().is_none_or(|s| s == scheme)
            && match self.host.strip_prefix('*') {
                Some("") => true,
                Some(suffix) => host.ends_with(suffix),
                None => self.host == host,
            }
            && self
                .ports
                .is_none_or(|(lo, hi)| port.is_some_and(|p| (lo..=hi).contains(&p)))
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// Sends an allowed request to a server on loopback, over HTTP/1.1.
pub async fn send_to_loopback(
    mut request: hyper::Request<HyperOutgoingBody>,
    config: OutgoingRequestConfig,
) -> Result<IncomingResponse, ErrorCode> {
    let refuse = |why: &str| ErrorCode::InternalError(Some(format!("spin-test-host: {why}")));
    if config.use_tls {
        return Err(refuse(
            "outbound HTTPS is not supported; tests use plain HTTP",
        ));
    }
    let uri = request.uri().clone();
    let host = uri.host().ok_or(ErrorCode::HttpRequestUriInvalid)?;
    if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
        return Err(refuse("outbound requests go only to loopback servers"));
    }
    let authority = format!("{host}:{}", uri.port_u16().unwrap_or(80));
    let stream = timeout(config.connect_timeout, TcpStream::connect(&authority))
        .await
        .map_err(|_| ErrorCode::ConnectionTimeout)?
        .map_err(|_| ErrorCode::ConnectionRefused)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(hyper_request_error)?;
    let worker = wasmtime_wasi::runtime::spawn(async move {
        let _ = connection.await;
    });
    if let Ok(value) = http::HeaderValue::from_str(uri.authority().map_or(host, |a| a.as_str())) {
        request.headers_mut().insert(http::header::HOST, value);
    }
    *request.uri_mut() = uri.path_and_query().map_or_else(
        || Uri::from_static("/"),
        |pq| pq.as_str().parse().unwrap_or_default(),
    );
    let response = timeout(config.first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| ErrorCode::ConnectionReadTimeout)?
        .map_err(hyper_request_error)?;
    Ok(IncomingResponse {
        resp: response.map(|body| body.map_err(hyper_request_error).boxed_unsync()),
        worker: Some(worker),
        between_bytes_timeout: config.between_bytes_timeout,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn default_config(use_tls: bool) -> OutgoingRequestConfig {
        OutgoingRequestConfig {
            use_tls,
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(30),
            between_bytes_timeout: Duration::from_secs(30),
        }
    }

    fn allowed(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn check(hosts: &AllowedHosts, url: &str) -> Result<Destination, ErrorCode> {
        hosts.check(&url.parse().unwrap())
    }

    fn denied(result: Result<Destination, ErrorCode>) -> bool {
        matches!(result, Err(ErrorCode::HttpRequestDenied))
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        let none = allowed(&[]);
        for url in [
            "http://127.0.0.1:4222/",
            "http://session-api.spin.internal/api/v1/sessions",
            "https://example.com/",
        ] {
            assert!(denied(check(&none, url)), "{url}");
        }
    }

    #[test]
    fn exact_hosts_match_scheme_host_and_port() {
        let hosts = allowed(&["http://127.0.0.1:4222", "https://api.example.com"]);
        assert_eq!(
            check(&hosts, "http://127.0.0.1:4222/x").ok(),
            Some(Destination::Network)
        );
        assert_eq!(
            check(&hosts, "https://api.example.com/x").ok(),
            Some(Destination::Network)
        );
        assert_eq!(
            check(&hosts, "https://API.example.com:443/").ok(),
            Some(Destination::Network)
        );
        for url in [
            "http://127.0.0.1:4223/",
            "http://127.0.0.1/",
            "https://127.0.0.1:4222/",
            "http://api.example.com/",
            "https://api.example.com:8443/",
            "https://evil.example.com/",
        ] {
            assert!(denied(check(&hosts, url)), "{url}");
        }
    }

    #[test]
    fn wildcards_and_port_ranges() {
        let hosts = allowed(&[
            "https://*.example.com",
            "http://localhost:8000..8002",
            "*://*:9000",
        ]);
        assert!(check(&hosts, "https://a.example.com/").is_ok());
        assert!(denied(check(&hosts, "https://example.com/")));
        assert!(check(&hosts, "http://localhost:8002/").is_ok());
        assert!(denied(check(&hosts, "http://localhost:8003/")));
        assert!(check(&hosts, "http://anything:9000/").is_ok());
        for bad in [
            "127.0.0.1:80",
            "*://x",
            "http://x/path",
            "http://a*b",
            "ftp://x",
        ] {
            assert!(AllowedHosts::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn service_chaining_needs_the_component_host() {
        let hosts = allowed(&["http://secrets.spin.internal"]);
        assert_eq!(
            check(&hosts, "http://secrets.spin.internal/v1/x").ok(),
            Some(Destination::Component("secrets".into()))
        );
        assert!(denied(check(&hosts, "http://session-api.spin.internal/")));
        let any = allowed(&["http://*.spin.internal"]);
        assert_eq!(
            check(&any, "http://session-api.spin.internal/").ok(),
            Some(Destination::Component("session-api".into()))
        );
    }

    fn request(url: &str) -> hyper::Request<HyperOutgoingBody> {
        let body = http_body_util::Empty::new()
            .map_err(|never: std::convert::Infallible| match never {})
            .boxed_unsync();
        hyper::Request::get(url).body(body).unwrap()
    }

    #[test]
    fn allowed_requests_reach_a_loopback_server() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let server = tokio::spawn(async move {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = vec![0; 4096];
                let n = socket.read(&mut buf).await.unwrap();
                socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await
                    .unwrap();
                String::from_utf8_lossy(&buf[..n]).into_owned()
            });
            let url = format!("http://127.0.0.1:{port}/ping?x=1");
            let response = send_to_loopback(request(&url), default_config(false))
                .await
                .unwrap();
            assert_eq!(response.resp.status(), 200);
            let body = response
                .resp
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes();
            assert_eq!(&body[..], b"ok");
            let seen = server.await.unwrap();
            assert!(seen.starts_with("GET /ping?x=1 HTTP/1.1\r\n"), "{seen}");
            assert!(
                seen.to_ascii_lowercase()
                    .contains(&format!("host: 127.0.0.1:{port}"))
            );

            let far = send_to_loopback(request("http://example.com/"), default_config(false)).await;
            assert!(matches!(far, Err(ErrorCode::InternalError(_))));
        });
    }
}
