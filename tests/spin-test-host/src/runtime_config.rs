//! The runtime config's key-value store labels (`[key_value_store.<label>]`),
//! checked as `spin up --runtime-config-file` checks them: every label a
//! component declares must be defined there, except `default`, which Spin
//! always provides. The harness keeps every store in memory whatever its
//! `type`; only the labels matter here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::manifest::Manifest;

#[derive(Debug, Default, Deserialize)]
struct RuntimeConfig {
    #[serde(default)]
    key_value_store: BTreeMap<String, toml::Value>,
}

/// The labels `path` defines, plus `default`; without a file, `default` only.
pub fn store_labels(path: Option<&Path>) -> anyhow::Result<BTreeSet<String>> {
    let mut labels = BTreeSet::from(["default".to_owned()]);
    if let Some(path) = path {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read runtime config {}", path.display()))?;
        let config: RuntimeConfig =
            toml::from_str(&text).with_context(|| format!("runtime config {}", path.display()))?;
        labels.extend(config.key_value_store.into_keys());
    }
    Ok(labels)
}

/// Spin refuses to start when a component declares a label with no store.
pub fn check_labels(manifest: &Manifest, defined: &BTreeSet<String>) -> anyhow::Result<()> {
    for (id, component) in &manifest.component {
        for label in &component.key_value_stores {
            if !defined.contains(label) {
                bail!(
                    "component `{id}`: unknown key_value_stores label `{label}` \
                     (define [key_value_store.{label}] in the runtime config)"
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_the_file_and_default_is_always_there() {
        let dir = std::env::temp_dir().join(format!("spin-test-host-rc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("runtime-config.toml");
        std::fs::write(
            &file,
            "[key_value_store.sessions]\ntype = \"spin\"\npath = \".spin/s.db\"\n",
        )
        .unwrap();
        let labels = store_labels(Some(&file)).unwrap();
        assert_eq!(
            labels,
            BTreeSet::from(["default".into(), "sessions".into()])
        );
        assert_eq!(
            store_labels(None).unwrap(),
            BTreeSet::from(["default".into()])
        );
        std::fs::remove_dir_all(&dir).unwrap();

        let manifest = Manifest::parse(
            "spin_manifest_version = 2\n[component.a]\nsource = \"a.wasm\"\n\
             key_value_stores = [\"default\", \"sessions\"]\n",
        )
        .unwrap();
        assert!(check_labels(&manifest, &labels).is_ok());
        let err = check_labels(&manifest, &store_labels(None).unwrap()).unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown key_value_stores label `sessions`")
        );
    }
}
