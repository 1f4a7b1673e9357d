//! `serve`'s probe and JSON endpoints: GET /healthz (200 when every loaded
//! or watched interface runs the filter, attached to an interface that
//! exists, 503 otherwise: a readiness probe), GET /livez (200 while the
//! daemon answers: a liveness probe, which restarting serve cannot make
//! fail less) and GET /top (the `top --json` document, `?n=N` sources per
//! interface).

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{RawQuery, State},
    http::StatusCode,
    response::{IntoResponse as _, Response},
    routing::get,
};
use log::error;
use serde::Serialize;

use super::metrics::interfaces;
use crate::{
    filter::observe::{status, top},
    state::{PinRoot, unloaded},
};

/// Sources per interface /top lists unless `?n=` says else.
const TOP_DEFAULT: usize = 20;

struct Probe {
    root: PinRoot,
    watched: Vec<String>,
}

/// The routes, with their own state: merged into serve's router.
pub(crate) fn router(root: PinRoot, watched: Vec<String>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(livez))
        .route("/top", get(top))
        .with_state(Arc::new(Probe { root, watched }))
}

#[derive(Debug, Serialize)]
struct InterfaceHealth {
    interface: String,
    running: bool,
    generation: Option<u32>,
    /// No filter because an operator's `unload` left it off on purpose:
    /// `serve` does not load it again.
    unloaded_on_purpose: bool,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Health {
    schema_version: u32,
    healthy: bool,
    interfaces: Vec<InterfaceHealth>,
}

async fn healthz(State(p): State<Arc<Probe>>) -> Response {
    let names = match interfaces(&p.root, &p.watched) {
        Ok(n) => n,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}\n")).into_response(),
    };
    let checks: Vec<InterfaceHealth> = names
        .into_iter()
        .map(|interface| check(&p.root, interface))
        .collect();
    // No filter anywhere is not healthy: the service exists to run one.
    let healthy = !checks.is_empty() && checks.iter().all(|c| c.running);
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let doc = Health {
        schema_version: crate::JSON_SCHEMA_VERSION,
        healthy,
        interfaces: checks,
    };
    (code, Json(doc)).into_response()
}

/// Whether `interface` runs the filter, attached to it.
fn check(root: &PinRoot, interface: String) -> InterfaceHealth {
    let (running, generation, error) = match status::status(root, &interface) {
        // The link outlives the interface it was attached to.
        Ok(s) if !s.interface_present => (
            false,
            Some(s.generation),
            Some(format!(
                "{interface} no longer exists: its filter is attached to nothing"
            )),
        ),
        Ok(s) => (true, Some(s.generation), None),
        Err(e) => (false, None, Some(format!("{e:#}"))),
    };
    let on_purpose = !running && unloaded::is_marked(root, &interface);
    let error = if on_purpose {
        Some(format!(
            "unloaded on purpose by an operator ({}): serve leaves it off until `filterctl load` or `filterctl apply`",
            root.unloaded_marker(&interface).display()
        ))
    } else {
        error
    };
    InterfaceHealth {
        interface,
        running,
        generation,
        unloaded_on_purpose: on_purpose,
        error,
    }
}

async fn livez() -> &'static str {
    "ok\n"
}

/// `n` from a query string `n=N`, else the default.
fn top_n(query: Option<&str>) -> Result<usize, String> {
    let Some(q) = query else {
        return Ok(TOP_DEFAULT);
    };
    for pair in q.split('&') {
        if let Some(v) = pair.strip_prefix("n=") {
            return v
                .parse()
                .map_err(|_| format!("n={v:?}: write a number of sources, e.g. /top?n=20\n"));
        }
    }
    Ok(TOP_DEFAULT)
}

async fn top(State(p): State<Arc<Probe>>, RawQuery(query): RawQuery) -> Response {
    let n = match top_n(query.as_deref()) {
        Ok(n) => n,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    match p
        .root
        .interfaces()
        .and_then(|ifaces| top::top_report(&p.root, ifaces, n))
    {
        Ok(doc) => Json(doc).into_response(),
        Err(e) => {
            error!("cannot read the limiter and ban tables: {e:#}");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_query() {
        assert_eq!(top_n(None), Ok(TOP_DEFAULT));
        assert_eq!(top_n(Some("n=5")), Ok(5));
        assert_eq!(top_n(Some("x=1&n=7")), Ok(7));
        assert!(top_n(Some("n=many")).unwrap_err().contains("n=\"many\""));
    }
}
