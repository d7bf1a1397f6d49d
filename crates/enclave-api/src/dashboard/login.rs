//! Signing in and out: the log-in page, the second factor, log-out.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::Extension;
use maud::{html, Markup};
use serde_json::{json, Value};

use super::api::{Answer, Api};
use super::layout::{alert, layout};
use super::respond::{forged, page, see_other, with_cookies};
use super::session;
use super::signed::{csrf_of, Form};

type Connect = Option<Extension<ConnectInfo<SocketAddr>>>;

fn peer(connect: &Connect) -> Option<SocketAddr> {
    connect.as_ref().map(|c| c.0 .0)
}

pub(super) async fn home(headers: HeaderMap) -> Response {
    match session::cookie(&headers, session::SESSION) {
        Some(_) => see_other("/environments", &[]),
        None => see_other("/login", &[]),
    }
}

pub(super) async fn login_page(headers: HeaderMap) -> Response {
    let (csrf, cookie) = csrf_of(&headers);
    with_cookies(page(StatusCode::OK, login_form(&csrf, "", None)), cookie)
}

/// A signed-in answer of the API (`token`, `refresh_token`): the session's cookies and the way
/// to the environments.
fn signed_in(answer: &Answer, headers: &HeaderMap) -> Response {
    let https = session::over_https(headers);
    let token = answer.body["token"].as_str().unwrap_or_default();
    let refresh = answer.body["refresh_token"].as_str().unwrap_or_default();
    see_other("/environments", &session::signed_in(token, refresh, https))
}

/// A step of signing in (the password, the second factor, an invitation): the form's CSRF
/// token checked, `path` called with the body `request` makes of the form, then the person
/// signed in, asked for their second factor, or shown the form `again` with the API's reason
/// (a page, not a failed load).
async fn sign_in_step(
    api: &Api,
    connect: &Connect,
    headers: &HeaderMap,
    body: &Bytes,
    path: &str,
    request: fn(&Form) -> Value,
    again: fn(&str, &Form, &str) -> Markup,
) -> Response {
    let form = Form::parse(body);
    let csrf = form.first("csrf");
    if !session::csrf_holds(headers, csrf) {
        return forged();
    }
    let answer = api
        .call(
            Method::POST,
            path,
            None,
            Some(&request(&form)),
            peer(connect),
        )
        .await;
    match answer.status {
        StatusCode::OK => signed_in(&answer, headers),
        StatusCode::ACCEPTED => {
            let mfa_token = answer.body["mfa_token"].as_str().unwrap_or_default();
            page(StatusCode::OK, second_factor_form(csrf, mfa_token, None))
        }
        _ => page(StatusCode::OK, again(csrf, &form, &answer.error())),
    }
}

pub(super) async fn login(
    State(api): State<Api>,
    connect: Connect,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = |f: &Form| json!({"email": f.first("email"), "password": f.first("password")});
    let again = |csrf: &str, f: &Form, e: &str| login_form(csrf, f.first("email"), Some(e));
    let path = "/v1/auth/login";
    sign_in_step(&api, &connect, &headers, &body, path, request, again).await
}

pub(super) async fn second_factor(
    State(api): State<Api>,
    connect: Connect,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = |f: &Form| json!({"mfa_token": f.first("mfa_token"), "code": f.first("code")});
    let again =
        |csrf: &str, f: &Form, e: &str| second_factor_form(csrf, f.first("mfa_token"), Some(e));
    let path = "/v1/auth/login/mfa";
    sign_in_step(&api, &connect, &headers, &body, path, request, again).await
}

pub(super) async fn logout(
    State(api): State<Api>,
    connect: Connect,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !session::csrf_holds(&headers, Form::parse(&body).first("csrf")) {
        return forged();
    }
    if let Some(token) = session::cookie(&headers, session::SESSION) {
        // The session ends on the server too; an already expired token changes nothing.
        api.call(
            Method::POST,
            "/v1/auth/logout",
            Some(&token),
            None,
            peer(&connect),
        )
        .await;
    }
    see_other(
        "/login",
        &session::signed_out(session::over_https(&headers)),
    )
}

pub(super) async fn invite_page(headers: HeaderMap) -> Response {
    let (csrf, cookie) = csrf_of(&headers);
    with_cookies(page(StatusCode::OK, invite_form(&csrf, None)), cookie)
}

/// An invitation accepted: the password set (or, for someone who has an account, confirmed)
/// and the person signed in to the organization.
pub(super) async fn accept_invite(
    State(api): State<Api>,
    connect: Connect,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = |f: &Form| {
        let mut body = json!({"token": f.first("token").trim(), "password": f.first("password")});
        if let Some(name) = f.given("name") {
            body["name"] = name.into();
        }
        body
    };
    let again = |csrf: &str, _: &Form, e: &str| invite_form(csrf, Some(e));
    let path = "/v1/auth/accept-invite";
    sign_in_step(&api, &connect, &headers, &body, path, request, again).await
}

fn invite_form(csrf: &str, error: Option<&str>) -> Markup {
    layout(
        "Join",
        None,
        html! {
            form.card method="post" action="/invite" {
                h1 { "Accept an invitation" }
                (alert(error))
                input type="hidden" name="csrf" value=(csrf);
                label for="token" { "Invitation token (filled in from your link)" }
                input #token type="text" name="token" required autocomplete="off" data-from-fragment;
                label for="name" { "Your name" }
                input #name type="text" name="name" autocomplete="name";
                label for="password" { "Password (new, or your current one if you have an account)" }
                input #password type="password" name="password" autocomplete="new-password" required;
                button type="submit" { "Join" }
            }
        },
    )
}

fn login_form(csrf: &str, email: &str, error: Option<&str>) -> Markup {
    layout(
        "Log in",
        None,
        html! {
            form.card method="post" action="/login" {
                h1 { "Log in" }
                (alert(error))
                input type="hidden" name="csrf" value=(csrf);
                label for="email" { "E-mail" }
                input #email type="email" name="email" value=(email) autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                button type="submit" { "Log in" }
            }
        },
    )
}

fn second_factor_form(csrf: &str, mfa_token: &str, error: Option<&str>) -> Markup {
    layout(
        "Second factor",
        None,
        html! {
            form.card method="post" action="/login/mfa" {
                h1 { "Second factor" }
                (alert(error))
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="mfa_token" value=(mfa_token);
                label for="code" { "Code from your authenticator app, or a recovery code" }
                input #code type="text" name="code" inputmode="numeric" autocomplete="one-time-code" required autofocus;
                button type="submit" { "Verify" }
            }
        },
    )
}
