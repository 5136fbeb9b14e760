//! How the client reaches the server: a small trait, with an HTTP implementation (reqwest + rustls).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

    /// Compress request bodies (zstd) from now on: the server said it takes them.
    fn set_compress_requests(&self, _on: bool) {}

    /// Whether an answer said the server takes zstd request bodies (`Accept-Encoding: zstd`
    /// on a response, RFC 7694).
    fn server_takes_zstd(&self) -> bool {
        false
    }

    /// Bytes sent and received on the wire so far (compressed, when compressed).
    fn wire_bytes(&self) -> (usize, usize) {
        (0, 0)
    }
}

/// The one content coding Doorstep speaks besides identity.
pub const ZSTD: &str = "zstd";
/// The zstd level requests are compressed at (fast, and most of the gain on CBOR and Automerge).
const ZSTD_LEVEL: i32 = 3;

/// Reads at most [`MAX_BODY_BYTES`] from `reader`: more is a typed error, never an allocation.
fn read_capped(reader: impl std::io::Read, what: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    reader.take(MAX_BODY_BYTES as u64 + 1).read_to_end(&mut out).map_err(|e| Error::Network(format!("{what}: {e}")))?;
    if out.len() > MAX_BODY_BYTES {
        return Err(Error::Protocol(format!("{what} over the size limit of {MAX_BODY_BYTES} bytes")));
    }
    Ok(out)
}

/// HTTP(S) to a `doorstep-sync-server`.
pub struct HttpTransport {
    base: String,
    client: reqwest::blocking::Client,
    compress: AtomicBool,
    server_takes_zstd: AtomicBool,
    sent: AtomicUsize,
    received: AtomicUsize,
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
        Ok(HttpTransport {
            base: base_url.trim_end_matches('/').to_string(),
            client,
            compress: AtomicBool::new(false),
            server_takes_zstd: AtomicBool::new(false),
            sent: AtomicUsize::new(0),
            received: AtomicUsize::new(0),
        })
    }
}

impl Transport for HttpTransport {
    fn post(&self, path: &str, body: Vec<u8>, credential: Option<&str>) -> Result<Vec<u8>> {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", CONTENT_TYPE)
            .header("accept-encoding", ZSTD);
        if let Some(c) = credential {
            req = req.bearer_auth(c);
        }
        let body = if self.compress.load(Ordering::Relaxed) {
            req = req.header("content-encoding", ZSTD);
            zstd::bulk::compress(&body, ZSTD_LEVEL).map_err(|e| Error::Protocol(format!("compressing: {e}")))?
        } else {
            body
        };
        self.sent.fetch_add(body.len(), Ordering::Relaxed);
        let mut resp = req.body(body).send().map_err(|e| Error::Network(e.to_string()))?;
        let status = resp.status();
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        if header("accept-encoding").split(',').any(|c| c.trim().eq_ignore_ascii_case(ZSTD)) {
            self.server_takes_zstd.store(true, Ordering::Relaxed);
        }
        let encoding = header("content-encoding");
        if resp.content_length().is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(Error::Protocol("response over the size limit".into()));
        }
        let wire = read_capped(&mut resp, "the response")?;
        self.received.fetch_add(wire.len(), Ordering::Relaxed);
        let bytes = match encoding.trim() {
            "" | "identity" => wire,
            // Decompressed as a stream, capped: a zstd bomb is a typed error, not an allocation.
            e if e.eq_ignore_ascii_case(ZSTD) => {
                let decoder = zstd::stream::read::Decoder::new(wire.as_slice())
                    .map_err(|e| Error::Protocol(format!("a zstd response: {e}")))?;
                read_capped(decoder, "the decompressed response").map_err(|e| match e {
                    Error::Network(m) => Error::Protocol(m),
                    other => other,
                })?
            }
            other => return Err(Error::Protocol(format!("a response in an unknown coding: {other}"))),
        };
        if status.is_success() {
            return Ok(bytes);
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

    fn set_compress_requests(&self, on: bool) {
        self.compress.store(on, Ordering::Relaxed);
    }

    fn server_takes_zstd(&self) -> bool {
        self.server_takes_zstd.load(Ordering::Relaxed)
    }

    fn wire_bytes(&self) -> (usize, usize) {
        (self.sent.load(Ordering::Relaxed), self.received.load(Ordering::Relaxed))
    }
}
