//! The OpenAPI document (`api/openapi.yaml`, served by the `api-docs`
//! component) against everything it describes: it is valid OpenAPI 3.1, every
//! public route of spin.toml is documented and every documented path is routed
//! by spin.toml to the component it names, and the release wasm answers each
//! documented operation with a documented status and each undocumented method
//! with 405.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use e2e_tests::wasm;
use greentic::http::Request;
use serde_json::Value;
use spin_test_host::manifest::{Manifest, Route};
use spin_test_host::router::Router;
use spin_test_host::workspace_dir;

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch"];

fn document_path() -> PathBuf {
    workspace_dir().join("api/openapi.yaml")
}

fn document() -> Value {
    let yaml = std::fs::read_to_string(document_path()).unwrap();
    serde_saphyr::from_str(&yaml).expect("api/openapi.yaml parses")
}

/// One documented operation, with its path filled from the parameters' examples.
struct Operation {
    method: String,
    template: String,
    path: String,
    component: String,
    spec: Value,
}

impl Operation {
    fn id(&self) -> String {
        format!("{} {}", self.method.to_uppercase(), self.template)
    }

    /// Path-item and operation parameters, `$ref`s resolved.
    fn parameters<'d>(&'d self, document: &'d Value) -> Vec<&'d Value> {
        let item = &document["paths"][&self.template];
        [&item["parameters"], &self.spec["parameters"]]
            .into_iter()
            .filter_map(Value::as_array)
            .flatten()
            .map(|p| resolve(document, p))
            .collect()
    }

    /// A request without any credential: required headers and query
    /// parameters set to their examples, the request body's example.
    fn request_without_credentials(&self, document: &Value) -> Request {
        let mut query = form_urlencoded::Serializer::new(String::new());
        let mut headers = Vec::new();
        for p in self.parameters(document) {
            if p["required"] != true || p["in"] == "path" {
                continue;
            }
            let name = p["name"].as_str().unwrap();
            let example = example_of(p).unwrap_or_else(|| {
                panic!("{}: required parameter {name} has no example", self.id())
            });
            match p["in"].as_str() {
                Some("query") => {
                    query.append_pair(name, &example);
                }
                Some("header") => headers.push((name.to_owned(), example)),
                other => panic!("{}: parameter {name} in {other:?}", self.id()),
            }
        }
        let query = query.finish();
        let target = if query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{query}", self.path)
        };
        let mut req = Request::new(&self.method.to_uppercase(), &target);
        for (name, value) in headers {
            req = req.with_header(&name, value);
        }
        if let Some(content) = self.spec["requestBody"]["content"].as_object() {
            let (content_type, media) = content.iter().next().unwrap();
            let example = media
                .get("example")
                .unwrap_or_else(|| panic!("{}: the request body has no example", self.id()));
            req = req
                .with_header("content-type", content_type.clone())
                .with_body(example.to_string());
        }
        req
    }

    /// Whether the operation needs a credential (`security` not empty).
    fn is_secured(&self) -> bool {
        self.spec["security"]
            .as_array()
            .is_none_or(|requirements| !requirements.is_empty())
    }

    /// The documented response for `status` (exact, then `4XX`-style, then `default`).
    fn response<'d>(&'d self, document: &'d Value, status: u16) -> Option<&'d Value> {
        let responses = &self.spec["responses"];
        [
            status.to_string(),
            format!("{}XX", status / 100),
            "default".into(),
        ]
        .iter()
        .find_map(|key| responses.get(key))
        .map(|r| resolve(document, r))
    }
}

