//! Phase 1: reads the `#[session(...)]` attributes and the struct's fields.
//!
//! This phase checks only the attribute syntax. Whether the marked fields
//! have usable types and whether the declarations agree is checked in
//! `validate`.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Attribute, Data, DeriveInput, Expr, ExprLit, Fields, Generics, Ident, Lit, LitStr, Meta, Path,
    Token, Type, Visibility,
};

use crate::errors::Errors;

/// The name of the derive's helper attribute.
const ATTRIBUTE: &str = "session";

/// The example shown in messages about role declarations.
const ROLE_EXAMPLE: &str = "`#[session(role(Admin = \"admin\"))]`";

/// The session struct as written, before validation.
pub(crate) struct SessionStruct<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) vis: &'a Visibility,
    pub(crate) generics: &'a Generics,
    /// The path given with `#[session(crate = "...")]`.
    pub(crate) crate_path: Option<Path>,
    pub(crate) roles: Vec<RoleDeclaration>,
    pub(crate) fields: Vec<SessionField<'a>>,
}

/// One `Type = "name"` pair of a `role(...)` list.
pub(crate) struct RoleDeclaration {
    pub(crate) ty: Ident,
    pub(crate) name: LitStr,
    /// The whole `role(...)` list, for errors about the declaration as such.
    pub(crate) declaration: TokenStream,
}

/// A named field with the markers found in its `#[session(...)]` attributes.
pub(crate) struct SessionField<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) ty: &'a Type,
    /// The span of the `identity` marker, when present.
    pub(crate) identity: Option<Span>,
    /// The span of the `roles` marker, when present.
    pub(crate) roles: Option<Span>,
}

/// Reads the derive input. Returns `None` when the input is not a struct with
/// named fields; every problem found is recorded in `errors`.
pub(crate) fn parse_input<'a>(
    input: &'a DeriveInput,
    errors: &mut Errors,
) -> Option<SessionStruct<'a>> {
    let (crate_path, roles) = parse_struct_attributes(&input.attrs, errors);

    let named = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => named,
            Fields::Unnamed(unnamed) => {
                errors.spanned(unnamed, shape_message("a tuple struct"));
                return None;
            }
            Fields::Unit => {
                errors.spanned(&input.ident, shape_message("a unit struct"));
                return None;
            }
        },
        Data::Enum(data) => {
            errors.spanned(data.enum_token, shape_message("an enum"));
            return None;
        }
        Data::Union(data) => {
            errors.spanned(data.union_token, shape_message("a union"));
            return None;
        }
    };

    let fields = named
        .named
        .iter()
        .filter_map(|field| {
            let ident = field.ident.as_ref()?;
            let (identity, roles) = parse_field_attributes(&field.attrs, errors);
            Some(SessionField {
                ident,
                ty: &field.ty,
                identity,
                roles,
            })
        })
        .collect();

    Some(SessionStruct {
        ident: &input.ident,
        vis: &input.vis,
        generics: &input.generics,
        crate_path,
        roles,
        fields,
    })
}

fn shape_message(found: &str) -> String {
    format!(
        "#[derive(Session)] requires a struct with named fields, but this is {found}; \
         write `struct UserSession {{ #[session(identity)] user_id: Option<i64> }}`"
    )
}

/// Reads `role(...)` and `crate = "..."` from the struct's attributes.
fn parse_struct_attributes(
    attrs: &[Attribute],
    errors: &mut Errors,
) -> (Option<Path>, Vec<RoleDeclaration>) {
    let mut crate_path: Option<Path> = None;
    let mut roles = Vec::new();

    for meta in session_metas(attrs, errors) {
        let key = meta_key(&meta);
        match key.as_deref() {
            Some("role") => parse_role_list(&meta, &mut roles, errors),
            Some("crate") => {
                let Some(path) = parse_crate_path(&meta, errors) else {
                    continue;
                };
                if crate_path.is_some() {
                    errors.spanned(meta.path(), "duplicate `crate` key; give it once");
                    continue;
                }
                crate_path = Some(path);
            }
            Some("roles") if matches!(meta, Meta::List(_)) => errors.spanned(
                meta.path(),
                format!(
                    "roles are declared with `role(...)`, not `roles(...)`; write {ROLE_EXAMPLE}"
                ),
            ),
            Some(marker @ ("identity" | "roles")) => errors.spanned(
                meta.path(),
                format!(
                    "`{marker}` marks a field, not the struct; \
                     move `#[session({marker})]` onto the field"
                ),
            ),
            _ => errors.spanned(
                meta.path(),
                format!(
                    "unknown key `{}` in `#[session(...)]` on the struct; \
                     expected `role(Type = \"name\")` or `crate = \"path\"`",
                    path_text(meta.path())
                ),
            ),
        }
    }

    (crate_path, roles)
}

