//! What `spin build` checks for `application.targets`, offline: whether a
//! component can run in a Spin release, judged by the world that release's
//! HTTP trigger gives a component (e.g. `spin:up/http-trigger@3.2.0`). The
//! component is made from the wasip1 module as this harness makes it, with
//! its wasmtime's WASI adapter (Spin uses the adapter of its own wasmtime;
//! the imports it adds are WASI's own, which every world here provides).
//!
//! The check is the one a runtime linker makes: every interface the component
//! imports is one the world provides (matched by semver-compatible name, as
//! wasmtime matches `@0.2.6` with `@0.2.0`) with every function the
//! component calls; every interface the world expects exported is exported
//! with all its functions. Type-only differences between minor versions (an
//! alias a later WIT added) do not stop a linker, so they are not counted.
//!
//! The worlds come from WIT on disk: spin-sdk vendors the `spin:up` worlds of
//! the Spin releases it supports (see [`spin_sdk_wit_dir`]), so no registry is
//! needed, unlike `spin build`, which downloads environment definitions.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use wit_parser::decoding::DecodedWasm;
use wit_parser::{InterfaceId, Resolve, WorldId, WorldItem, WorldKey};

/// A world a Spin release's HTTP trigger gives a component.
pub struct HostWorld {
    resolve: Resolve,
    world: WorldId,
}

impl HostWorld {
    /// `world` (a world id such as `spin:up/http-trigger@3.2.0`) of the WIT
    /// package at `wit_dir` and its `deps/`.
    pub fn load(wit_dir: &Path, world: &str) -> anyhow::Result<Self> {
        let mut resolve = Resolve::default();
        let (package, _) = resolve
            .push_dir(wit_dir)
            .with_context(|| format!("cannot read the WIT at {}", wit_dir.display()))?;
        let world = resolve.select_world(&[package], Some(world))?;
        Ok(HostWorld { resolve, world })
    }

    /// Whether `component` can run here. The error lists every misfit.
    pub fn fits(&self, component: &GuestWorld) -> anyhow::Result<()> {
        let (target, target_world) = (&self.resolve, &self.resolve.worlds[self.world]);
        let (have, have_world) = (
            &component.resolve,
            &component.resolve.worlds[component.world],
        );
        let mut misfits = Vec::new();
        for (key, item) in &have_world.imports {
            let Some(id) = interface(item) else {
                misfits.push(format!(
                    "imports `{}`, which is not an interface",
                    have.name_world_key(key)
                ));
                continue;
            };
            let name = have.id_of(id).unwrap_or_default();
            match compatible(target, &target_world.imports, have, id) {
                None => misfits.push(format!("imports `{name}`, which the host does not provide")),
                Some(provided) => {
                    for function in have.interfaces[id].functions.keys() {
                        if !target.interfaces[provided].functions.contains_key(function) {
                            misfits
                                .push(format!("calls `{name}#{function}`, which the host lacks"));
                        }
                    }
                }
            }
        }
        for (key, item) in &target_world.exports {
            let Some(expected) = interface(item) else {
                continue;
            };
            let name = target.name_world_key(key);
            match compatible(have, &have_world.exports, target, expected) {
                None => misfits.push(format!("does not export `{name}`")),
                Some(exported) => {
                    for function in target.interfaces[expected].functions.keys() {
                        if !have.interfaces[exported].functions.contains_key(function) {
                            misfits.push(format!("does not export `{name}#{function}`"));
                        }
                    }
                }
            }
        }
        if misfits.is_empty() {
            Ok(())
        } else {
            bail!("{}", misfits.join("; "))
        }
    }
}

/// What a component imports and exports, read from the component Spin makes
/// of a wasip1 module.
pub struct GuestWorld {
    resolve: Resolve,
    world: WorldId,
}

impl GuestWorld {
    pub fn of_module(module: &[u8]) -> anyhow::Result<Self> {
        let component = crate::compile::componentize(module)?;
        match wit_parser::decoding::decode(&component)? {
            DecodedWasm::Component(resolve, world) => Ok(GuestWorld { resolve, world }),
            DecodedWasm::WitPackage(..) => bail!("not a component"),
        }
    }
}

fn interface(item: &WorldItem) -> Option<InterfaceId> {
    match item {
        WorldItem::Interface { id, .. } => Some(*id),
        _ => None,
    }
}

/// The interface among `items` (of `resolve`) that a linker would use for
/// `wanted` (of `from`): same namespace, package and name, and a version of
/// the same semver line (for 0.x, the same minor); the newest such.
fn compatible(
    resolve: &Resolve,
    items: &indexmap::IndexMap<WorldKey, WorldItem>,
    from: &Resolve,
    wanted: InterfaceId,
) -> Option<InterfaceId> {
    let wanted_iface = &from.interfaces[wanted];
    let wanted_pkg = &from.packages[wanted_iface.package?].name;
    items
        .values()
        .filter_map(interface)
        .filter_map(|id| {
            let iface = &resolve.interfaces[id];
            let pkg = &resolve.packages[iface.package?].name;
            (iface.name == wanted_iface.name
                && pkg.namespace == wanted_pkg.namespace
                && pkg.name == wanted_pkg.name
                && same_line(pkg.version.as_ref(), wanted_pkg.version.as_ref()))
            .then_some((pkg.version.clone(), id))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, id)| id)
}

fn same_line(a: Option<&semver::Version>, b: Option<&semver::Version>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) if a.major == 0 && b.major == 0 => {
            a.minor == b.minor
                && a.pre.is_empty() == b.pre.is_empty()
                && (a.pre.is_empty() || a == b)
        }
        (Some(a), Some(b)) => a.major == b.major && a.pre.is_empty() && b.pre.is_empty(),
        _ => false,
    }
}

/// The `wit/` folder of the spin-sdk crate this workspace builds with: the
/// version Cargo.lock pins, in the registry sources Cargo unpacked to build
/// the components (scripts/build-components runs first).
///
/// Not `cargo metadata`: it needs every package of every platform in the
/// lock file, which a machine that only built for Linux and wasm32 lacks.
pub fn spin_sdk_wit_dir() -> anyhow::Result<PathBuf> {
    let lock = std::fs::read_to_string(crate::workspace_dir().join("Cargo.lock"))
        .context("reading Cargo.lock")?;
    let lock: toml::Table = lock.parse().context("parsing Cargo.lock")?;
    let version = lock["package"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"].as_str() == Some("spin-sdk"))
        .and_then(|p| p["version"].as_str())
        .ok_or_else(|| anyhow!("spin-sdk is not in Cargo.lock"))?;
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .ok_or_else(|| anyhow!("neither CARGO_HOME nor HOME is set"))?;
    let sources = cargo_home.join("registry/src");
    let found = std::fs::read_dir(&sources)
        .with_context(|| format!("reading {}", sources.display()))?
        .filter_map(Result::ok)
        .map(|registry| registry.path().join(format!("spin-sdk-{version}/wit")))
        .find(|wit| wit.is_dir());
    found.ok_or_else(|| {
        anyhow!(
            "spin-sdk {version} is not unpacked under {}: run scripts/build-components first",
            sources.display()
        )
    })
}
