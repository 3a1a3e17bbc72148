//! Spin's HTTP routing: which component serves a path, and the `spin-*`
//! headers it sees.
//!
//! Routes are exact (`/a/b`), with `:name` matching one segment, or end in
//! `/...` matching the prefix itself and anything below it. When several match,
//! the most specific wins, compared segment by segment: a literal beats `:name`
//! beats `...`, so the longest prefix wins. Private components
//! (`route = { private = true }`) get no public route: they are reachable only
//! by service chaining, where Spin routes as if the component had `/...`.

use std::collections::BTreeSet;

use anyhow::bail;

use crate::manifest::{Manifest, Route};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// One `route` of the manifest.
#[derive(Debug, Clone)]
pub struct RoutePattern {
    raw: String,
    segments: Vec<Segment>,
    wildcard: bool,
}

/// The outcome of routing a path: the component and what Spin tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    pub component: String,
    /// The route as written in the manifest (`/api/v1/sessions/...`).
    pub raw_route: String,
    /// The part of the path the trailing `...` matched, with its leading `/`.
    pub path_info: String,
    /// `:name` segments, in route order.
    pub params: Vec<(String, String)>,
}

impl RoutePattern {
    pub fn parse(route: &str) -> anyhow::Result<Self> {
        let Some(rest) = route.strip_prefix('/') else {
            bail!("route `{route}` must start with `/`");
        };
        let (rest, wildcard) = match rest.strip_suffix("...") {
            Some(prefix) if prefix.is_empty() || prefix.ends_with('/') => {
                (prefix.trim_end_matches('/'), true)
            }
            _ => (rest, false),
        };
        let segments = split(rest)
            .map(|s| match s.strip_prefix(':') {
                Some(name) => Segment::Param(name.to_owned()),
                None => Segment::Literal(s.to_owned()),
            })
            .collect();
        Ok(RoutePattern {
            raw: route.to_owned(),
            segments,
            wildcard,
        })
    }

    /// `Some((path_info, params))` when `path` (without query) is served by this route.
    fn matches(&self, path: &str) -> Option<(String, Vec<(String, String)>)> {
        let parts: Vec<&str> = split(path.strip_prefix('/')?).collect();
        if parts.len() < self.segments.len()
            || (!self.wildcard && parts.len() > self.segments.len())
        {
            return None;
        }
        let mut params = Vec::new();
        for (segment, part) in self.segments.iter().zip(&parts) {
            match segment {
                Segment::Literal(lit) if lit == part => {}
                Segment::Param(name) => params.push((name.clone(), (*part).to_owned())),
                Segment::Literal(_) => return None,
            }
        }
        let rest = &parts[self.segments.len()..];
        let path_info = rest.iter().map(|p| format!("/{p}")).collect();
        Some((path_info, params))
    }

    /// Orders matching routes: greater is more specific.
    fn specificity(&self) -> Vec<u8> {
        let mut rank: Vec<u8> = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(_) => 3,
                Segment::Param(_) => 2,
            })
            .collect();
        // Where one route ends exactly and another continues with `...`, the
        // exact one is the more specific.
        rank.push(if self.wildcard { 1 } else { 4 });
        rank
    }
}

/// `a/b/c` -> `a`, `b`, `c`; the empty path has no segments.
fn split(path: &str) -> impl Iterator<Item = &str> {
    (!path.is_empty())
        .then(|| path.split('/'))
        .into_iter()
        .flatten()
}

/// The public routes of one application.
#[derive(Debug)]
pub struct Router {
    routes: Vec<(RoutePattern, String)>,
    /// Every component with an HTTP trigger, private ones included.
    triggered: BTreeSet<String>,
}

impl Router {
    pub fn new(manifest: &Manifest) -> anyhow::Result<Self> {
        let mut routes: Vec<(RoutePattern, String)> = Vec::new();
        let mut triggered = BTreeSet::new();
        for trigger in manifest.http_triggers() {
            triggered.insert(trigger.component.clone());
            let Route::Path(route) = &trigger.route else {
                continue;
            };
            if route.starts_with("/.well-known/spin/") {
                bail!("route `{route}` is reserved by Spin");
            }
            let pattern = RoutePattern::parse(route)?;
            if let Some((_, other)) = routes.iter().find(|(p, _)| p.raw == pattern.raw) {
                bail!(
                    "route `{route}` is used by both `{other}` and `{}`",
                    trigger.component
                );
            }
            routes.push((pattern, trigger.component.clone()));
        }
        Ok(Router { routes, triggered })
    }

    /// Whether Spin can dispatch to `component` at all: chaining reaches a
    /// component through its trigger, so one without a trigger is unreachable.
    pub fn has_trigger(&self, component: &str) -> bool {
        self.triggered.contains(component)
    }

    /// The component serving `path` from outside, or `None` (Spin answers 404).
    pub fn route(&self, path: &str) -> Option<RouteMatch> {
        self.routes
            .iter()
            .filter_map(|(pattern, component)| {
                let (path_info, params) = pattern.matches(path)?;
                Some((pattern, component, path_info, params))
            })
            .max_by_key(|(pattern, ..)| pattern.specificity())
            .map(|(pattern, component, path_info, params)| RouteMatch {
                component: component.clone(),
                raw_route: pattern.raw.clone(),
                path_info,
                params,
            })
    }

    /// How Spin routes a chained request (`http://<id>.spin.internal/path`):
    /// straight to the component, as if its route were `/...`.
    pub fn chained(component: &str, path: &str) -> RouteMatch {
        RouteMatch {
            component: component.to_owned(),
            raw_route: "/...".to_owned(),
            path_info: path.to_owned(),
            params: Vec::new(),
        }
    }
}

