//! Endpoint tests of the login app written the way an app's own tests
//! would be: a session made with `SessionLayer::test_cookie`, then one
//! request through `Router::oneshot`.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use axum::Router;
use examples::login_app::{router, UserSession, Users};
use http_body_util::BodyExt;
use session_axum::{MemoryStore, SessionConfig, SessionLayer};
use time::macros::datetime;
use tower::ServiceExt;

const SECRET: &[u8; 32] = b"endpoint test secret of 32 bytes";

fn app() -> (Router, SessionLayer<UserSession>) {
    let config = SessionConfig::testing(SECRET).build().unwrap();
    let layer = SessionLayer::new(MemoryStore::default(), config);
    (router(layer.clone(), Users::demo().unwrap()), layer)
}

fn alice() -> UserSession {
    UserSession {
        user_id: Some(1),
        username: "alice".to_owned(),
        email: "alice@example.test".to_owned(),
        roles: vec!["admin".to_owned()],
        logged_in_at: Some(datetime!(2030-01-02 3:04:05 UTC)),
    }
}

fn bob() -> UserSession {
    UserSession {
        user_id: Some(2),
        username: "bob".to_owned(),
        email: "bob@example.test".to_owned(),
        roles: vec!["viewer".to_owned()],
        logged_in_at: Some(datetime!(2030-01-02 3:04:05 UTC)),
    }
}

fn get(path: &str, cookie: header::HeaderValue) -> Request<Body> {
    Request::get(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap()
}

async fn body(response: Response) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn profile_as_alice_shows_her_details() {
    let (app, layer) = app();

    let cookie = layer.test_cookie(alice()).await.unwrap();
    let response = app.oneshot(get("/profile", cookie)).await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get(header::SET_COOKIE).is_none());
    let html = body(response).await;
    assert!(html.contains("<dt>Username</dt><dd>alice</dd>"), "{html}");
    assert!(
        html.contains("<dt>Email</dt><dd>alice@example.test</dd>"),
        "{html}"
    );
    assert!(html.contains("<dt>Roles</dt><dd>admin</dd>"), "{html}");
    assert!(
        html.contains("<dt>Signed in at</dt><dd>2030-01-02T03:04:05Z</dd>"),
        "{html}"
    );
}

#[tokio::test]
async fn admin_as_bob_is_a_forbidden_page() {
    let (app, layer) = app();

    let cookie = layer.test_cookie(bob()).await.unwrap();
    let response = app.oneshot(get("/admin", cookie)).await.unwrap();

    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    let html = body(response).await;
    assert!(html.contains("<h1>Forbidden</h1>"), "{html}");
    assert!(html.contains("Signed in as bob"), "{html}");
}

#[tokio::test]
async fn admin_as_alice_is_allowed() {
    let (app, layer) = app();

    let cookie = layer.test_cookie(alice()).await.unwrap();
    let response = app.oneshot(get("/admin", cookie)).await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let html = body(response).await;
    assert!(html.contains("<h1>Admin</h1>"), "{html}");
    assert!(html.contains("Signed in as alice"), "{html}");
}

#[tokio::test]
async fn session_without_identity_is_sent_to_login() {
    let (app, layer) = app();

    let cookie = layer.test_cookie(UserSession::default()).await.unwrap();
    let response = app.oneshot(get("/admin", cookie)).await.unwrap();

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/login?next=%2Fadmin");
}
