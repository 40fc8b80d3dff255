//! Collects the errors of all phases so that one build reports every misuse.

use std::fmt::Display;

use proc_macro2::Span;
use quote::ToTokens;

/// The errors found so far, combined into one `syn::Error`.
#[derive(Default)]
pub(crate) struct Errors {
    combined: Option<syn::Error>,
}

impl Errors {
    /// Adds `error` to the collected errors.
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.combined {
            Some(combined) => combined.combine(error),
            None => self.combined = Some(error),
        }
    }

    /// Adds an error at `span`.
    pub(crate) fn at(&mut self, span: Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    /// Adds an error that covers all of `tokens`.
    pub(crate) fn spanned(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// Returns `value` when no error was collected, otherwise all errors.
    ///
    /// The phases return `None` only after recording an error, so the last
    /// arm is a bug in this crate, reported as a compile error, not a panic.
    pub(crate) fn finish<T>(self, value: Option<T>) -> syn::Result<T> {
        match (self.combined, value) {
            (Some(errors), _) => Err(errors),
            (None, Some(value)) => Ok(value),
            (None, None) => Err(syn::Error::new(
                Span::call_site(),
                "#[derive(Session)] failed without reporting a reason; \
                 this is a bug in session-derive, please report it",
            )),
        }
    }
}
