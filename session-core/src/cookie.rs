//! Rendering the session's `Set-Cookie` headers and finding the session
//! cookie in a request's `Cookie` headers.

use cookie::Cookie;
use time::{Duration, OffsetDateTime};

use crate::config::{CookieOptions, SameSite};

/// Renders a `Set-Cookie` header value carrying `value` with every
/// configured attribute.
///
/// With `max_age`, the cookie is persistent: `Max-Age` in whole seconds and
/// a matching `Expires` in IMF-fixdate. Without it, the cookie lasts for the
/// browser session.
pub fn render_set_cookie(
    options: &CookieOptions,
    value: &str,
    max_age: Option<Duration>,
    now: OffsetDateTime,
) -> String {
    let mut cookie = base(options, value.to_owned());
    if let Some(max_age) = max_age {
        let seconds = Duration::seconds(max_age.whole_seconds().max(0));
        cookie.set_max_age(seconds);
        cookie.set_expires(now + seconds);
    }
    cookie.to_string()
}

/// Renders the removal cookie: empty value, `Max-Age=0`, an `Expires` in
/// the past, and the same name, `Path`, `Domain`, `Secure`, `HttpOnly`,
/// `SameSite` and `Partitioned` as the cookie it removes.
pub fn render_removal_cookie(options: &CookieOptions) -> String {
    let mut cookie = base(options, String::new());
    cookie.set_max_age(Duration::ZERO);
    cookie.set_expires(OffsetDateTime::UNIX_EPOCH);
    cookie.to_string()
}

fn base(options: &CookieOptions, value: String) -> Cookie<'static> {
    let mut cookie = Cookie::new(options.name().to_owned(), value);
    cookie.set_path(options.path().to_owned());
    if let Some(domain) = options.domain() {
        cookie.set_domain(domain.to_owned());
    }
    cookie.set_secure(options.secure());
    cookie.set_http_only(options.http_only());
    cookie.set_same_site(match options.same_site() {
        SameSite::Strict => cookie::SameSite::Strict,
        SameSite::Lax => cookie::SameSite::Lax,
        SameSite::None => cookie::SameSite::None,
    });
    cookie.set_partitioned(options.partitioned());
    cookie
}

/// Returns the values of every cookie named `name` in the given `Cookie`
/// header values, in order.
///
/// Parsing is tolerant: a malformed unrelated pair does not hide the
/// session cookie. Callers try the values in order and keep the first that
/// verifies, so duplicates are resolved the same way every time.
pub fn find_cookie_values<'a>(
    headers: impl IntoIterator<Item = &'a str>,
    name: &str,
) -> Vec<&'a str> {
    let mut values = Vec::new();
    for header in headers {
        for pair in header.split(';') {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            if key.trim() == name {
                values.push(value.trim().trim_matches('"'));
            }
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionConfig;
    use time::macros::datetime;

    const SECRET: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn browser_session_cookie_has_no_lifetime_attributes() {
        let config = SessionConfig::builder().secret(SECRET).build().unwrap();
        let header = render_set_cookie(config.cookie(), "abc", None, OffsetDateTime::UNIX_EPOCH);
        assert_eq!(header, "id=abc; HttpOnly; SameSite=Lax; Secure; Path=/");
    }

    #[test]
    fn persistent_cookie_has_matching_max_age_and_expires() {
        let config = SessionConfig::builder()
            .secret(SECRET)
            .domain("example.test")
            .partitioned(true)
            .build()
            .unwrap();
        let now = datetime!(2030-01-01 0:00 UTC);
        let header = render_set_cookie(config.cookie(), "abc", Some(Duration::days(60)), now);
        assert_eq!(
            header,
            "id=abc; HttpOnly; SameSite=Lax; Partitioned; Secure; Path=/; Domain=example.test; \
             Max-Age=5184000; Expires=Sat, 02 Mar 2030 00:00:00 GMT"
        );
    }

    #[test]
    fn removal_cookie_keeps_every_scope_attribute() {
        let config = SessionConfig::builder()
            .secret(SECRET)
            .domain("example.test")
            .same_site(SameSite::None)
            .build()
            .unwrap();
        assert_eq!(
            render_removal_cookie(config.cookie()),
            "id=; HttpOnly; SameSite=None; Secure; Path=/; Domain=example.test; Max-Age=0; \
             Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        );
    }

    #[test]
    fn cookie_values_are_found_despite_malformed_neighbours() {
        let headers = ["junk; a=1; id=first", "=; ;;id = second ;x"];
        assert_eq!(find_cookie_values(headers, "id"), vec!["first", "second"]);
        assert!(find_cookie_values(["ids=1; xid=2"], "id").is_empty());
    }
}
