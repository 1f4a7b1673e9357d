//! `serve`: the daemon (`crate::serve`), with the rule files it follows.

use std::{net::SocketAddr, path::PathBuf};

use crate::{
    serve::{
        self,
        listen::parse_listen,
        watch::{Watch, parse_watch, watches},
    },
    state::PinRoot,
};

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (loopback only by default): IP:PORT,
    /// [IPV6]:PORT, or an address alone for port 19419 (as Kubernetes'
    /// $(NODE_IP) gives it, IPv4 or IPv6).
    #[arg(long, default_value = serve::DEFAULT_LISTEN, value_parser = parse_listen)]
    listen: SocketAddr,
    /// Interface whose rules follow the --rules file given with it
    /// (repeatable: --iface IF --rules FILE ...).
    #[arg(long, requires = "rules")]
    iface: Vec<String>,
    /// Rule file watched for the --iface given with it.
    #[arg(long, requires = "iface")]
    rules: Vec<PathBuf>,
    /// Same as --iface IF --rules FILE, in one argument (repeatable).
    #[arg(long, value_name = "IF=FILE", value_parser = parse_watch)]
    watch: Vec<Watch>,
}

/// Runs until SIGTERM or SIGINT.
pub(crate) async fn run(root: PinRoot, a: ServeArgs) -> anyhow::Result<u8> {
    let watches = watches(a.iface, a.rules, a.watch)?;
    serve::serve(root, a.listen, watches).await?;
    Ok(0)
}
