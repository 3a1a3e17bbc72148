//! `fermyon:spin/variables@2.0.0`, resolved as `spin up` resolves them.
//!
//! An application variable takes the value given at run time (for `spin up`,
//! `--variable` or `SPIN_VARIABLE_*`; here, the test's override), else its
//! manifest default; a `required` variable with no value stops the application
//! from starting. A component sees only the names in its own
//! `[component.x.variables]`, each a template over application variables
//! (`"{{ name }}"`); asking for any other name is `undefined`.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::bindings::fermyon::spin::variables::{Error, Host};
use crate::manifest::{Component, Manifest};

/// The variables one component can read, already resolved.
#[derive(Debug, Clone, Default)]
pub struct ComponentVariables(Arc<BTreeMap<String, String>>);

/// Every application variable's value, or an error naming the required ones left unset.
pub fn resolve_app(
    manifest: &Manifest,
    overrides: &BTreeMap<String, String>,
) -> anyhow::Result<BTreeMap<String, String>> {
    if let Some(unknown) = overrides
        .keys()
        .find(|k| !manifest.variables.contains_key(*k))
    {
        // Spin would ignore it; a test setting a variable nobody declared has a typo.
        bail!("variable `{unknown}` is set by the test but not declared in [variables]");
    }
    let mut values = BTreeMap::new();
    let mut missing = Vec::new();
    for (name, var) in &manifest.variables {
        check_name(name).with_context(|| format!("[variables] {name}"))?;
        match overrides.get(name).or(var.default.as_ref()) {
            Some(value) => {
                values.insert(name.clone(), value.clone());
            }
            None => missing.push(name.as_str()),
        }
    }
    if !missing.is_empty() {
        bail!("no value for required variable(s): {}", missing.join(", "));
    }
    Ok(values)
}

impl ComponentVariables {
    pub fn resolve(
        id: &str,
        component: &Component,
        app: &BTreeMap<String, String>,
    ) -> anyhow::Result<Self> {
        let mut values = BTreeMap::new();
        for (name, template) in &component.variables {
            check_name(name).with_context(|| format!("[component.{id}.variables] {name}"))?;
            let value = render(template, app)
                .with_context(|| format!("[component.{id}.variables] {name}"))?;
            values.insert(name.clone(), value);
        }
        Ok(ComponentVariables(Arc::new(values)))
    }

    pub fn get(&self, name: &str) -> Result<String, Error> {
        check_name(name).map_err(|e| Error::InvalidName(e.to_string()))?;
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| Error::Undefined(format!("no variable `{name}` for this component")))
    }
}

/// Expands `{{ name }}` (spaces optional) with application variables; other text is kept.
pub fn render(template: &str, app: &BTreeMap<String, String>) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find("}}") else {
            bail!("unterminated `{{{{` in `{template}`");
        };
        let name = rest[start + 2..start + len].trim();
        check_name(name)?;
        match app.get(name) {
            Some(value) => out.push_str(value),
            None => bail!("`{template}` uses `{name}`, which is not an application variable"),
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Spin's variable names: lower-case ASCII letters, digits and single
/// underscores, starting with a letter.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.contains("__")
        && !name.ends_with('_');
    if !valid {
        bail!("invalid variable name `{name}`");
    }
    Ok(())
}

impl Host for ComponentVariables {
    fn get(&mut self, name: String) -> wasmtime::Result<Result<String, Error>> {
        Ok(ComponentVariables::get(self, &name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = r#"
        spin_manifest_version = 2
        [variables]
        secret = { required = true, secret = true }
        issuer = { default = "greentic-dev" }
        empty = { default = "" }
        [component.api]
        source = "api.wasm"
        [component.api.variables]
        secret = "{{ secret }}"
        issuer_url = "https://{{issuer}}/x"
        fixed = "literal"
        [component.other]
        source = "other.wasm"
    "#;

    fn app(overrides: &[(&str, &str)]) -> anyhow::Result<BTreeMap<String, String>> {
        let overrides = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve_app(&Manifest::parse(APP).unwrap(), &overrides)
    }

    fn component(id: &str, values: &BTreeMap<String, String>) -> ComponentVariables {
        let m = Manifest::parse(APP).unwrap();
        ComponentVariables::resolve(id, &m.component[id], values).unwrap()
    }

    #[test]
    fn overrides_beat_defaults_and_templates_expand() {
        let values = app(&[("secret", "s3cret")]).unwrap();
        let api = component("api", &values);
        assert_eq!(api.get("secret").unwrap(), "s3cret");
        assert_eq!(api.get("issuer_url").unwrap(), "https://greentic-dev/x");
        assert_eq!(api.get("fixed").unwrap(), "literal");

        let values = app(&[("secret", "s"), ("issuer", "prod-issuer"), ("empty", "e")]).unwrap();
        assert_eq!(
            component("api", &values).get("issuer_url").unwrap(),
            "https://prod-issuer/x"
        );
        assert_eq!(values["empty"], "e");
    }

    #[test]
    fn a_required_variable_without_value_stops_the_start() {
        let err = app(&[]).unwrap_err().to_string();
        assert!(err.contains("required") && err.contains("secret"), "{err}");
        assert!(app(&[("secret", "")]).is_ok(), "an empty value is a value");
        assert!(app(&[("secret", "s"), ("typo", "x")]).is_err());
    }

    #[test]
    fn a_component_reads_only_what_it_maps() {
        let values = app(&[("secret", "s")]).unwrap();
        let other = component("other", &values);
        assert!(matches!(other.get("secret"), Err(Error::Undefined(_))));
        let api = component("api", &values);
        assert!(
            matches!(api.get("issuer"), Err(Error::Undefined(_))),
            "mapped under another name"
        );
        for bad in ["Secret", "1x", "", "a-b", "a__b", "a_"] {
            assert!(matches!(api.get(bad), Err(Error::InvalidName(_))), "{bad}");
        }
    }

    #[test]
    fn templates_must_name_application_variables() {
        let values = app(&[("secret", "s")]).unwrap();
        assert_eq!(
            render("{{issuer}}-{{ empty }}!", &values).unwrap(),
            "greentic-dev-!"
        );
        assert!(render("{{ nope }}", &values).is_err());
        assert!(render("{{ issuer", &values).is_err());
        assert!(render("{{ Issuer }}", &values).is_err());
    }
}
