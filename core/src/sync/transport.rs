//! How the client reaches the server: a small trait, with an HTTP implementation (reqwest + rustls).

use std::time::Duration;

use super::protocol::{CONTENT_TYPE, ErrorBody, ErrorCode, MAX_BODY_BYTES, decode};
use crate::error::{Error, Result};

/// Sends one request body and returns the response body.
///
/// Implementations map a refusal to [`Error::Server`] (or [`Error::RevocationClaimed`]
/// for a `revoked` answer, with its signed statement) and any failure to reach the
/// server to [`Error::Network`].
pub trait Transport: Send + Sync {
    /// `POST {base}{path}` with a CBOR body, and a bearer credential when given.
    fn post(&self, path: &str, body: Vec<u8>, credential: Option<&str>) -> Result<Vec<u8>>;
}

/// HTTP(S) to a `doorstep-sync-server`.
pub struct HttpTransport {
    base: String,
    client: reqwest::blocking::Client,
}

impl HttpTransport {
    /// A transport to `base_url` (such as `https://sync.example.vn`), with timeouts.
    /// `http://` is refused except to a loopback address ([`super::protocol::check_server_url`]).
    ///
    /// Connections are not kept idle between requests: on a network that drops
    /// without warning, a pooled socket is more often dead than useful, and a
    /// sync makes only one or a few requests.
    pub fn new(base_url: &str) -> Result<HttpTransport> {
        super::protocol::check_server_url(base_url)?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::blocking::Client::builder()
            .pool_max_idle_per_host(0)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::Network(e.to_string()))?;
        Ok(HttpTransport { base: base_url.trim_end_matches('/').to_string(), client })
    }
}

impl Transport for HttpTransport {
    fn post(&self, path: &str, body: Vec<u8>, credential: Option<&str>) -> Result<Vec<u8>> {
        let mut req = self.client.post(format!("{}{path}", self.base)).header("content-type", CONTENT_TYPE).body(body);
        if let Some(c) = credential {
            req = req.bearer_auth(c);
        }
        let resp = req.send().map_err(|e| Error::Network(e.to_string()))?;
        let status = resp.status();
        if resp.content_length().is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(Error::Protocol("response over the size limit".into()));
        }
        let bytes = resp.bytes().map_err(|e| Error::Network(e.to_string()))?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        match decode::<ErrorBody>(&bytes) {
            Ok(body) if body.code == ErrorCode::Revoked => Err(Error::RevocationClaimed { statement: body.revocation }),
            Ok(body) => {
                let code = serde_json::to_value(body.code)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                Err(Error::Server { status: status.as_u16(), code, message: body.message })
            }
            Err(_) if status.is_server_error() => Err(Error::Network(format!("server error {status}"))),
            Err(_) => {
                Err(Error::Server { status: status.as_u16(), code: "unknown".into(), message: status.to_string() })
            }
        }
    }
}
