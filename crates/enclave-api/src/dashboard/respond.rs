//! The responses every page shares: a rendered page, a redirect with cookies, the refusals.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::Markup;

use super::layout;

pub(super) fn page(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

pub(super) fn see_other(to: &str, cookies: &[HeaderValue]) -> Response {
    with_cookies(Redirect::to(to).into_response(), cookies.iter().cloned())
}

pub(super) fn with_cookies(
    mut resp: Response,
    cookies: impl IntoIterator<Item = HeaderValue>,
) -> Response {
    for c in cookies {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

/// A form posted without the token this browser was given is refused, changing nothing.
pub(super) fn forged() -> Response {
    page(
        StatusCode::FORBIDDEN,
        layout::refused("This form was not sent from this dashboard (its CSRF token is missing or wrong). Reload the page and try again."),
    )
}

pub(super) fn not_found() -> Response {
    page(StatusCode::NOT_FOUND, layout::refused("No such page."))
}