fn example_of(parameter: &Value) -> Option<String> {
    let example = parameter
        .get("example")
        .or_else(|| parameter["schema"].get("example"))?;
    Some(match example {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// Follows a local `$ref` (`#/components/...`), if the value is one.
fn resolve<'d>(document: &'d Value, value: &'d Value) -> &'d Value {
    match value["$ref"].as_str() {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("only local references: {reference}"));
            let target = document
                .pointer(pointer)
                .unwrap_or_else(|| panic!("{reference} does not resolve"));
            resolve(document, target)
        }
        None => value,
    }
}

fn operations(document: &Value) -> Vec<Operation> {
    let mut operations = Vec::new();
    for (template, item) in document["paths"].as_object().expect("paths") {
        let component = item["x-component"]
            .as_str()
            .unwrap_or_else(|| panic!("{template} names no x-component"))
            .to_owned();
        for method in METHODS {
            let Some(spec) = item.get(*method) else {
                continue;
            };
            let mut operation = Operation {
                method: method.to_string(),
                template: template.clone(),
                path: String::new(),
                component: component.clone(),
                spec: spec.clone(),
            };
            operation.path = fill_path(document, &operation);
            operations.push(operation);
        }
    }
    assert!(!operations.is_empty());
    operations
}

/// The template with each `{name}` replaced by that path parameter's example.
fn fill_path(document: &Value, operation: &Operation) -> String {
    let examples: BTreeMap<String, String> = operation
        .parameters(document)
        .into_iter()
        .filter(|p| p["in"] == "path")
        .map(|p| {
            let name = p["name"].as_str().unwrap().to_owned();
            let example = example_of(p).unwrap_or_else(|| {
                panic!("{}: path parameter {name} has no example", operation.id())
            });
            (name, example)
        })
        .collect();
    let mut path = String::new();
    let mut used = BTreeSet::new();
    for segment in operation.template.split('/').skip(1) {
        path.push('/');
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => {
                let example = examples.get(name).unwrap_or_else(|| {
                    panic!(
                        "{}: {{{name}}} is not a declared path parameter",
                        operation.id()
                    )
                });
                path.push_str(example);
                used.insert(name.to_owned());
            }
            None => path.push_str(segment),
        }
    }
    let unused: Vec<_> = examples.keys().filter(|n| !used.contains(*n)).collect();
    assert!(
        unused.is_empty(),
        "{}: path parameters {unused:?} are not in the template",
        operation.id()
    );
    path
}

/// `OPENAPI_SPEC_VALIDATOR`, else `.venv/bin/openapi-spec-validator` in the
/// workspace, else one on `PATH`.
fn validator() -> PathBuf {
    if let Some(p) = std::env::var_os("OPENAPI_SPEC_VALIDATOR") {
        return PathBuf::from(p);
    }
    let venv = workspace_dir().join(".venv/bin/openapi-spec-validator");
    if venv.is_file() {
        return venv;
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("openapi-spec-validator"))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "openapi-spec-validator not found. Install it from PyPI in the workspace root:\n    \
                 python3 -m venv .venv && .venv/bin/pip install openapi-spec-validator\n\
                 or set OPENAPI_SPEC_VALIDATOR."
            )
        })
}

#[test]
fn the_document_is_valid_openapi_3_1() {
    let document = document();
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3.1."),
        "OpenAPI 3.1"
    );
    let output = Command::new(validator())
        .arg(document_path())
        .output()
        .expect("openapi-spec-validator runs");
    assert!(
        output.status.success(),
        "api/openapi.yaml is not valid OpenAPI:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn operation_ids_are_unique_and_errors_are_problems() {
    let document = document();
    let mut ids = BTreeSet::new();
    for operation in operations(&document) {
        let id = operation.spec["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{} has no operationId", operation.id()));
        assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        for (status, response) in operation.spec["responses"].as_object().unwrap() {
            let response = resolve(&document, response);
            if status.starts_with('4') || status.starts_with('5') {
                assert!(
                    response["content"]
                        .get("application/problem+json")
                        .is_some(),
                    "{} {status}: errors are application/problem+json",
                    operation.id()
                );
            }
        }
    }
}

#[test]
fn every_public_route_is_documented_and_every_path_reaches_its_component() {
    let document = document();
    let manifest = Manifest::of_workspace();
    let router = Router::new(&manifest).unwrap();
    let mut documented_routes = BTreeSet::new();
    for operation in operations(&document) {
        let routed = router
            .route(&operation.path)
            .unwrap_or_else(|| panic!("{}: no route of spin.toml serves it", operation.id()));
        assert_eq!(
            routed.component,
            operation.component,
            "{}: spin.toml routes it to another component",
            operation.id()
        );
        documented_routes.insert(routed.raw_route);
    }
    let public_routes: BTreeSet<String> = manifest
        .http_triggers()
        .iter()
        .filter_map(|t| match &t.route {
            Route::Path(route) => Some(route.clone()),
            Route::Private { .. } => None,
        })
        .collect();
    let undocumented: Vec<_> = public_routes.difference(&documented_routes).collect();
    assert!(
        undocumented.is_empty(),
        "public routes no documented operation uses: {undocumented:?}"
    );
}

