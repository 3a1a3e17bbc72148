//! The template language of flow messages (minijinja), set up once: flow
//! validation checks a template's syntax with the same environment the engine
//! renders it with, so what validates is what runs. Neither [`super::flow`]
//! nor [`super::engine`] needs the other for it.

use minijinja::Environment;

/// Checks a template's syntax (at validation time), without rendering it.
pub fn check_template(template: &str) -> Result<(), String> {
    environment()
        .template_from_str(template)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The environment every template is checked and rendered in.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // An unset state value renders as empty rather than failing the turn, but
    // calling or indexing into something undefined is still an error.
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
    env
}
