//! The parts of `spin.toml` (manifest v2) that `spin up` acts on for HTTP
//! components. Read with serde, as Spin reads it; what the harness cannot
//! honour (file globs, remote sources) is refused rather than ignored, so a
//! test never passes against a configuration `spin up` would run differently.

use std::collections::BTreeMap;

use anyhow::bail;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Manifest {
    spin_manifest_version: u32,
    /// Application variables: the only names component templates may use.
    #[serde(default)]
    pub variables: BTreeMap<String, Variable>,
    #[serde(default)]
    trigger: Triggers,
    #[serde(default)]
    pub component: BTreeMap<String, Component>,
}

#[derive(Debug, Default, Deserialize)]
struct Triggers {
    #[serde(default)]
    http: Vec<HttpTrigger>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpTrigger {
    pub route: Route,
    pub component: String,
}

/// `route = "/path"` or `route = { private = true }` (reachable only by service chaining).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Route {
    Path(String),
    Private { private: bool },
}

/// `name = { default = "..." }` or `name = { required = true }`, optionally `secret`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    #[serde(default)]
    pub required: bool,
    pub default: Option<String>,
    #[serde(default)]
    pub secret: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Component {
    /// A path relative to the manifest (`target/wasm32-wasip1/release/x.wasm`).
    pub source: String,
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Variable name (as the component asks for it) -> template (`"{{ app_var }}"`).
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Read-only files the component sees (WASI preopens).
    #[serde(default)]
    pub files: Vec<Files>,
    pub build: Option<Build>,
}

/// A `files` entry: a glob of files mounted at `/`, or a directory mounted elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Files {
    Glob(String),
    Mount { source: String, destination: String },
}

#[derive(Debug, Clone, Deserialize)]
pub struct Build {
    command: Commands,
}

/// `command = "..."` or `command = ["...", "..."]`, run in order by `spin build`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Commands {
    One(String),
    Many(Vec<String>),
}

impl Build {
    /// The commands, in the order `spin build` runs them.
    pub fn commands(&self) -> Vec<String> {
        match &self.command {
            Commands::One(command) => vec![command.clone()],
            Commands::Many(commands) => commands.clone(),
        }
    }

    /// The build as one shell line.
    pub fn command_line(&self) -> String {
        self.commands().join(" && ")
    }
}

impl Manifest {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let manifest: Manifest = toml::from_str(text)?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// The workspace's own `spin.toml`, as tests read it to compare other
    /// things (docs, routes, builds) against it. Panics if it is unreadable.
    pub fn of_workspace() -> Self {
        let path = crate::workspace_dir().join("spin.toml");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        Manifest::parse(&text).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()))
    }

    pub fn http_triggers(&self) -> &[HttpTrigger] {
        &self.trigger.http
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.spin_manifest_version != 2 {
            bail!(
                "spin_manifest_version {} is not supported (only 2)",
                self.spin_manifest_version
            );
        }
        for (name, var) in &self.variables {
            match (var.required, &var.default) {
                (true, Some(_)) => {
                    bail!("variable `{name}` cannot be both required and have a default")
                }
                (false, None) => bail!("variable `{name}` must be required or have a default"),
                _ => {}
            }
        }
        for trigger in &self.trigger.http {
            if !self.component.contains_key(&trigger.component) {
                bail!(
                    "trigger {:?} names component `{}`, which is not defined",
                    trigger.route,
                    trigger.component
                );
            }
            if trigger.route == (Route::Private { private: false }) {
                bail!("`route = {{ private = false }}` is not a route; give a path");
            }
        }
        for (id, component) in &self.component {
            for files in &component.files {
                match files {
                    Files::Glob(glob) => bail!(
                        "component `{id}`: files = [\"{glob}\"]: spin-test-host mounts only \
                         {{ source = \"dir\", destination = \"/path\" }} entries"
                    ),
                    Files::Mount { destination, .. } if !destination.starts_with('/') => {
                        bail!(
                            "component `{id}`: files destination `{destination}` must be absolute"
                        )
                    }
                    Files::Mount { .. } => {}
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        spin_manifest_version = 2
        [application]
        name = "t"
        [variables]
        a = { default = "x" }
        [[trigger.http]]
        route = "/a/..."
        component = "one"
        [[trigger.http]]
        route = { private = true }
        component = "two"
        [component.one]
        source = "target/one.wasm"
        key_value_stores = ["default"]
        files = [{ source = "bundle", destination = "/bundle" }]
        [component.one.build]
        command = "make one"
        [component.two]
        source = "target/two.wasm"
        [component.two.build]
        command = ["make bundle", "make two"]
    "#;

    #[test]
    fn reads_triggers_components_and_variables() {
        let m = Manifest::parse(MINIMAL).unwrap();
        let routes: Vec<_> = m.http_triggers().iter().map(|t| &t.route).collect();
        assert_eq!(
            routes,
            [
                &Route::Path("/a/...".into()),
                &Route::Private { private: true }
            ]
        );
        assert_eq!(m.component["one"].key_value_stores, ["default"]);
        assert_eq!(
            m.component["one"].build.as_ref().unwrap().command_line(),
            "make one"
        );
        assert!(m.component["two"].key_value_stores.is_empty());
        assert!(m.component["two"].files.is_empty());
        assert_eq!(
            m.component["two"].build.as_ref().unwrap().command_line(),
            "make bundle && make two"
        );
        assert_eq!(
            m.component["one"].files,
            [Files::Mount {
                source: "bundle".into(),
                destination: "/bundle".into()
            }]
        );
        assert_eq!(m.variables["a"].default.as_deref(), Some("x"));
    }

    #[test]
    fn refuses_what_spin_refuses_or_the_harness_cannot_honour() {
        for (from, to, why) in [
            (
                "a = { default = \"x\" }",
                "a = { default = \"x\", required = true }",
                "both",
            ),
            ("a = { default = \"x\" }", "a = {}", "must be required"),
            (
                "component = \"two\"",
                "component = \"three\"",
                "not defined",
            ),
            ("{ private = true }", "{ private = false }", "not a route"),
            (
                "spin_manifest_version = 2",
                "spin_manifest_version = 1",
                "not supported",
            ),
            (
                "source = \"target/two.wasm\"",
                "source = \"target/two.wasm\"\nfiles = [\"static/**\"]",
                "mounts only",
            ),
            (
                "source = \"target/two.wasm\"",
                "source = \"target/two.wasm\"\nfiles = [{ source = \"b\", destination = \"b\" }]",
                "must be absolute",
            ),
        ] {
            let text = MINIMAL.replace(from, to);
            assert_ne!(text, MINIMAL, "{from} not in the fixture");
            let err = format!("{:#}", Manifest::parse(&text).unwrap_err());
            assert!(err.contains(why), "{to}: {err}");
        }
    }
}