/// The application as deployed: the bridge's delivery token set, so the
/// delivery routes check credentials rather than answer 503 not-configured,
/// and the demo's tenants applied, so their channels exist.
fn deployed_app() -> spin_test_host::SpinApp {
    wasm::start(wasm::builder().variable(
        greentic::messaging::bridge::VAR_DELIVERY_TOKEN,
        greentic::testing::TEST_DELIVERY_TOKEN,
    ))
}

/// Every secured operation, sent its examples without a credential, is 401
/// (so the path, parameters and body reach the credential check); every
/// open one succeeds; and the status and content type are documented.
#[test]
fn each_operation_answers_a_request_without_credentials_as_documented() {
    let document = document();
    let app = deployed_app();
    for operation in operations(&document) {
        let response = app.send(operation.request_without_credentials(&document));
        if operation.is_secured() {
            assert_eq!(
                response.status,
                401,
                "{}: {}",
                operation.id(),
                String::from_utf8_lossy(&response.body)
            );
        } else {
            assert!(
                (200..300).contains(&response.status),
                "{}: {}",
                operation.id(),
                response.status
            );
        }
        let documented = operation
            .response(&document, response.status)
            .unwrap_or_else(|| {
                panic!(
                    "{}: answered {} ({}), which is not documented",
                    operation.id(),
                    response.status,
                    String::from_utf8_lossy(&response.body)
                )
            });
        let content_type = response
            .header("content-type")
            .map(|c| c.split(';').next().unwrap().trim().to_owned());
        if let Some(content) = documented["content"].as_object() {
            let content_type = content_type.unwrap_or_else(|| {
                panic!(
                    "{}: {} without a content type",
                    operation.id(),
                    response.status
                )
            });
            assert!(
                content.contains_key(&content_type),
                "{}: {} is {content_type}, documented {:?}",
                operation.id(),
                response.status,
                content.keys().collect::<Vec<_>>()
            );
        }
    }
    assert!(app.failures().is_empty(), "{:?}", app.failures());
}

#[test]
fn undocumented_methods_are_405_and_allow_the_documented_ones() {
    let document = document();
    let app = deployed_app();
    let mut by_path: BTreeMap<String, Vec<Operation>> = BTreeMap::new();
    for operation in operations(&document) {
        by_path
            .entry(operation.template.clone())
            .or_default()
            .push(operation);
    }
    for (template, operations) in by_path {
        let documented: BTreeSet<String> =
            operations.iter().map(|o| o.method.to_uppercase()).collect();
        let first = &operations[0];
        for method in METHODS.iter().map(|m| m.to_uppercase()) {
            if documented.contains(&method) {
                continue;
            }
            let mut req = first.request_without_credentials(&document);
            req.method = method.clone();
            let response = app.send(req);
            assert_eq!(
                response.status,
                405,
                "{method} {template}: {}",
                String::from_utf8_lossy(&response.body)
            );
            let allowed: BTreeSet<String> = response
                .header("allow")
                .unwrap_or_default()
                .split(',')
                .map(|m| m.trim().to_owned())
                .collect();
            assert_eq!(allowed, documented, "{method} {template}: Allow");
        }
    }
}

#[test]
fn the_app_serves_the_document_it_was_built_from() {
    let app = wasm::app();
    let json = app.send(Request::new("GET", "/api/openapi.json"));
    assert_eq!(json.status, 200);
    assert_eq!(json.json_body(), document());
    let yaml = app.send(Request::new("GET", "/api/openapi.yaml"));
    assert_eq!(yaml.status, 200);
    assert_eq!(
        yaml.body,
        std::fs::read(document_path()).unwrap(),
        "the YAML is served as written"
    );
}
