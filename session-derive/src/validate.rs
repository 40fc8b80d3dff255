//! Phase 2: checks the parsed struct and builds the model that `expand`
//! turns into code.
//!
//! Field types are checked by their written form, because a derive cannot
//! resolve types: `Option<i64>` and `std::option::Option<i64>` are accepted,
//! a type alias for either is not.

use std::collections::HashMap;

use syn::ext::IdentExt;
use syn::{
    GenericArgument, GenericParam, Generics, Ident, LitStr, Path, PathArguments, Type, Visibility,
};

use crate::errors::Errors;
use crate::parse::{RoleDeclaration, SessionField, SessionStruct};

/// The checked input of the expansion.
pub(crate) struct SessionModel<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) vis: &'a Visibility,
    pub(crate) generics: &'a Generics,
    pub(crate) crate_path: Option<Path>,
    pub(crate) identity: IdentityField<'a>,
    pub(crate) roles_field: Option<RolesField<'a>>,
    pub(crate) roles: Vec<RoleModel>,
}

/// The `Option<T>` field that contains the signed-in user's identity.
pub(crate) struct IdentityField<'a> {
    pub(crate) ident: &'a Ident,
    /// The `T` of `Option<T>`.
    pub(crate) inner: &'a Type,
}

/// The field that contains the user's role names.
pub(crate) struct RolesField<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) collection: Collection,
}

/// The accepted collections of role names.
#[derive(Clone, Copy)]
pub(crate) enum Collection {
    /// `Vec<String>`: membership is a linear scan.
    Vec,
    /// `HashSet<String>` or `BTreeSet<String>`: membership uses `contains`.
    Set,
}

/// A declared role: the generated unit struct and its `is_<role>` method.
pub(crate) struct RoleModel {
    pub(crate) ty: Ident,
    pub(crate) name: LitStr,
    pub(crate) method: Ident,
}

/// Checks `input` and returns the model, or `None` after recording at least
/// one error in `errors`.
pub(crate) fn validate<'a>(
    input: SessionStruct<'a>,
    errors: &mut Errors,
) -> Option<SessionModel<'a>> {
    let generics_ok = check_generics(input.generics, errors);
    let identity = find_identity(&input, errors);
    let roles_field = find_roles_field(&input.fields, errors);
    let roles = check_roles(&input, errors);

    if !input.roles.is_empty() && matches!(roles_field, FieldLookup::Missing) {
        errors.spanned(
            &input.roles[0].declaration,
            format!(
                "roles are declared but no field is marked `#[session(roles)]`; \
                 add a field such as `#[session(roles)] roles: Vec<String>` to `{}`",
                input.ident
            ),
        );
    }

    let roles_field = match roles_field {
        FieldLookup::Found(field) => Some(field),
        FieldLookup::Missing => None,
        FieldLookup::Invalid => return None,
    };
    if !generics_ok {
        return None;
    }

    Some(SessionModel {
        ident: input.ident,
        vis: input.vis,
        generics: input.generics,
        crate_path: input.crate_path,
        identity: identity?,
        roles_field,
        roles: roles?,
    })
}

/// The outcome of looking for an optional marked field.
enum FieldLookup<T> {
    Found(T),
    Missing,
    /// Found, but an error was recorded.
    Invalid,
}

/// Rejects lifetime parameters. Type and const parameters are kept, and the
/// compiler checks the bounds that `SessionData` needs.
fn check_generics(generics: &Generics, errors: &mut Errors) -> bool {
    let mut ok = true;
    for param in &generics.params {
        if let GenericParam::Lifetime(lifetime) = param {
            errors.spanned(
                lifetime,
                "session data is stored between requests, so it must be `'static`; \
                 remove the lifetime parameter and use owned types such as `String`",
            );
            ok = false;
        }
    }
    ok
}

fn find_identity<'a>(input: &SessionStruct<'a>, errors: &mut Errors) -> Option<IdentityField<'a>> {
    let mut marked = input
        .fields
        .iter()
        .filter_map(|field| Some((field, field.identity?)));

    let Some((first, _)) = marked.next() else {
        errors.spanned(
            input.ident,
            format!(
                "no field of `{}` is marked `#[session(identity)]`; mark the `Option` field \
                 that contains the signed-in user's id, e.g. `#[session(identity)] user_id: Option<i64>`",
                input.ident
            ),
        );
        return None;
    };
    let mut unique = true;
    for (_, marker) in marked {
        errors.at(
            marker,
            format!(
                "only one field can be marked `#[session(identity)]`, and `{}` already is; \
                 remove this marker",
                first.ident
            ),
        );
        unique = false;
    }

    let Some(inner) = option_inner(first.ty) else {
        errors.spanned(
            first.ty,
            "the `#[session(identity)]` field must be an `Option`, where `None` means an \
             anonymous session; wrap the type in `Option`, e.g. `Option<i64>`",
        );
        return None;
    };

    unique.then_some(IdentityField {
        ident: first.ident,
        inner,
    })
}

fn find_roles_field<'a>(
    fields: &[SessionField<'a>],
    errors: &mut Errors,
) -> FieldLookup<RolesField<'a>> {
    let mut marked = fields
        .iter()
        .filter_map(|field| Some((field, field.roles?)));

    let Some((first, _)) = marked.next() else {
        return FieldLookup::Missing;
    };
    let mut unique = true;
    for (_, marker) in marked {
        errors.at(
            marker,
            format!(
                "only one field can be marked `#[session(roles)]`, and `{}` already is; \
                 remove this marker",
                first.ident
            ),
        );
        unique = false;
    }

    let Some(collection) = string_collection(first.ty) else {
        errors.spanned(
            first.ty,
            "the `#[session(roles)]` field must be a collection of role names: \
             write `Vec<String>`, `HashSet<String>` or `BTreeSet<String>`",
        );
        return FieldLookup::Invalid;
    };

    if !unique {
        return FieldLookup::Invalid;
    }
    FieldLookup::Found(RolesField {
        ident: first.ident,
        collection,
    })
}

