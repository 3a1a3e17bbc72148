//! The deployment manifests agree with the application they deploy: what a
//! user applies with kubectl is checked here against spin.toml, the runtime
//! config and the bridge's own config parser, so a renamed variable, a store
//! label without a backend or a delivery (or scheduled call) to a route that
//! does not exist fails a test instead of a rollout.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml_documents(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    serde_saphyr::from_multiple::<Value>(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn spin_toml() -> toml::Value {
    toml::from_str(&std::fs::read_to_string(root().join("spin.toml")).unwrap()).unwrap()
}

/// Every route spin.toml serves exactly (no wildcard).
fn exact_routes(manifest: &toml::Value) -> BTreeSet<String> {
    manifest["trigger"]["http"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["route"].as_str())
        .filter(|r| !r.ends_with("/..."))
        .map(str::to_owned)
        .collect()
}

/// The component spin.toml sends `path` to, as Spin picks it: an exact route
/// first, else the longest wildcard (`/prefix/...`) it falls under.
fn component_for(manifest: &toml::Value, path: &str) -> Option<String> {
    let triggers = manifest["trigger"]["http"].as_array().unwrap();
    fn route_of(t: &toml::Value) -> Option<(&str, &str)> {
        Some((t["route"].as_str()?, t["component"].as_str()?))
    }
    let exact = triggers
        .iter()
        .filter_map(route_of)
        .find(|(route, _)| *route == path);
    let wildcard = || {
        triggers
            .iter()
            .filter_map(route_of)
            .filter_map(|(route, component)| {
                let prefix = route.strip_suffix("/...")?;
                let under = path == prefix
                    || path
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('/'));
                under.then_some((prefix.len(), component))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, component)| component)
    };
    exact
        .map(|(_, component)| component)
        .or_else(wildcard)
        .map(str::to_owned)
}

#[test]
fn routes_resolve_like_spin() {
    let manifest: toml::Value = toml::from_str(
        r#"
[[trigger.http]]
route = "/a/..."
component = "wide"
[[trigger.http]]
route = "/a/b/..."
component = "narrow"
[[trigger.http]]
route = "/a/b/c"
component = "exact"
"#,
    )
    .unwrap();
    for (path, component) in [
        ("/a", Some("wide")),
        ("/a/x", Some("wide")),
        ("/a/b", Some("narrow")),
        ("/a/b/x", Some("narrow")),
        ("/a/b/c", Some("exact")),
        ("/ab", None),
        ("/", None),
    ] {
        assert_eq!(
            component_for(&manifest, path).as_deref(),
            component,
            "{path}"
        );
    }
}

#[test]
fn the_spinapp_sets_only_variables_the_app_declares_and_every_secret_it_needs() {
    let manifest = spin_toml();
    let declared = manifest["variables"].as_table().unwrap();
    let docs = yaml_documents("deploy/kubernetes/spinapp.yaml");
    let app = find(&docs, "SpinApp", "greentic");
    assert_eq!(app["apiVersion"], "core.spinkube.dev/v1alpha1");
    assert_eq!(app["spec"]["executor"], "containerd-shim-spin");
    let set: BTreeSet<&str> = app["spec"]["variables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    for name in &set {
        assert!(
            declared.contains_key(*name),
            "the SpinApp sets `{name}`, which spin.toml does not declare"
        );
    }
    // Production must not fall back to development defaults for these.
    for needed in [
        "auth_public_keys",
        "secrets_master_key",
        "bridge_url",
        "bridge_publish_token",
        "bridge_delivery_token",
    ] {
        assert!(set.contains(needed), "the SpinApp does not set `{needed}`");
    }
    assert!(
        !set.contains("auth_hs256_secret"),
        "production uses public keys, not the dev secret"
    );
    // Secret variables come from Kubernetes Secrets, never inline values.
    for v in app["spec"]["variables"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        if declared[name].get("secret").and_then(|s| s.as_bool()) == Some(true) {
            assert!(
                v["valueFrom"]["secretKeyRef"].is_object(),
                "secret `{name}` is inline"
            );
        }
    }
}

