//! HTML pages rendered with minijinja from templates embedded in the binary.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use minijinja::Environment;
use serde::Serialize;

/// The templates, embedded at compile time. Their names end in `.html`, so
/// minijinja's default callback turns HTML auto-escaping on for all of them.
const TEMPLATES: [(&str, &str); 7] = [
    ("base.html", include_str!("templates/base.html")),
    ("index.html", include_str!("templates/index.html")),
    ("login.html", include_str!("templates/login.html")),
    ("profile.html", include_str!("templates/profile.html")),
    ("admin.html", include_str!("templates/admin.html")),
    ("forbidden.html", include_str!("templates/forbidden.html")),
    ("not_found.html", include_str!("templates/not_found.html")),
];

/// The page templates of the login app.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    /// Loads the embedded templates.
    ///
    /// # Panics
    ///
    /// When an embedded template has a syntax error. The templates are
    /// compiled into the binary, so every test that renders a page catches
    /// that before a release.
    pub fn new() -> Self {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            if let Err(error) = env.add_template(name, source) {
                panic!("embedded template {name} is invalid: {error:#}");
            }
        }
        Self { env }
    }

    /// Renders template `name` with `context` into a page with `status`.
    ///
    /// Pages show per-user content, so they are sent with
    /// `Cache-Control: no-store`. A rendering failure is logged and returns a
    /// plain 500.
    pub fn page(&self, status: StatusCode, name: &str, context: impl Serialize) -> Response {
        let rendered = self
            .env
            .get_template(name)
            .and_then(|template| template.render(context));
        match rendered {
            Ok(html) => {
                let mut response = (status, Html(html)).into_response();
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            Err(error) => {
                tracing::error!(template = name, error = %format!("{error:#}"), "page rendering failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "Internal server error").into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn every_embedded_template_renders() {
        let templates = Templates::new();
        for (name, _) in TEMPLATES {
            let response =
                templates.page(StatusCode::OK, name, context! { title => "t", flash => () });
            assert_eq!(response.status(), StatusCode::OK, "{name}");
        }
    }

    #[tokio::test]
    async fn user_text_is_escaped() {
        let templates = Templates::new();
        let response = templates.page(
            StatusCode::NOT_FOUND,
            "not_found.html",
            context! { title => "Not found", path => "/<script>alert('x')</script>", flash => () },
        );
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        let html = body(response).await;
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&#x2f;&lt;script&gt;alert(&#x27;x&#x27;)&lt;&#x2f;script&gt;"),
            "{html}"
        );
    }

    #[tokio::test]
    async fn unknown_template_is_a_plain_500() {
        let response = Templates::new().page(StatusCode::OK, "missing.html", ());
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body(response).await, "Internal server error");
    }
}