/// Checks the declared roles for duplicates and builds their models.
fn check_roles(input: &SessionStruct<'_>, errors: &mut Errors) -> Option<Vec<RoleModel>> {
    let mut types: HashMap<String, &Ident> = HashMap::new();
    let mut names: HashMap<String, &Ident> = HashMap::new();
    let mut methods: HashMap<String, &Ident> = HashMap::new();
    let mut models = Vec::new();
    let mut ok = true;

    for RoleDeclaration { ty, name, .. } in &input.roles {
        let type_name = ty.unraw().to_string();
        let role_name = name.value();
        let method_name = format!("is_{}", snake_case(&type_name));

        if let Some(first) = types.get(&type_name) {
            errors.spanned(
                ty,
                format!("role type `{first}` is declared twice; remove one of the declarations"),
            );
            ok = false;
            continue;
        }
        types.insert(type_name.clone(), ty);

        if ty.unraw() == input.ident.unraw() {
            errors.spanned(
                ty,
                format!(
                    "the role type `{ty}` has the name of the session struct; \
                     pick another name such as `{ty}Role`"
                ),
            );
            ok = false;
        }
        if role_name.is_empty() {
            errors.spanned(
                name,
                format!("the name of role `{ty}` is empty; write a name such as \"admin\""),
            );
            ok = false;
        } else if let Some(first) = names.get(&role_name) {
            errors.spanned(
                name,
                format!(
                    "role name \"{role_name}\" is already used by `{first}`; \
                     give each role its own name"
                ),
            );
            ok = false;
        } else {
            names.insert(role_name, ty);
        }
        if let Some(first) = methods.get(&method_name) {
            errors.spanned(
                ty,
                format!(
                    "roles `{first}` and `{ty}` would both generate `{method_name}()`; \
                     rename one of the role types"
                ),
            );
            ok = false;
        } else {
            methods.insert(method_name.clone(), ty);
        }

        models.push(RoleModel {
            ty: ty.clone(),
            name: name.clone(),
            method: Ident::new(&method_name, ty.span()),
        });
    }

    ok.then_some(models)
}

/// Returns `T` when `ty` is written as `Option<T>`.
fn option_inner(ty: &Type) -> Option<&Type> {
    let (ident, arguments) = last_segment(ty)?;
    if ident != "Option" {
        return None;
    }
    match arguments.as_slice() {
        [GenericArgument::Type(inner)] => Some(inner),
        _ => None,
    }
}

/// Returns the collection kind when `ty` is written as `Vec<String>`,
/// `HashSet<String>` (with any hasher) or `BTreeSet<String>`.
fn string_collection(ty: &Type) -> Option<Collection> {
    let (ident, arguments) = last_segment(ty)?;
    let (collection, max_arguments) = match ident.to_string().as_str() {
        "Vec" => (Collection::Vec, 1),
        "BTreeSet" => (Collection::Set, 1),
        "HashSet" => (Collection::Set, 2),
        _ => return None,
    };
    if arguments.is_empty() || arguments.len() > max_arguments {
        return None;
    }
    let GenericArgument::Type(element) = arguments[0] else {
        return None;
    };
    let (element_ident, element_arguments) = last_segment(element)?;
    (element_ident == "String" && element_arguments.is_empty()).then_some(collection)
}

/// Returns the last segment of a path type and its generic arguments.
fn last_segment(ty: &Type) -> Option<(&Ident, Vec<&GenericArgument>)> {
    let Type::Path(path) = ty else {
        return None;
    };
    if path.qself.is_some() {
        return None;
    }
    let segment = path.path.segments.last()?;
    let arguments = match &segment.arguments {
        PathArguments::None => Vec::new(),
        PathArguments::AngleBracketed(bracketed) => bracketed.args.iter().collect(),
        PathArguments::Parenthesized(_) => return None,
    };
    Some((&segment.ident, arguments))
}

/// Converts a type name to snake case: `Admin` to `admin`, `SuperAdmin` to
/// `super_admin`, `HTTPAdmin` to `http_admin`.
pub(crate) fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut snake = String::with_capacity(name.len() + 4);

    for (index, &current) in chars.iter().enumerate() {
        if current.is_uppercase() && index > 0 {
            let previous = chars[index - 1];
            let next_is_lower = chars.get(index + 1).is_some_and(|next| next.is_lowercase());
            let starts_word = previous.is_lowercase()
                || previous.is_ascii_digit()
                || (previous.is_uppercase() && next_is_lower);
            if starts_word && !snake.ends_with('_') {
                snake.push('_');
            }
        }
        snake.extend(current.to_lowercase());
    }

    snake
}

#[cfg(test)]
mod tests {
    use super::snake_case;

    #[test]
    fn snake_case_splits_words() {
        let cases = [
            ("Admin", "admin"),
            ("SuperAdmin", "super_admin"),
            ("HTTPAdmin", "http_admin"),
            ("AdminV2", "admin_v2"),
            ("Level2Admin", "level2_admin"),
            ("Super_Admin", "super_admin"),
            ("A", "a"),
        ];
        for (input, expected) in cases {
            assert_eq!(snake_case(input), expected, "snake_case({input:?})");
        }
    }
}