#[test]
fn the_runtime_config_secret_backs_every_declared_store_with_redis() {
    let manifest = spin_toml();
    let labels: BTreeSet<String> = manifest["component"]
        .as_table()
        .unwrap()
        .values()
        .flat_map(|c| {
            c.get("key_value_stores")
                .and_then(|s| s.as_array())
                .cloned()
                .unwrap_or_default()
        })
        .map(|l| l.as_str().unwrap().to_owned())
        .collect();
    let docs = yaml_documents("deploy/kubernetes/spinapp.yaml");
    let app = find(&docs, "SpinApp", "greentic");
    let secret_name = app["spec"]["runtimeConfig"]["loadFromSecret"]
        .as_str()
        .unwrap();
    let secret = find(&docs, "Secret", secret_name);
    let config: toml::Value = toml::from_str(
        secret["stringData"]["runtime-config.toml"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let redis = toml::from_str::<toml::Value>(
        &std::fs::read_to_string(root().join("deploy/runtime-config.redis.toml")).unwrap(),
    )
    .unwrap();
    for config in [&config, &redis] {
        let stores = config["key_value_store"].as_table().unwrap();
        let backed: BTreeSet<String> = stores.keys().cloned().collect();
        assert_eq!(backed, labels, "stores backed vs declared");
        for (label, store) in stores {
            assert_eq!(
                store["type"].as_str(),
                Some("redis"),
                "{label} must be shared by replicas"
            );
        }
    }
}

#[test]
fn the_bridge_deployment_is_a_valid_bridge_config_delivering_to_real_routes() {
    let docs = yaml_documents("deploy/kubernetes/bridge.yaml");
    let config_map = find(&docs, "ConfigMap", "greentic-bridge");
    let text = config_map["data"]["bridge.toml"].as_str().unwrap();
    let env = |k: &str| match k {
        "GREENTIC_BRIDGE_PUBLISH_TOKEN" => Some("p".repeat(40)),
        "GREENTIC_BRIDGE_DELIVERY_TOKEN" => Some("d".repeat(40)),
        "GREENTIC_BRIDGE_LISTEN" => Some("0.0.0.0:4280".into()),
        _ => None,
    };
    let config = greentic_bridge::Config::from_toml(text, Path::new("."), env)
        .unwrap_or_else(|e| panic!("bridge.toml in the ConfigMap: {e}"));
    let manifest = spin_toml();
    let routes = exact_routes(&manifest);
    for delivery in &config.deliveries {
        let path = delivery.endpoint.path();
        assert_eq!(
            delivery.endpoint.host_str(),
            Some("greentic.greentic.svc.cluster.local"),
            "delivery {} must go to the SpinApp's service",
            delivery.name
        );
        assert!(
            routes.contains(path),
            "delivery {} goes to {path}, no route of spin.toml",
            delivery.name
        );
    }
    // Scheduled calls too (an internal wildcard route may serve them).
    assert!(
        config.schedules.iter().any(|s| s.name == "retention"),
        "the retention sweep is not scheduled"
    );
    for schedule in &config.schedules {
        let path = schedule.endpoint.path();
        assert_eq!(
            schedule.endpoint.host_str(),
            Some("greentic.greentic.svc.cluster.local"),
            "schedule {} must go to the SpinApp's service",
            schedule.name
        );
        assert!(
            path.starts_with("/internal/"),
            "schedule {} goes to {path}: it carries the delivery token, so an internal route",
            schedule.name
        );
        let component = component_for(&manifest, path);
        assert!(
            component.is_some(),
            "schedule {} goes to {path}, no route of spin.toml",
            schedule.name
        );
        if schedule.name == "retention" {
            assert_eq!(
                component.as_deref(),
                Some("session-api"),
                "the retention sweep is the session API's"
            );
        }
    }
    // Replica i of n: the count in GREENTIC_BRIDGE_REPLICA is the number of
    // pods, and the last pod's index is valid for this configuration.
    let set = find(&docs, "StatefulSet", "greentic-bridge");
    let pods = set["spec"]["replicas"].as_u64().unwrap();
    let env_of = |name: &str| {
        set["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not set"))
            .clone()
    };
    assert_eq!(
        env_of("POD_INDEX")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.labels['apps.kubernetes.io/pod-index']"
    );
    let replica = env_of("GREENTIC_BRIDGE_REPLICA")["value"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(replica, format!("$(POD_INDEX)/{pods}"));
    let last = replica.replace("$(POD_INDEX)", &(pods - 1).to_string());
    let with_replica = |k: &str| match k {
        "GREENTIC_BRIDGE_REPLICA" => Some(last.clone()),
        _ => env(k),
    };
    let config = greentic_bridge::Config::from_toml(text, Path::new("."), with_replica)
        .unwrap_or_else(|e| panic!("bridge.toml as the last pod reads it: {e}"));
    assert_eq!(u64::from(config.replica.count), pods);
    // The tokens the bridge reads are the ones the SpinApp gives the components.
    let deployment = set;
    let env_secrets: BTreeSet<(String, String)> =
        deployment["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| {
                let r = &e["valueFrom"]["secretKeyRef"];
                Some((
                    r["name"].as_str()?.to_owned(),
                    r["key"].as_str()?.to_owned(),
                ))
            })
            .collect();
    let app_docs = yaml_documents("deploy/kubernetes/spinapp.yaml");
    let app = find(&app_docs, "SpinApp", "greentic");
    for var in ["bridge_publish_token", "bridge_delivery_token"] {
        let v = app["spec"]["variables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == var)
            .unwrap();
        let r = &v["valueFrom"]["secretKeyRef"];
        let pair = (
            r["name"].as_str().unwrap().to_owned(),
            r["key"].as_str().unwrap().to_owned(),
        );
        assert!(
            env_secrets.contains(&pair),
            "{var} comes from {pair:?}, which the bridge does not read"
        );
    }
}

#[test]
fn nats_runs_jetstream_on_as_many_nodes_as_the_streams_have_replicas() {
    let docs = yaml_documents("deploy/kubernetes/nats.yaml");
    let set = find(&docs, "StatefulSet", "nats");
    let conf = find(&docs, "ConfigMap", "nats")["data"]["nats.conf"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(conf.contains("jetstream"), "JetStream is off");
    let bridge_docs = yaml_documents("deploy/kubernetes/bridge.yaml");
    let bridge: toml::Value = toml::from_str(
        find(&bridge_docs, "ConfigMap", "greentic-bridge")["data"]["bridge.toml"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let stream_replicas = bridge["streams"]["replicas"].as_integer().unwrap();
    assert_eq!(set["spec"]["replicas"].as_i64(), Some(stream_replicas));
}
