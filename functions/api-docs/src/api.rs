//! The two documents, embedded at build time: serving them touches no store,
//! variable or other component.

use greentic::ApiError;
use greentic::host::Host;
use greentic::http::{DEFAULT_BODY_LIMIT, Request, Response};
use greentic::service;

pub const COMPONENT: &str = "api-docs";
pub const YAML_ROUTE: &str = "/api/openapi.yaml";
pub const JSON_ROUTE: &str = "/api/openapi.json";

pub const YAML: &str = include_str!("../../../api/openapi.yaml");
pub const JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.json"));

pub fn handle(req: &Request, host: &dyn Host) -> Response {
    service::serve(req, host, COMPONENT, DEFAULT_BODY_LIMIT, |req, _log| {
        let (route, content_type, body) = match req.path.as_str() {
            YAML_ROUTE => (YAML_ROUTE, "application/yaml", YAML),
            JSON_ROUTE => (JSON_ROUTE, "application/json", JSON),
            _ => return ("-", Err(ApiError::NotFound)),
        };
        if req.method != "GET" {
            return (route, Err(ApiError::MethodNotAllowed { allow: "GET" }));
        }
        let document = Response {
            status: 200,
            headers: vec![
                ("content-type".into(), content_type.into()),
                // The same for every caller and every request until a deploy.
                ("cache-control".into(), "public, max-age=300".into()),
            ],
            body: body.as_bytes().to_vec(),
        };
        (route, Ok(document))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use greentic::testing::MemoryHost;

    #[test]
    fn both_forms_are_the_same_document() {
        let host = MemoryHost::new(&[]);
        let yaml = handle(&Request::new("GET", YAML_ROUTE), &host);
        let json = handle(&Request::new("GET", JSON_ROUTE), &host);
        assert_eq!(yaml.status, 200);
        assert_eq!(yaml.header("content-type"), Some("application/yaml"));
        assert_eq!(json.header("content-type"), Some("application/json"));
        let document = json.json_body();
        assert_eq!(document["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        assert!(String::from_utf8(yaml.body).unwrap().contains("openapi:"));
    }

    #[test]
    fn other_methods_and_paths_are_refused() {
        let host = MemoryHost::new(&[]);
        let post = handle(&Request::new("POST", JSON_ROUTE), &host);
        assert_eq!(post.status, 405);
        assert_eq!(post.header("allow"), Some("GET"));
        assert_eq!(
            handle(&Request::new("GET", "/api/openapi"), &host).status,
            404
        );
    }
}
