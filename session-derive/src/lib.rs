//! `#[derive(Session)]`: implements `session_core::SessionData` for a typed
//! session struct, and generates one role type per declared role.
//!
//! Most users reach this derive through `session-axum`, which re-exports it.
//!
//! # Example
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use session_core::{Role, SessionData};
//! use session_derive::Session;
//!
//! #[derive(Session, Default, Clone, Serialize, Deserialize)]
//! #[session(role(Admin = "admin"), role(Viewer = "viewer"))]
//! pub struct UserSession {
//!     #[session(identity)]
//!     user_id: Option<i64>,
//!     username: Option<String>,
//!     #[session(roles)]
//!     roles: Vec<String>,
//! }
//!
//! let anonymous = UserSession::default();
//! assert_eq!(anonymous.identity(), None);
//! assert!(!anonymous.is_authenticated());
//!
//! let signed_in = UserSession {
//!     user_id: Some(42),
//!     username: Some("ada".to_owned()),
//!     roles: vec!["admin".to_owned()],
//! };
//! assert_eq!(signed_in.identity(), Some("42".to_owned()));
//! assert!(signed_in.is_admin());
//! assert!(!signed_in.is_viewer());
//! assert_eq!(Admin::NAME, "admin");
//! ```
//!
//! # Attributes
//!
//! On the struct, inside `#[session(...)]`:
//!
//! - `role(Admin = "admin")` declares a role: the type name on the left, the
//!   name stored in the roles field on the right. Repeat `role(...)`, or list
//!   several pairs in one: `role(Admin = "admin", Viewer = "viewer")`.
//! - `crate = "path"` sets the path to `session_core` used by the generated
//!   code. Without it, the derive reads the user's Cargo.toml: with a
//!   `session-axum` dependency the path is `::session_axum::session_core`,
//!   otherwise `::session_core` (renamed dependencies are followed).
//!
//! On a field:
//!
//! - `identity` (exactly one field): an `Option<T>` with `T: ToString`.
//!   `Some` is the signed-in user's identity, `None` is an anonymous session.
//!   An empty string inside `Some` still counts as signed in.
//! - `roles` (at most one field, required when roles are declared): a
//!   `Vec<String>`, `HashSet<String>` or `BTreeSet<String>` of role names.
//!
//! Types are recognised by how they are written, so a type alias for
//! `Option<T>` or `Vec<String>` is rejected: write the type itself.
//!
//! # Generated items
//!
//! For the example above:
//!
//! - `impl SessionData for UserSession`, with `identity()` from `user_id`,
//!   and `roles()` and `has_role()` from `roles`. Without a roles field the
//!   trait's defaults apply: no roles.
//! - For each role, a unit struct with the struct's visibility, such as
//!   `pub struct Admin;`, that implements `Role` with `NAME = "admin"`, for
//!   guards such as `RequireRole<UserSession, Admin>`. It also derives
//!   `Debug`, `Clone`, `Copy`, `PartialEq`, `Eq`, `Hash` and `Default`.
//!   The struct is defined next to the session struct, so two session structs
//!   in one module cannot declare the same role type name.
//! - For each role, an inherent method named `is_` plus the type name in
//!   snake case, such as `is_admin()` or `is_super_admin()` for `SuperAdmin`.
//!
//! The derive does not add `Default`, `Clone`, `Serialize` or `Deserialize`,
//! which `SessionData` requires; derive them as in the example. Generic type
//! parameters are supported, and lifetime parameters are rejected because
//! session data must be `'static`.
//!
//! Misuse is a compile error at the offending token, and all errors of one
//! struct are reported together.

mod core_path;
mod errors;
mod expand;
mod parse;
mod validate;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Implements `SessionData` and generates the declared role types.
/// See the [crate documentation](crate) for the attributes.
#[proc_macro_derive(Session, attributes(session))]
pub fn derive_session(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Runs the three phases: parse, validate, expand.
fn derive(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let mut errors = errors::Errors::default();
    let parsed = parse::parse_input(input, &mut errors);
    let model = parsed.and_then(|parsed| validate::validate(parsed, &mut errors));
    errors.finish(model).map(|model| expand::expand(&model))
}
