//! The signed-in person a page is for, as extractors: `Signed` (a page: the session's token,
//! renewed with the refresh cookie when it expired, or the way to the log-in page) and
//! `Posted` (a form: its CSRF token checked first, then its sender signed in).

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::api::{Answer, Api, Payload, Raw};
use super::layout::{self, Viewer};
use super::respond::{forged, page, see_other, with_cookies};
use super::session;

/// The browser's CSRF token, and the cookie that sets it when it has none yet.
pub(super) fn csrf_of(headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match session::cookie(headers, session::CSRF) {
        Some(t) => (t, None),
        None => {
            let t = session::new_csrf();
            let c = session::set(session::CSRF, &t, None, session::over_https(headers));
            (t, Some(c))
        }
    }
}

pub(super) fn peer_of(parts: &Parts) -> Option<SocketAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

pub(super) struct Signed {
    api: Api,
    token: String,
    /// New session cookies, when the token was renewed.
    renewed: Vec<HeaderValue>,
    csrf: String,
    csrf_cookie: Option<HeaderValue>,
    peer: Option<SocketAddr>,
    pub(super) headers: HeaderMap,
    /// `GET /v1/auth/me`: the person and the organization they are signed in to.
    pub(super) me: Value,
}

impl FromRequestParts<Api> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Signed, Response> {
        Signed::of(api, &parts.headers, peer_of(parts)).await
    }
}

impl Signed {
    async fn of(
        api: &Api,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<Self, Response> {
        let (csrf, csrf_cookie) = csrf_of(headers);
        let to_login = || see_other("/login", &session::signed_out(session::over_https(headers)));
        let Some(token) = session::cookie(headers, session::SESSION) else {
            return Err(to_login());
        };
        let mut signed = Signed {
            api: api.clone(),
            token,
            renewed: vec![],
            csrf,
            csrf_cookie,
            peer,
            headers: headers.clone(),
            me: Value::Null,
        };
        let me = signed.get("/v1/auth/me").await;
        if me.ok() {
            signed.me = me.body;
            return Ok(signed);
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
        let me = signed.get("/v1/auth/me").await;
        match me.ok() {
            true => {
                signed.me = me.body;
                Ok(signed)
            }
            false => Err(to_login()),
        }
    }

    pub(super) async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    /// One page of a list at `path` (which names its `limit`), from `cursor` on.
    pub(super) async fn listing(&self, path: &str, cursor: Option<&str>) -> Result<Value, String> {
        let path = match cursor.filter(|c| !c.is_empty()) {
            Some(c) => format!("{path}&cursor={}", encoded(c)),
            None => path.to_string(),
        };
        self.get(&path).await.into_result()
    }

    pub(super) async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Answer {
        self.api
            .call(method, path, Some(&self.token), body, self.peer)
            .await
    }

    pub(super) async fn raw(&self, method: Method, path: &str, payload: Payload<'_>) -> Raw {
        self.api
            .raw(method, path, Some(&self.token), payload, self.peer)
            .await
    }

    pub(super) fn org_id(&self) -> &str {
        self.me["org"]["org_id"].as_str().unwrap_or_default()
    }

    pub(super) fn https(&self) -> bool {
        session::over_https(&self.headers)
    }

    pub(super) fn viewer(&self) -> Viewer {
        Viewer {
            email: self.me["user"]["email"].as_str().unwrap_or_default().into(),
            role: self.me["org"]["role"].as_str().unwrap_or_default().into(),
            csrf: self.csrf.clone(),
            pages: layout::ORG_PAGES
                .iter()
                .filter(|(_, _, permission)| self.org_may(permission))
                .map(|(path, label, _)| (*path, *label))
                .collect(),
        }
    }

    /// `resp` with the cookies this visit set (a renewed session, a first CSRF token).
    pub(super) fn respond(self, resp: Response) -> Response {
        with_cookies(resp, self.renewed.into_iter().chain(self.csrf_cookie))
    }

    /// The API's refusal as a page.
    pub(super) fn refused(self, answer: &Answer) -> Response {
        let resp = page(answer.status, layout::refused(&answer.error()));
        self.respond(resp)
    }

    /// Whether the person may `permission` (by name) in the organization, as `/v1/auth/me`
    /// answered.
    pub(super) fn org_may(&self, permission: &str) -> bool {
        self.me["org"]["permissions"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p == permission))
    }

    /// What the person may do in `env_id`, as the API answers it (a just-in-time grant
    /// included); nothing when it answers no.
    pub(super) async fn env_may(&self, env_id: &str) -> Permissions {
        let answer = self
            .get(&format!("/v1/environments/{env_id}/permissions"))
            .await;
        Permissions(answer.body["permissions"].clone())
    }

    /// The environment `env_id` as the API answers it, or the page that says why not.
    pub(super) async fn environment(self, env_id: &str) -> Result<(Signed, Value), Response> {
        let env = self.get(&format!("/v1/environments/{env_id}")).await;
        match env.ok() {
            true => Ok((self, env.body)),
            false if env.status == StatusCode::NOT_FOUND => Err(super::respond::not_found()),
            false => Err(self.refused(&env)),
        }
    }
}

/// A posted form: its fields and its sender, once the form's CSRF token matched the browser's.
pub(super) struct Posted {
    pub(super) signed: Signed,
    pub(super) form: Form,
}

impl FromRequest<Api> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, api: &Api) -> Result<Posted, Response> {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, FORM_BYTES)
            .await
            .map_err(|_| forged())?;
        let form = Form::parse(&body);
        if !session::csrf_holds(&parts.headers, form.first("csrf")) {
            return Err(forged());
        }
        let signed = Signed::of(api, &parts.headers, peer_of(&parts)).await?;
        Ok(Posted { signed, form })
    }
}

/// The most a dashboard form may carry (a `.env` file pasted in, a long query).
const FORM_BYTES: usize = 2 * 1024 * 1024;

/// A posted form's fields (a field given several times, as checkboxes are, keeps each value).
pub(super) struct Form(Vec<(String, String)>);

impl Form {
    pub(super) fn parse(body: &Bytes) -> Form {
        Form(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub(super) fn first(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    }

    pub(super) fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A trimmed field, `None` when left empty.
    pub(super) fn given(&self, name: &str) -> Option<&str> {
        Some(self.first(name).trim()).filter(|v| !v.is_empty())
    }

    /// A number field: the number, or the text as given so the API refuses it by name.
    pub(super) fn number(&self, name: &str) -> Option<Value> {
        self.given(name).map(|v| {
            v.parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::from(v))
        })
    }

    pub(super) fn checked(&self, name: &str) -> bool {
        !self.first(name).is_empty()
    }
}

/// `value` percent-encoded for a URL's query.
pub(super) fn encoded(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The permissions the API says a person has somewhere, by name.
pub(super) struct Permissions(Value);

impl Permissions {
    pub(super) fn may(&self, permission: &str) -> bool {
        self.0
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p == permission))
    }
}

/// Whether `id` has the shape of an id the server makes (`pol_…`, `whk_…`, `dlv_…`): nothing
/// else taken from a dashboard path reaches an API path.
pub(super) fn server_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
