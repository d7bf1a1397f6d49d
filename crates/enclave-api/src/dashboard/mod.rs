//! The dashboard at `/`: pages for the people who run an organization, rendered on the
//! server. Each page is a client of the REST API — its handler calls the API's own router in
//! process with the signed-in person's token (`api.rs`) — so the dashboard holds no rule of
//! its own: a button a role may not use is refused by the API whatever the page shows.
//! Browser sessions and CSRF are in `session.rs`, the markup in `pages.rs`.

mod api;
mod pages;
mod session;

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{from_fn, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use maud::Markup;
use serde::Deserialize;
use serde_json::{json, Value};

use api::{Answer, Api};
use enclave_core::id::{EnvId, KeyId};
use pages::{NewSecret, Viewer};

const STYLESHEET: &str = include_str!("dashboard.css");
const ICON: &str = include_str!("favicon.svg");
const SCRIPT: &str = include_str!("dashboard.js");

/// Only the server's own origin: its one script, its styles, forms posted to it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The dashboard's routes, each calling `api` (the whole REST API with its middleware).
pub fn routes(api: Router) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/login/mfa", post(second_factor))
        .route("/logout", post(logout))
        .route("/environments", get(environments))
        .route("/environments/{env_id}", get(environment))
        .route("/environments/{env_id}/keys", post(create_key))
        .route(
            "/environments/{env_id}/keys/{key_id}/rotate",
            post(rotate_key),
        )
        .route(
            "/environments/{env_id}/keys/{key_id}/revoke",
            post(revoke_key),
        )
        .route("/assets/dashboard.js", get(script))
        .route("/assets/dashboard.css", get(stylesheet))
        .route("/assets/favicon.svg", get(icon))
        .layer(from_fn(security_headers))
        .with_state(Api::new(api))
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    resp
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLESHEET,
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

async fn icon() -> Response {
    ([(header::CONTENT_TYPE, "image/svg+xml")], ICON).into_response()
}

fn page(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

fn see_other(to: &str, cookies: &[HeaderValue]) -> Response {
    let mut resp = Redirect::to(to).into_response();
    for c in cookies {
        resp.headers_mut().append(header::SET_COOKIE, c.clone());
    }
    resp
}

/// The browser's CSRF token, and the cookie that sets it when it has none yet.
fn csrf_of(headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match session::cookie(headers, session::CSRF) {
        Some(t) => (t, None),
        None => {
            let t = session::new_csrf();
            let c = session::set(session::CSRF, &t, None, session::over_https(headers));
            (t, Some(c))
        }
    }
}

fn with_cookies(mut resp: Response, cookies: impl IntoIterator<Item = HeaderValue>) -> Response {
    for c in cookies {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

/// A form posted without the token this browser was given is refused, changing nothing.
fn forged() -> Response {
    page(
        StatusCode::FORBIDDEN,
        pages::refused("This form was not sent from this dashboard (its CSRF token is missing or wrong). Reload the page and try again."),
    )
}

async fn home(headers: HeaderMap) -> Response {
    match session::cookie(&headers, session::SESSION) {
        Some(_) => see_other("/environments", &[]),
        None => see_other("/login", &[]),
    }
}

async fn login_page(headers: HeaderMap) -> Response {
    let (csrf, cookie) = csrf_of(&headers);
    with_cookies(page(StatusCode::OK, pages::login(&csrf, "", None)), cookie)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

fn peer(connect: &Option<Extension<ConnectInfo<SocketAddr>>>) -> Option<SocketAddr> {
    connect.as_ref().map(|c| c.0 .0)
}

/// A signed-in answer of the API (`token`, `refresh_token`): the session's cookies and the way
/// to the environments.
fn signed_in(answer: &Answer, headers: &HeaderMap) -> Response {
    let https = session::over_https(headers);
    let token = answer.body["token"].as_str().unwrap_or_default();
    let refresh = answer.body["refresh_token"].as_str().unwrap_or_default();
    see_other("/environments", &session::signed_in(token, refresh, https))
}

async fn login(
    State(api): State<Api>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !session::csrf_holds(&headers, &form.csrf) {
        return forged();
    }
    let body = json!({"email": form.email, "password": form.password});
    let answer = api
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(&body),
            peer(&connect),
        )
        .await;
    match answer.status {
        StatusCode::OK => signed_in(&answer, &headers),
        StatusCode::ACCEPTED => {
            let mfa_token = answer.body["mfa_token"].as_str().unwrap_or_default();
            page(
                StatusCode::OK,
                pages::second_factor(&form.csrf, mfa_token, None),
            )
        }
        // The form again, with the API's reason (a page, not a failed load).
        _ => page(
            StatusCode::OK,
            pages::login(&form.csrf, &form.email, Some(&answer.error())),
        ),
    }
}

#[derive(Deserialize)]
struct SecondFactorForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    mfa_token: String,
    #[serde(default)]
    code: String,
}

async fn second_factor(
    State(api): State<Api>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<SecondFactorForm>,
) -> Response {
    if !session::csrf_holds(&headers, &form.csrf) {
        return forged();
    }
    let body = json!({"mfa_token": form.mfa_token, "code": form.code});
    let answer = api
        .call(
            Method::POST,
            "/v1/auth/login/mfa",
            None,
            Some(&body),
            peer(&connect),
        )
        .await;
    match answer.ok() {
        true => signed_in(&answer, &headers),
        false => page(
            StatusCode::OK,
            pages::second_factor(&form.csrf, &form.mfa_token, Some(&answer.error())),
        ),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(api): State<Api>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !session::csrf_holds(&headers, &form.csrf) {
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

/// The person a page is for: their token (renewed with the refresh cookie when it has
/// expired), or the way to the log-in page.
struct Signed {
    token: String,
    /// New session cookies, when the token was renewed.
    renewed: Vec<HeaderValue>,
    csrf: String,
    csrf_cookie: Option<HeaderValue>,
    peer: Option<SocketAddr>,
}

impl Signed {
    async fn of(
        api: &Api,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<(Signed, Value), Response> {
        let (csrf, csrf_cookie) = csrf_of(headers);
        let to_login = || see_other("/login", &session::signed_out(session::over_https(headers)));
        let Some(token) = session::cookie(headers, session::SESSION) else {
            return Err(to_login());
        };
        let mut signed = Signed {
            token,
            renewed: vec![],
            csrf,
            csrf_cookie,
            peer,
        };
        let me = api
            .call(Method::GET, "/v1/auth/me", Some(&signed.token), None, peer)
            .await;
        if me.ok() {
            return Ok((signed, me.body));
        }
        // An expired access token: the refresh token renews the session once.
        let Some(refresh) = session::cookie(headers, session::REFRESH) else {
            return Err(to_login());
        };
        let body = json!({"refresh_token": refresh});
        let renewed = api
            .call(Method::POST, "/v1/auth/refresh", None, Some(&body), peer)
            .await;
        if !renewed.ok() {
            return Err(to_login());
        }
        signed.token = renewed.body["token"].as_str().unwrap_or_default().into();
        let refresh = renewed.body["refresh_token"].as_str().unwrap_or_default();
        signed.renewed =
            session::signed_in(&signed.token, refresh, session::over_https(headers)).to_vec();
        let me = api
            .call(Method::GET, "/v1/auth/me", Some(&signed.token), None, peer)
            .await;
        match me.ok() {
            true => Ok((signed, me.body)),
            false => Err(to_login()),
        }
    }

    async fn get(&self, api: &Api, path: &str) -> Answer {
        api.call(Method::GET, path, Some(&self.token), None, self.peer)
            .await
    }

    async fn send(&self, api: &Api, method: Method, path: &str, body: Option<&Value>) -> Answer {
        api.call(method, path, Some(&self.token), body, self.peer)
            .await
    }

    fn viewer(&self, me: &Value) -> Viewer {
        Viewer {
            email: me["user"]["email"].as_str().unwrap_or_default().into(),
            role: me["org"]["role"].as_str().unwrap_or_default().into(),
            csrf: self.csrf.clone(),
        }
    }

    fn respond(self, resp: Response) -> Response {
        with_cookies(resp, self.renewed.into_iter().chain(self.csrf_cookie))
    }
}

#[derive(Deserialize)]
struct ListQuery {
    cursor: Option<String>,
}

async fn environments(
    State(api): State<Api>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let (signed, me) = match Signed::of(&api, &headers, peer(&connect)).await {
        Ok(x) => x,
        Err(to_login) => return to_login,
    };
    let viewer = signed.viewer(&me);
    let org = me["org"]["org_id"].as_str().unwrap_or_default();
    let mut path = format!("/v1/organizations/{org}/environments?limit=50");
    if let Some(cursor) = &q.cursor {
        path.push_str("&cursor=");
        path.push_str(&form_urlencoded::byte_serialize(cursor.as_bytes()).collect::<String>());
    }
    let answer = signed.get(&api, &path).await;
    let resp = match answer.ok() {
        true => page(
            StatusCode::OK,
            pages::environments(&viewer, &answer.body, None),
        ),
        false => page(
            answer.status,
            pages::environments(&viewer, &Value::Null, Some(&answer.error())),
        ),
    };
    signed.respond(resp)
}

fn not_found() -> Response {
    page(StatusCode::NOT_FOUND, pages::refused("No such page."))
}

/// One environment's page: its details and keys, with a key's secret or an error when an
/// action just made or refused one.
async fn environment_page(
    api: &Api,
    signed: Signed,
    me: &Value,
    env_id: &EnvId,
    secret: Option<NewSecret>,
    error: Option<String>,
) -> Response {
    let viewer = signed.viewer(me);
    let env = signed.get(api, &format!("/v1/environments/{env_id}")).await;
    if !env.ok() {
        let resp = page(env.status, pages::refused(&env.error()));
        return signed.respond(resp);
    }
    let keys = signed
        .get(
            api,
            &format!("/v1/environments/{env_id}/api-keys?limit=200"),
        )
        .await;
    // A person whose role may not manage keys (as the API answers, grants included) sees no
    // key section at all.
    let keys = match keys.status {
        StatusCode::FORBIDDEN => None,
        _ if keys.ok() => Some(keys.body),
        _ => return signed.respond(page(keys.status, pages::refused(&keys.error()))),
    };
    let markup = pages::environment(
        &viewer,
        &env.body,
        keys.as_ref(),
        secret.as_ref(),
        error.as_deref(),
    );
    signed.respond(page(StatusCode::OK, markup))
}

async fn environment(
    State(api): State<Api>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Path(env_id): Path<String>,
) -> Response {
    let Some(env_id) = EnvId::parse(&env_id) else {
        return not_found();
    };
    let (signed, me) = match Signed::of(&api, &headers, peer(&connect)).await {
        Ok(x) => x,
        Err(to_login) => return to_login,
    };
    // A key made or rotated by the form just posted: shown on this one page, then forgotten.
    let secret = session::cookie(&headers, session::FLASH).and_then(|flash| {
        let (what, key) = flash.split_once(':')?;
        let what = match what {
            "rotated" => "The rotated key",
            _ => "The new key",
        };
        Some(NewSecret {
            key: key.to_string(),
            what,
        })
    });
    let shown = secret.is_some();
    let mut resp = environment_page(&api, signed, &me, &env_id, secret, None).await;
    if shown {
        let https = session::over_https(&headers);
        let forget = session::flash(&env_id, "", Some(0), https);
        resp.headers_mut().append(header::SET_COOKIE, forget);
    }
    resp
}

/// After a key was made: back to the environment's page (a reload then posts nothing again),
/// which shows the secret once.
fn show_once(headers: &HeaderMap, env_id: &EnvId, what: &str, key: &str) -> Response {
    let https = session::over_https(headers);
    let flash = session::flash(env_id, &format!("{what}:{key}"), Some(60), https);
    see_other(&format!("/environments/{env_id}"), &[flash])
}

/// A posted form's fields (a field given several times, as checkboxes are, keeps each value).
fn fields(body: &Bytes) -> Vec<(String, String)> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn first<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

/// A posted form's fields and its signed-in sender, once its CSRF token holds; else the
/// response that refuses it (403) or leads to the log-in page.
async fn posted(
    api: &Api,
    headers: &HeaderMap,
    connect: &Option<Extension<ConnectInfo<SocketAddr>>>,
    body: &Bytes,
) -> Result<(Vec<(String, String)>, Signed, Value), Response> {
    let form = fields(body);
    if !session::csrf_holds(headers, first(&form, "csrf")) {
        return Err(forged());
    }
    let (signed, me) = Signed::of(api, headers, peer(connect)).await?;
    Ok((form, signed, me))
}

async fn create_key(
    State(api): State<Api>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Path(env_id): Path<String>,
    body: Bytes,
) -> Response {
    let (form, signed, me) = match posted(&api, &headers, &connect, &body).await {
        Ok(x) => x,
        Err(refused) => return refused,
    };
    let Some(env_id) = EnvId::parse(&env_id) else {
        return not_found();
    };
    let scopes: Vec<&str> = form
        .iter()
        .filter(|(k, _)| k == "scopes")
        .map(|(_, v)| v.as_str())
        .collect();
    let mut request =
        json!({"name": first(&form, "name"), "role": first(&form, "role"), "scopes": scopes});
    let days = first(&form, "expires_in_days").trim();
    if !days.is_empty() {
        // A number the API checks; text that is none goes as text and is refused by name.
        request["expires_in_days"] = days
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(days));
    }
    let path = format!("/v1/environments/{env_id}/api-keys");
    let made = signed.send(&api, Method::POST, &path, Some(&request)).await;
    match made.body["key"].as_str() {
        Some(key) if made.ok() => signed.respond(show_once(&headers, &env_id, "new", key)),
        _ => {
            let error = Some(made.error());
            environment_page(&api, signed, &me, &env_id, None, error).await
        }
    }
}

/// `rotate` or `revoke` one key of the environment.
async fn key_action(
    api: Api,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    (env_id, key_id): (String, String),
    body: Bytes,
    rotate: bool,
) -> Response {
    let (_, signed, me) = match posted(&api, &headers, &connect, &body).await {
        Ok(x) => x,
        Err(refused) => return refused,
    };
    let (Some(env_id), Some(key_id)) = (EnvId::parse(&env_id), KeyId::parse(&key_id)) else {
        return not_found();
    };
    let path = format!("/v1/environments/{env_id}/api-keys/{key_id}");
    let done = match rotate {
        true => {
            let rotate = format!("{path}/rotate");
            signed
                .send(&api, Method::POST, &rotate, Some(&json!({})))
                .await
        }
        false => signed.send(&api, Method::DELETE, &path, None).await,
    };
    match (done.ok(), done.body["key"].as_str()) {
        (true, Some(key)) if rotate => signed.respond(show_once(&headers, &env_id, "rotated", key)),
        (true, _) => signed.respond(see_other(&format!("/environments/{env_id}"), &[])),
        (false, _) => {
            let error = Some(done.error());
            environment_page(&api, signed, &me, &env_id, None, error).await
        }
    }
}

async fn rotate_key(
    State(api): State<Api>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Path(ids): Path<(String, String)>,
    body: Bytes,
) -> Response {
    key_action(api, connect, headers, ids, body, true).await
}

async fn revoke_key(
    State(api): State<Api>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Path(ids): Path<(String, String)>,
    body: Bytes,
) -> Response {
    key_action(api, connect, headers, ids, body, false).await
}
