//! Finds the path under which the user's crate reaches `session_core`.

use proc_macro2::TokenStream;
use proc_macro_crate::{crate_name, FoundCrate};
use quote::quote;
use syn::{Ident, Path};

/// Returns the absolute path to `session_core` for the generated code.
///
/// The first match wins:
///
/// 1. the `#[session(crate = "...")]` override;
/// 2. the `session_core` module re-exported by `session-axum`, when the
///    user's Cargo.toml depends on `session-axum` (under any rename);
/// 3. `session-core` under the name the user's Cargo.toml gives it;
/// 4. `::session_core`, when neither is listed or Cargo.toml cannot be read.
///
/// Inside the session-axum package, the library, its examples and its
/// doctests all see `FoundCrate::Itself`. The path is `::session_axum` for all
/// of them, so the library needs `extern crate self as session_axum;` before
/// it derives `Session` in its own code.
pub(crate) fn session_core_path(overridden: Option<&Path>) -> TokenStream {
    if let Some(path) = overridden {
        return quote!(#path);
    }

    match crate_name("session-axum") {
        Ok(FoundCrate::Itself) => return quote!(::session_axum::session_core),
        Ok(FoundCrate::Name(name)) => {
            if let Some(name) = crate_ident(&name) {
                return quote!(::#name::session_core);
            }
        }
        Err(_) => {}
    }

    match crate_name("session-core") {
        Ok(FoundCrate::Name(name)) => match crate_ident(&name) {
            Some(name) => quote!(::#name),
            None => quote!(::session_core),
        },
        Ok(FoundCrate::Itself) | Err(_) => quote!(::session_core),
    }
}

/// Parses a dependency name from Cargo.toml as an identifier. A name that is
/// not one (Cargo rejects most of them) falls back to the default path.
fn crate_ident(name: &str) -> Option<Ident> {
    syn::parse_str::<Ident>(name).ok()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::{env, fs};

    use super::session_core_path;

    /// Builds a package manifest whose `[dependencies]` table is `dependencies`.
    fn manifest(package: &str, dependencies: &str) -> String {
        format!(
            "[package]\nname = \"{package}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [dependencies]\n{dependencies}\n"
        )
    }

    // One test walks all manifests because `crate_name` reads the
    // process-wide CARGO_MANIFEST_DIR, which parallel tests would race on.
    #[test]
    fn default_path_follows_manifest() {
        let cases = [
            (
                "depends-on-axum",
                manifest("app", "session-axum = \"0.1\"\nsession-core = \"0.1\""),
                ":: session_axum :: session_core",
            ),
            (
                "renamed-axum",
                manifest(
                    "app",
                    "web-sessions = { package = \"session-axum\", version = \"0.1\" }",
                ),
                ":: web_sessions :: session_core",
            ),
            (
                "is-axum",
                manifest("session-axum", "session-core = \"0.1\""),
                ":: session_axum :: session_core",
            ),
            (
                "depends-on-core",
                manifest("app", "session-core = \"0.1\""),
                ":: session_core",
            ),
            (
                "renamed-core",
                manifest(
                    "app",
                    "core-sessions = { package = \"session-core\", version = \"0.1\" }",
                ),
                ":: core_sessions",
            ),
            ("depends-on-neither", manifest("app", ""), ":: session_core"),
        ];

        let root = env::temp_dir().join(format!("session-derive-core-path-{}", std::process::id()));
        let original = env::var_os("CARGO_MANIFEST_DIR");

        let mut results = Vec::new();
        for (name, contents, _) in &cases {
            let dir: PathBuf = root.join(name);
            fs::create_dir_all(dir.join("src")).expect("create temporary package");
            fs::write(dir.join("Cargo.toml"), contents).expect("write temporary manifest");
            fs::write(dir.join("src/lib.rs"), "").expect("write temporary lib.rs");

            env::set_var("CARGO_MANIFEST_DIR", &dir);
            results.push(session_core_path(None).to_string());
        }

        match original {
            Some(value) => env::set_var("CARGO_MANIFEST_DIR", value),
            None => env::remove_var("CARGO_MANIFEST_DIR"),
        }
        fs::remove_dir_all(&root).expect("remove temporary packages");

        for ((name, _, expected), actual) in cases.iter().zip(&results) {
            assert_eq!(actual, expected, "manifest {name}");
        }
    }

    #[test]
    fn override_path_wins() {
        let path: syn::Path = syn::parse_quote!(crate::reexports::sessions);

        assert_eq!(
            session_core_path(Some(&path)).to_string(),
            "crate :: reexports :: sessions"
        );
    }
}
