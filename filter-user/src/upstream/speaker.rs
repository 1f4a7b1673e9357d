//! Drives an existing BGP speaker, which owns the sessions: GoBGP through
//! its `gobgp` CLI (each call one gRPC request to gobgpd, an error when
//! gobgpd is down), ExaBGP through the text API of its helper process,
//! written into a FIFO that process copies to ExaBGP (see deploy/bgp/).

use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _, process::Command};

use super::routes::{Action, BLACKHOLE_COMMUNITY, Route};
use crate::rules::upstream::SpeakerConfig;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SpeakerError {
    #[error("cannot run {program}: {source} (install gobgpd: cargo xtask setup)")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {stderr}")]
    Refused { command: String, stderr: String },
    #[error(
        "cannot write to ExaBGP's pipe {path}: {source} (is exabgp running with the process of deploy/bgp/exabgp.conf?)"
    )]
    Pipe {
        path: String,
        source: std::io::Error,
    },
}

pub(crate) trait Speaker: Send {
    fn announce(&mut self, route: &Route) -> Result<(), SpeakerError>;
    fn withdraw(&mut self, route: &Route) -> Result<(), SpeakerError>;
}

pub(crate) fn connect(config: &SpeakerConfig) -> Box<dyn Speaker> {
    match config {
        SpeakerConfig::Gobgp {
            command,
            host,
            port,
        } => Box::new(GoBgp {
            program: command.clone(),
            host: host.clone(),
            port: *port,
        }),
        SpeakerConfig::Exabgp { pipe } => Box::new(ExaBgp { pipe: pipe.clone() }),
    }
}

struct GoBgp {
    program: String,
    host: String,
    port: u16,
}

/// `gobgp global rib` arguments that add or delete `route`.
fn gobgp_args(route: &Route, add: bool) -> Vec<String> {
    let verb = if add { "add" } else { "del" };
    let family = match (route, route.is_v4()) {
        (Route::FlowSpec(_), true) => "ipv4-flowspec",
        (Route::FlowSpec(_), false) => "ipv6-flowspec",
        (Route::Blackhole { .. }, true) => "ipv4",
        (Route::Blackhole { .. }, false) => "ipv6",
    };
    let mut args: Vec<String> = ["global", "rib", "-a", family, verb]
        .map(String::from)
        .into();
    match route {
        Route::FlowSpec(f) => {
            args.push("match".into());
            for (k, v) in f.components() {
                args.extend([k.to_string(), v]);
            }
            args.push("then".into());
            args.extend(match f.action {
                Action::Discard => vec!["discard".to_string()],
                Action::RateLimit { bytes_per_s } => {
                    vec!["rate-limit".to_string(), bytes_per_s.to_string()]
                }
            });
        }
        Route::Blackhole { dst } => {
            args.push(dst.to_string());
            if add {
                args.extend(["community".to_string(), BLACKHOLE_COMMUNITY.to_string()]);
            }
        }
    }
    args
}

