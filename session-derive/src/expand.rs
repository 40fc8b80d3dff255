//! Phase 3: turns the checked model into the `SessionData` impl, the role
//! types and the `is_<role>` methods.
//!
//! All paths are absolute (`::core`, `::std` and the `session_core` path), so
//! the output does not depend on the imports around the struct.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::core_path::session_core_path;
use crate::validate::{Collection, IdentityField, RoleModel, RolesField, SessionModel};

/// Generates all items for one session struct.
pub(crate) fn expand(model: &SessionModel<'_>) -> TokenStream {
    let core = session_core_path(model.crate_path.as_ref());

    let session_data = expand_session_data(model, &core);
    let role_types = model
        .roles
        .iter()
        .map(|role| expand_role_type(model, role, &core));
    let role_methods = expand_role_methods(model, &core);

    quote! {
        #session_data
        #(#role_types)*
        #role_methods
    }
}

fn expand_session_data(model: &SessionModel<'_>, core: &TokenStream) -> TokenStream {
    let ident = model.ident;
    let (impl_generics, type_generics, where_clause) = model.generics.split_for_impl();
    let identity = expand_identity(&model.identity);
    let roles = model.roles_field.as_ref().map(expand_roles);

    quote! {
        #[automatically_derived]
        impl #impl_generics #core::SessionData for #ident #type_generics #where_clause {
            #identity
            #roles
        }
    }
}

fn expand_identity(field: &IdentityField<'_>) -> TokenStream {
    let member = field.ident;
    let inner = field.inner;

    // Spanned at the inner type, so that a type without `ToString` is
    // reported once, at the field, not at the derive.
    let to_string = quote_spanned! {inner.span()=>
        |identity: &#inner| ::std::string::ToString::to_string(identity)
    };

    quote! {
        fn identity(&self) -> ::core::option::Option<::std::string::String> {
            ::core::option::Option::map(
                ::core::option::Option::as_ref(&self.#member),
                #to_string,
            )
        }
    }
}

fn expand_roles(field: &RolesField<'_>) -> TokenStream {
    let member = field.ident;
    let has_role = match field.collection {
        Collection::Vec => quote! {
            ::core::iter::Iterator::any(
                &mut ::core::iter::IntoIterator::into_iter(&self.#member),
                |held| ::std::string::String::as_str(held) == role,
            )
        },
        Collection::Set => quote! {
            self.#member.contains(role)
        },
    };

    quote! {
        fn roles(&self) -> ::std::vec::Vec<&str> {
            ::core::iter::Iterator::collect(::core::iter::Iterator::map(
                ::core::iter::IntoIterator::into_iter(&self.#member),
                ::std::string::String::as_str,
            ))
        }

        fn has_role(&self, role: &str) -> bool {
            #has_role
        }
    }
}

fn expand_role_type(model: &SessionModel<'_>, role: &RoleModel, core: &TokenStream) -> TokenStream {
    let vis = model.vis;
    let ty = &role.ty;
    let name = &role.name;
    let doc = format!(
        "The `{}` role of [`{}`], as a type for role guards such as `RequireRole<{}, {}>`.",
        name.value(),
        model.ident,
        model.ident,
        ty,
    );

    quote! {
        #[doc = #doc]
        #[derive(
            ::core::fmt::Debug,
            ::core::clone::Clone,
            ::core::marker::Copy,
            ::core::cmp::PartialEq,
            ::core::cmp::Eq,
            ::core::hash::Hash,
            ::core::default::Default,
        )]
        #vis struct #ty;

        #[automatically_derived]
        impl #core::Role for #ty {
            const NAME: &'static str = #name;
        }
    }
}

fn expand_role_methods(model: &SessionModel<'_>, core: &TokenStream) -> TokenStream {
    if model.roles.is_empty() {
        return TokenStream::new();
    }

    let ident = model.ident;
    let vis = model.vis;
    let (impl_generics, type_generics, where_clause) = model.generics.split_for_impl();
    let methods = model.roles.iter().map(|role| {
        let ty = &role.ty;
        let method = &role.method;
        let doc = format!(
            "Returns true when the session holds the `{}` role.",
            role.name.value()
        );
        quote! {
            #[doc = #doc]
            #[must_use]
            #vis fn #method(&self) -> bool {
                <Self as #core::SessionData>::has_role(self, <#ty as #core::Role>::NAME)
            }
        }
    });

    quote! {
        impl #impl_generics #ident #type_generics #where_clause {
            #(#methods)*
        }
    }
}