/// Reads the `identity` and `roles` markers from a field's attributes.
fn parse_field_attributes(
    attrs: &[Attribute],
    errors: &mut Errors,
) -> (Option<Span>, Option<Span>) {
    let mut identity = None;
    let mut roles = None;

    for meta in session_metas(attrs, errors) {
        let key = meta_key(&meta);
        let slot = match key.as_deref() {
            Some("identity") => &mut identity,
            Some("roles") => &mut roles,
            Some("role") => {
                errors.spanned(
                    meta.path(),
                    format!(
                        "roles are declared on the struct, not on a field; \
                         write {ROLE_EXAMPLE} above the struct and mark this field \
                         `#[session(roles)]`"
                    ),
                );
                continue;
            }
            Some("crate") => {
                errors.spanned(
                    meta.path(),
                    "`crate` is set on the struct, not on a field; \
                     move `#[session(crate = \"path\")]` above the struct",
                );
                continue;
            }
            _ => {
                errors.spanned(
                    meta.path(),
                    format!(
                        "unknown key `{}` in `#[session(...)]` on a field; \
                         expected `identity` or `roles`",
                        path_text(meta.path())
                    ),
                );
                continue;
            }
        };

        let marker = meta.path().span();
        let Meta::Path(_) = meta else {
            errors.spanned(
                &meta,
                format!(
                    "`{0}` takes no value; write `#[session({0})]`",
                    key.unwrap_or_default()
                ),
            );
            continue;
        };
        if slot.is_some() {
            errors.at(
                marker,
                format!(
                    "duplicate `{}` on this field; give it once",
                    key.unwrap_or_default()
                ),
            );
            continue;
        }
        *slot = Some(marker);
    }

    (identity, roles)
}

/// Returns the comma-separated items of every `#[session(...)]` attribute.
/// An attribute that does not parse is recorded and skipped.
fn session_metas(attrs: &[Attribute], errors: &mut Errors) -> Vec<Meta> {
    let mut metas = Vec::new();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident(ATTRIBUTE)) {
        match attr.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated) {
            Ok(items) => metas.extend(items),
            Err(error) => errors.push(error),
        }
    }
    metas
}

/// Returns the key of a meta item when it is a single identifier. Keywords
/// such as `crate` are returned as written.
fn meta_key(meta: &Meta) -> Option<String> {
    let path = meta.path();
    if path.leading_colon.is_some() || path.segments.len() != 1 {
        return None;
    }
    Some(path.segments[0].ident.to_string())
}

fn path_text(path: &Path) -> String {
    path.to_token_stream().to_string().replace(' ', "")
}

/// Reads `role(Type = "name", ...)` into `roles`.
fn parse_role_list(meta: &Meta, roles: &mut Vec<RoleDeclaration>, errors: &mut Errors) {
    let Meta::List(list) = meta else {
        errors.spanned(
            meta,
            format!("`role` expects a list of `Type = \"name\"` pairs; write {ROLE_EXAMPLE}"),
        );
        return;
    };

    let pairs = match list.parse_args_with(Punctuated::<RolePair, Token![,]>::parse_terminated) {
        Ok(pairs) => pairs,
        Err(error) => {
            errors.push(error);
            return;
        }
    };
    if pairs.is_empty() {
        errors.spanned(
            list,
            format!("`role()` declares no role; write {ROLE_EXAMPLE}"),
        );
        return;
    }

    let declaration = list.to_token_stream();
    for pair in pairs {
        roles.push(RoleDeclaration {
            ty: pair.ty,
            name: pair.name,
            declaration: declaration.clone(),
        });
    }
}

/// `Admin = "admin"` inside `role(...)`.
struct RolePair {
    ty: Ident,
    name: LitStr,
}

impl Parse for RolePair {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let ty: Ident = input.parse().map_err(|error| {
            syn::Error::new(
                error.span(),
                format!("expected a role type name such as `Admin`, as in {ROLE_EXAMPLE}"),
            )
        })?;
        input.parse::<Token![=]>().map_err(|error| {
            syn::Error::new(
                error.span(),
                format!("expected `=` after the role type name, as in {ROLE_EXAMPLE}"),
            )
        })?;
        let name: LitStr = input.parse().map_err(|error| {
            syn::Error::new(
                error.span(),
                format!("expected the role name as a string literal, as in {ROLE_EXAMPLE}"),
            )
        })?;
        Ok(Self { ty, name })
    }
}

/// Reads `crate = "some::path"`.
fn parse_crate_path(meta: &Meta, errors: &mut Errors) -> Option<Path> {
    const FIX: &str = "write `#[session(crate = \"::session_core\")]` \
                       or the path under which your crate re-exports session_core";

    let Meta::NameValue(name_value) = meta else {
        errors.spanned(meta, format!("`crate` expects a path in a string; {FIX}"));
        return None;
    };
    let Expr::Lit(ExprLit {
        lit: Lit::Str(text),
        ..
    }) = &name_value.value
    else {
        errors.spanned(
            &name_value.value,
            format!("`crate` expects a path in a string; {FIX}"),
        );
        return None;
    };

    match text.parse::<Path>() {
        Ok(path) => Some(path),
        Err(_) => {
            errors.spanned(
                text,
                format!("`{}` is not a valid Rust path; {FIX}", text.value()),
            );
            None
        }
    }
}
