//! serve's request handling: an HTTP/1 request head (and body) in the
//! bytes, made a request as hyper would hand it over, and answered by the
//! router `serve` builds, called in-process: no socket, no filter. Two
//! pin roots: an empty one, and one with an interface folder without its
//! pins (a filter half removed) and a watched interface that has none.
//!
//! A finding: a panic, a status the routes never mean to answer, an error
//! without an explanation, a body on HEAD, a JSON endpoint's 200 that is
//! not JSON, a metrics page without its `# EOF`.

#![no_main]

use std::{path::PathBuf, sync::LazyLock};

use axum::{
    Router,
    body::Body,
    http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version, header},
};
use filterctl::{serve::fuzzing_router, serve::watch::Watch, state::PinRoot};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt as _;

/// The largest body read back: far above any answer without a filter.
const MAX_BODY: usize = 16 << 20;

struct Server {
    runtime: tokio::runtime::Runtime,
    routers: Vec<Router>,
}

/// Pin roots under the fuzz crate's target dir: made once, only read.
fn pin_root(name: &str, interfaces: &[&str]) -> PinRoot {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/pin-roots")).join(name);
    for iface in interfaces {
        std::fs::create_dir_all(dir.join(iface)).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    PinRoot::new(dir)
}

static SERVER: LazyLock<Server> = LazyLock::new(|| {
    let gone = Watch {
        iface: "flt-gone0".to_string(),
        rules: PathBuf::from("/nonexistent/rules.toml"),
    };
    Server {
        runtime: tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap(),
        routers: vec![
            fuzzing_router(&pin_root("empty", &[]), &[]),
            fuzzing_router(&pin_root("broken", &["flt-broken0"]), &[gone]),
        ],
    }
});

/// A line without its CR.
fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

/// The request the bytes hold: a request line, header lines, an empty
/// line and the body. None for what hyper refuses itself before any
/// route sees it (a bad method, target or header).
fn request(data: &[u8]) -> Option<Request<Body>> {
    let end = data.windows(4).position(|w| w == b"\r\n\r\n");
    let (head, body) = match end {
        Some(at) => (&data[..at], &data[at + 4..]),
        None => (data, &[][..]),
    };
    let mut lines = head.split(|b| *b == b'\n').map(trim_cr);
    let mut words = lines.next()?.splitn(3, |b| *b == b' ');
    let method = Method::from_bytes(words.next()?).ok()?;
    let uri = Uri::try_from(words.next()?).ok()?;
    let version = match words.next() {
        Some(b"HTTP/1.0") => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut request = Request::builder().method(method).uri(uri).version(version);
    for line in lines {
        let at = line.iter().position(|b| *b == b':')?;
        let name = HeaderName::from_bytes(&line[..at]).ok()?;
        let value = HeaderValue::from_bytes(trim(&line[at + 1..])).ok()?;
        request = request.header(name, value);
    }
    request.body(Body::from(body.to_vec())).ok()
}

/// What the routes answered, against what they mean to answer.
fn check(
    method: &Method,
    path: &str,
    status: StatusCode,
    json: bool,
    body: &[u8],
) -> Result<(), String> {
    let text = String::from_utf8_lossy(body);
    let what = format!(
        "{method} {path}: {status}, {} bytes: {text:.300}",
        body.len()
    );
    let expected = [
        StatusCode::OK,
        StatusCode::BAD_REQUEST,
        StatusCode::NOT_FOUND,
        StatusCode::METHOD_NOT_ALLOWED,
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::SERVICE_UNAVAILABLE,
    ];
    if !expected.contains(&status) {
        return Err(format!("unexpected status: {what}"));
    }
    if *method == Method::HEAD {
        return if body.is_empty() {
            Ok(())
        } else {
            Err(format!("a body on HEAD: {what}"))
        };
    }
    if *method != Method::GET {
        return Ok(());
    }
    match status {
        StatusCode::BAD_REQUEST if path != "/top" || !text.contains("n=") => {
            Err(format!("a bad request that is not /top's n=: {what}"))
        }
        StatusCode::BAD_REQUEST
        | StatusCode::INTERNAL_SERVER_ERROR
        | StatusCode::SERVICE_UNAVAILABLE
            if text.trim().is_empty() =>
        {
            Err(format!("an error without an explanation: {what}"))
        }
        StatusCode::OK | StatusCode::SERVICE_UNAVAILABLE
            if json && serde_json::from_slice::<serde_json::Value>(body).is_err() =>
        {
            Err(format!("not JSON: {what}"))
        }
        StatusCode::OK if path == "/metrics" && !text.ends_with("# EOF\n") => {
            Err(format!("metrics without # EOF: {what}"))
        }
        _ => Ok(()),
    }
}

/// One request through each router.
fn serve_case(data: &[u8]) -> Result<(), String> {
    let server = &*SERVER;
    for router in &server.routers {
        let Some(request) = request(data) else {
            return Ok(());
        };
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        server.runtime.block_on(async {
            let response = router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let json = response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
            let body = axum::body::to_bytes(response.into_body(), MAX_BODY)
                .await
                .map_err(|e| format!("{method} {path}: the body cannot be read: {e}"))?;
            check(&method, &path, status, json, &body)
        })?;
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    if let Err(why) = serve_case(data) {
        panic!("{why}");
    }
});
