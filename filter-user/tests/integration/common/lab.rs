//! Small pieces of the BGP labs (tests/integration/upstream.rs, tests/integration/import.rs).

use std::{
    net::TcpListener,
    time::{Duration, Instant},
};

use filter_testkit::net::TestNet;

/// Polls `cond` every 100 ms for at most `secs`; how long it took.
pub fn poll(what: &str, secs: u64, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        if start.elapsed() > Duration::from_secs(secs) {
            panic!("no {what} after {secs} s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A port nobody listens on in the victim's namespace.
pub fn free_port(net: &TestNet) -> u16 {
    TestNet::in_ns(&net.victim_ns, || {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        l.local_addr().expect("local address").port()
    })
    .expect("enter the victim namespace")
}