impl GoBgp {
    fn run(&self, route: &Route, add: bool) -> Result<(), SpeakerError> {
        let mut cmd = Command::new(&self.program);
        cmd.args(["-u", &self.host, "-p", &self.port.to_string()])
            .args(gobgp_args(route, add));
        let out = cmd.output().map_err(|source| SpeakerError::Spawn {
            program: self.program.clone(),
            source,
        })?;
        if !out.status.success() {
            let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
            return Err(SpeakerError::Refused {
                command: format!("{} {}", self.program, args.join(" ")),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }
}

impl Speaker for GoBgp {
    fn announce(&mut self, route: &Route) -> Result<(), SpeakerError> {
        self.run(route, true)
    }

    fn withdraw(&mut self, route: &Route) -> Result<(), SpeakerError> {
        self.run(route, false)
    }
}

struct ExaBgp {
    pipe: String,
}

/// ExaBGP's API command that announces or withdraws `route`.
fn exabgp_line(route: &Route, add: bool) -> String {
    let verb = if add { "announce" } else { "withdraw" };
    match route {
        Route::FlowSpec(f) => {
            let mut m = String::new();
            for (k, v) in f.components() {
                // ExaBGP writes equality as `=` and IPv6's protocol as
                // next-header.
                let k = if k == "protocol" && !route.is_v4() {
                    "next-header"
                } else {
                    k
                };
                m.push_str(&format!("{k} {}; ", v.replace("==", "=")));
            }
            format!(
                "{verb} flow route {{ match {{ {m}}} then {{ {}; }} }}",
                f.action
            )
        }
        Route::Blackhole { dst } => {
            format!("{verb} route {dst} next-hop self community [{BLACKHOLE_COMMUNITY}]")
        }
    }
}

impl ExaBgp {
    fn write(&self, line: String) -> Result<(), SpeakerError> {
        let err = |source| SpeakerError::Pipe {
            path: self.pipe.clone(),
            source,
        };
        // Non-blocking: with no reader (ExaBGP down) the open fails at
        // once (ENXIO) instead of hanging the daemon.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.pipe)
            .map_err(err)?;
        f.write_all(format!("{line}\n").as_bytes()).map_err(err)
    }
}

impl Speaker for ExaBgp {
    fn announce(&mut self, route: &Route) -> Result<(), SpeakerError> {
        self.write(exabgp_line(route, true))
    }

    fn withdraw(&mut self, route: &Route) -> Result<(), SpeakerError> {
        self.write(exabgp_line(route, false))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;
    use crate::{rules::prefixes::parse_prefix, upstream::routes::tests::flow};

    #[test]
    fn gobgp_arguments_follow_its_cli() {
        let r = Route::FlowSpec(flow("192.0.2.1/32", Some("198.51.100.0/24")));
        assert_eq!(
            gobgp_args(&r, true).join(" "),
            "global rib -a ipv4-flowspec add match destination 192.0.2.1/32 source 198.51.100.0/24 \
             protocol udp source-port ==123 packet-length >=128&<=65535 then discard"
        );
        let b = Route::Blackhole {
            dst: parse_prefix("2001:db8::1/128").unwrap(),
        };
        assert_eq!(
            gobgp_args(&b, true).join(" "),
            "global rib -a ipv6 add 2001:db8::1/128 community 65535:666"
        );
        assert_eq!(
            gobgp_args(&b, false).join(" "),
            "global rib -a ipv6 del 2001:db8::1/128"
        );
    }

    #[test]
    fn exabgp_lines_follow_its_api() {
        let r = Route::FlowSpec(flow("2001:db8::1/128", None));
        assert_eq!(
            exabgp_line(&r, true),
            "announce flow route { match { destination 2001:db8::1/128; next-header udp; \
             source-port =123; packet-length >=128&<=65535; } then { discard; } }"
        );
        let b = Route::Blackhole {
            dst: parse_prefix("192.0.2.1/32").unwrap(),
        };
        assert_eq!(
            exabgp_line(&b, false),
            "withdraw route 192.0.2.1/32 next-hop self community [65535:666]"
        );
    }

    #[test]
    fn exabgp_pipe_without_reader_is_an_error_and_with_one_gets_the_line() {
        let dir = std::env::temp_dir().join(format!("filterctl-exa-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("in.fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let config = SpeakerConfig::Exabgp {
            pipe: fifo.display().to_string(),
        };
        let b = Route::Blackhole {
            dst: parse_prefix("192.0.2.1/32").unwrap(),
        };
        let e = connect(&config).announce(&b).unwrap_err();
        assert!(e.to_string().contains("exabgp running"), "{e}");
        // A reader that opens without waiting for a writer.
        let mut reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        connect(&config).announce(&b).unwrap();
        let mut got = String::new();
        reader.read_to_string(&mut got).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            got,
            "announce route 192.0.2.1/32 next-hop self community [65535:666]\n"
        );
    }
}