impl RouteMatch {
    /// The headers Spin adds to the request it hands the component.
    pub fn spin_headers(&self, full_url: &str, client_addr: &str) -> Vec<(String, String)> {
        let component_route = self
            .raw_route
            .strip_suffix("/...")
            .unwrap_or(&self.raw_route);
        let mut headers = vec![
            ("spin-full-url".to_owned(), full_url.to_owned()),
            ("spin-path-info".to_owned(), self.path_info.clone()),
            ("spin-matched-route".to_owned(), self.raw_route.clone()),
            (
                "spin-raw-component-route".to_owned(),
                self.raw_route.clone(),
            ),
            (
                "spin-component-route".to_owned(),
                component_route.to_owned(),
            ),
            ("spin-base-path".to_owned(), "/".to_owned()),
            ("spin-client-addr".to_owned(), client_addr.to_owned()),
        ];
        for (name, value) in &self.params {
            headers.push((format!("spin-path-match-{name}"), value.clone()));
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Router {
        let mut text = String::from("spin_manifest_version = 2\n");
        for (route, component) in routes {
            let route = if *route == "private" {
                "{ private = true }".to_owned()
            } else {
                format!("{route:?}")
            };
            text += &format!("[[trigger.http]]\nroute = {route}\ncomponent = \"{component}\"\n");
        }
        for (_, component) in routes {
            if !text.contains(&format!("[component.{component}]")) {
                text += &format!("[component.{component}]\nsource = \"{component}.wasm\"\n");
            }
        }
        Router::new(&Manifest::parse(&text).unwrap()).unwrap()
    }

    fn served_by(router: &Router, path: &str) -> Option<String> {
        router.route(path).map(|m| m.component)
    }

    #[test]
    fn exact_param_and_wildcard_routes_with_the_most_specific_winning() {
        let r = router(&[
            ("/api/v1/sessions", "list"),
            ("/api/v1/sessions/...", "item"),
            ("/api/...", "api"),
            ("/users/:id", "user"),
            ("/users/me", "me"),
            ("/...", "fallback"),
        ]);
        for (path, component) in [
            ("/api/v1/sessions", "list"),
            ("/api/v1/sessions/abc", "item"),
            ("/api/v1/sessions/abc/def", "item"),
            ("/api/v1/other", "api"),
            ("/api", "api"),
            ("/users/42", "user"),
            ("/users/me", "me"),
            ("/users/42/x", "fallback"),
            ("/", "fallback"),
            ("/api/v1/sessionsx", "api"),
        ] {
            assert_eq!(served_by(&r, path).as_deref(), Some(component), "{path}");
        }
        let without_fallback = router(&[("/api/v1/sessions/...", "item")]);
        for path in ["/", "/api/v1", "/api/v1/sessionsx", "/other"] {
            assert_eq!(served_by(&without_fallback, path), None, "{path}");
        }
        assert_eq!(
            served_by(&without_fallback, "/api/v1/sessions").as_deref(),
            Some("item"),
            "a wildcard route also serves its own prefix"
        );
    }

    #[test]
    fn a_private_component_has_no_public_route() {
        let r = router(&[("private", "secrets"), ("/api/...", "api")]);
        assert_eq!(served_by(&r, "/api/x").as_deref(), Some("api"));
        for path in ["/", "/secrets", "/secrets/x", "/..."] {
            assert_eq!(served_by(&r, path), None, "{path}");
        }
        let only_private = router(&[("private", "secrets")]);
        assert_eq!(served_by(&only_private, "/"), None);
        assert!(
            only_private.has_trigger("secrets"),
            "chaining still reaches it"
        );
        assert!(!only_private.has_trigger("api"));
        assert_eq!(
            Router::chained("secrets", "/v1/x").spin_headers("u", "c")[1],
            ("spin-path-info".to_owned(), "/v1/x".to_owned())
        );
    }

    #[test]
    fn spin_headers_describe_the_match() {
        let r = router(&[("/t/:tenant/items/...", "items")]);
        let m = r.route("/t/acme/items/a/b").unwrap();
        let headers = m.spin_headers(
            "http://127.0.0.1:3000/t/acme/items/a/b?x=1",
            "127.0.0.1:50000",
        );
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("spin-path-info"), Some("/a/b"));
        assert_eq!(get("spin-path-match-tenant"), Some("acme"));
        assert_eq!(get("spin-matched-route"), Some("/t/:tenant/items/..."));
        assert_eq!(get("spin-component-route"), Some("/t/:tenant/items"));
        assert_eq!(get("spin-base-path"), Some("/"));
        assert_eq!(
            get("spin-full-url"),
            Some("http://127.0.0.1:3000/t/acme/items/a/b?x=1")
        );
        assert_eq!(get("spin-client-addr"), Some("127.0.0.1:50000"));
        let exact = router(&[("/a", "a")]).route("/a").unwrap();
        assert_eq!(exact.path_info, "");
    }

    #[test]
    fn duplicate_and_reserved_routes_are_refused() {
        let text = "spin_manifest_version = 2
            [[trigger.http]]
            route = \"/a\"
            component = \"x\"
            [[trigger.http]]
            route = \"/a\"
            component = \"x\"
            [component.x]
            source = \"x.wasm\"";
        assert!(Router::new(&Manifest::parse(text).unwrap()).is_err());
        let reserved = text.replacen("\"/a\"", "\"/.well-known/spin/x\"", 1);
        let err = Router::new(&Manifest::parse(&reserved).unwrap()).unwrap_err();
        assert!(err.to_string().contains("reserved"), "{err}");
    }
}
