//! Signed carrier webhooks as Twilio sends them: a form body with its `X-Twilio-Signature`
//! over the public URL, posted as raw HTTP/1.1 to a listening server or handed in process to
//! an axum `Router`. Kept whole ([`Signed`]) so a test can post it again, byte for byte.

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

/// The carrier account of the tests' configs.
pub const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";

/// A webhook as the carrier sent it: the path (with its query), the form body and its
/// `X-Twilio-Signature`.
#[derive(Debug, Clone)]
pub struct Signed {
    pub path: String,
    pub body: String,
    pub signature: String,
}

impl Signed {
    /// `params` as a form body, signed with `token` for `public` + `path`.
    pub fn new(token: &str, public: &str, path: &str, params: &[(&str, &str)]) -> Signed {
        let owned: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let signature = resetline_twiml::signature::compute(
            token.as_bytes(),
            &format!("{public}{path}"),
            &owned,
        );
        Signed {
            path: path.to_string(),
            body: form(params),
            signature,
        }
    }

    /// The raw HTTP/1.1 request for `host` (`Connection: close`).
    pub fn request(&self, host: impl std::fmt::Display) -> String {
        format!(
            "POST {} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            self.path,
            self.signature,
            self.body.len(),
            self.body
        )
    }

    /// Posts it to `addr` as raw HTTP/1.1; the raw response.
    pub async fn post(&self, addr: std::net::SocketAddr) -> String {
        exchange(addr, &self.request(addr)).await
    }

    /// Hands it to `app` in process; the answer's status and body.
    pub async fn oneshot(&self, app: Router) -> (u16, String) {
        let req = Request::post(self.path.as_str())
            .header("X-Twilio-Signature", self.signature.as_str())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(Body::from(self.body.clone()))
            .expect("request");
        let resp = app.oneshot(req).await.expect("response");
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// `params` as an `application/x-www-form-urlencoded` body.
pub fn form(params: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

/// Sends `request` to `addr` and reads the answer until the server closes.
pub async fn exchange(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

/// A plain GET (for `/readyz`, `/metrics`): the raw response, or "" if nobody listens.
pub async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response
}
