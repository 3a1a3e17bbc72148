//! Embeds `api/openapi.yaml` as written and as JSON (`$OUT_DIR/openapi.json`).

use std::path::Path;

fn main() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../api/openapi.yaml");
    println!("cargo::rerun-if-changed={}", source.display());
    let yaml = std::fs::read_to_string(&source)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", source.display()));
    let document: serde_json::Value = serde_saphyr::from_str(&yaml)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", source.display()));
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("openapi.json");
    std::fs::write(&out, serde_json::to_vec(&document).unwrap()).unwrap();
}
