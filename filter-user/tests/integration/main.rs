//! Every integration test, in one binary (as aya runs its own): one link
//! instead of one per file, and one place that lists them. A module per
//! subject; `common` holds the CLI runner, verdict cases, the reference
//! model and the labs. Most need root and BPF (`cargo xtask setup`);
//! `cargo test --test integration -- MODULE::` runs one subject.

mod common;

mod bans;
mod capabilities;
mod capture;
mod check_corpus;
mod deploy;
mod differential;
mod e2e;
mod false_positives;
mod fragments;
mod fuzz;
mod hardening;
mod import;
mod limits;
mod load_balancer;
mod memory;
mod multihomed;
mod operator;
mod prometheus;
mod reload;
mod replay;
mod replay_live;
mod reply_guard;
mod rules_gate;
mod serve;
mod serve_files;
mod serve_limits;
mod surge;
mod syn_ack;
mod upstream;
mod verdicts;
