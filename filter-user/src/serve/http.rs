//! The HTTP front of `serve`: an accept loop of our own over hyper's HTTP/1
//! server, with limits that keep a few hundred idle or slow clients from
//! starving the scrapes and the rule reloads of the daemon (see `Limits`).

use std::{future::Future, io, sync::Arc, time::Duration};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use log::{debug, info, warn};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};

use crate::sys;

/// What one client may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// From the moment the server waits for a request (a new connection, or
    /// a kept-alive one after its last response) to the end of its header:
    /// both the header-read timeout and the idle limit. A deadline, not an
    /// inactivity timer, so that trickling bytes does not extend it.
    pub header_read: Duration,
    /// The most a connection lives, whatever it does: covers slow bodies and
    /// clients that read the response a byte at a time.
    pub lifetime: Duration,
    /// Connections served at once; the ones over it are closed as soon as
    /// they are accepted, so that a scrape fails fast rather than hangs.
    pub max_connections: usize,
    /// How long open connections get to finish once the server stops.
    pub drain: Duration,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        header_read: Duration::from_secs(5),
        lifetime: Duration::from_secs(30),
        max_connections: 64,
        drain: Duration::from_secs(5),
    };

    /// These limits with the connection cap lowered, when it must be, to
    /// leave `FD_RESERVE` of the `nofile` open files to everything else.
    pub(crate) fn within_files(self, nofile: u64) -> Limits {
        let room = nofile.saturating_sub(FD_RESERVE).max(1);
        Limits {
            max_connections: self
                .max_connections
                .min(usize::try_from(room).unwrap_or(usize::MAX)),
            ..self
        }
    }
}

/// Open files kept for what is not a connection: the runtime, the pinned
/// maps a scrape opens, and above all a reload (a new program generation
/// with its maps, the rule and list files).
const FD_RESERVE: u64 = 256;

/// How long the accept loop pauses after an error that is not about one
/// connection (out of file descriptors or memory), rather than spin: the
/// connection waits in the listen backlog meanwhile.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Events that come in bursts (refused connections, failed accepts): the
/// first is logged, and the count when the burst ends.
#[derive(Debug, Default)]
struct Burst {
    count: u64,
}

impl Burst {
    /// Counts one; true when it starts a burst.
    fn hit(&mut self) -> bool {
        self.count += 1;
        self.count == 1
    }

    /// Ends the burst; how many it had, if there was one.
    fn end(&mut self) -> Option<u64> {
        (self.count > 0).then(|| std::mem::take(&mut self.count))
    }
}

/// Serves `router` on `listener` within `limits` until `stop` completes,
/// then lets open connections finish for at most `limits.drain`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (mut refused, mut failed) = (Burst::default(), Burst::default());
    let mut stop = std::pin::pin!(stop);
    loop {
        let accepted = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if sys::is_connection_error(&e) => {
                debug!("a connection failed before it was accepted: {e}");
                continue;
            }
            Err(e) => {
                accept_failed(&e, &mut failed);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if let Some(n) = failed.end() {
            info!("accepting connections again after {n} failed accepts");
        }
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                if let Some(n) = refused.end() {
                    info!("serving new connections again after closing {n} over the cap");
                }
                spawn_connection(stream, slot, &router, &graceful, limits);
            }
            Err(_) => {
                if refused.hit() {
                    warn!(
                        "{} connections open, the most served at once: closing new ones until one ends",
                        limits.max_connections
                    );
                }
                drop(stream);
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(limits.drain, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            "connections still open after {:?}: closing them",
            limits.drain
        );
    }
}

/// Logs a failed accept at the start of a burst of them.
fn accept_failed(e: &io::Error, burst: &mut Burst) {
    if burst.hit() {
        warn!("cannot accept connections: {e}; retrying every {ACCEPT_BACKOFF:?}");
    }
}

/// Serves one connection on its own task, which holds `slot` until the
/// connection ends, is cut at `limits.lifetime`, or is drained.
fn spawn_connection(
    stream: TcpStream,
    slot: OwnedSemaphorePermit,
    router: &Router,
    graceful: &GracefulShutdown,
    limits: Limits,
) {
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .keep_alive(true)
        .serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        match tokio::time::timeout(limits.lifetime, conn).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => debug!("connection ended: {e}"),
            Err(_) => debug!("connection closed at its {:?} lifetime", limits.lifetime),
        }
        drop(slot);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_cap_leaves_room_for_reloads() {
        let l = Limits::DEFAULT;
        assert_eq!(l.within_files(1024).max_connections, 64);
        assert_eq!(l.within_files(1 << 20).max_connections, 64);
        assert_eq!(l.within_files(FD_RESERVE + 10).max_connections, 10);
        assert_eq!(l.within_files(100).max_connections, 1, "never zero");
        assert_eq!(l.within_files(100).header_read, l.header_read);
    }

    #[test]
    fn bursts_are_logged_once() {
        let mut b = Burst::default();
        assert_eq!(b.end(), None, "no burst yet");
        assert!(b.hit(), "the first starts a burst");
        assert!(!b.hit());
        assert!(!b.hit());
        assert_eq!(b.end(), Some(3));
        assert_eq!(b.end(), None);
        assert!(b.hit(), "a new burst");
    }
}
