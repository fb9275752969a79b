//! The examples' `--tls-cert`, `--tls-key` and `--tls-client-ca` flags:
//! an acceptor from the files, reloaded from them on SIGHUP.

use clap::{Arg, ArgMatches, Command};
use socketserver::ServerBuilder;

/// Adds the TLS flags to a command line.
pub fn args(command: Command) -> Command {
    command
        .arg(
            Arg::new("tls-cert")
                .long("tls-cert")
                .value_name("PATH")
                .requires("tls-key")
                .help("serve TLS with the certificate chain in PATH (PEM); SIGHUP reads it again (needs --features tls)"),
        )
        .arg(
            Arg::new("tls-key")
                .long("tls-key")
                .value_name("PATH")
                .requires("tls-cert")
                .help("the private key of --tls-cert (PEM)"),
        )
        .arg(
            Arg::new("tls-client-ca")
                .long("tls-client-ca")
                .value_name("PATH")
                .requires("tls-cert")
                .help("require client certificates signed by the CA in PATH (PEM)"),
        )
}

/// Sets `tls` on the builder when `--tls-cert` is given, and starts a
/// thread that reloads the certificate and key on each SIGHUP (a bad file
/// is reported and the server goes on with what it had).
#[cfg(feature = "tls")]
pub fn apply(args: &ArgMatches, builder: ServerBuilder) -> Result<ServerBuilder, String> {
    use socketserver::tls::TlsAcceptor;
    let (Some(cert), Some(key)) = (
        args.get_one::<String>("tls-cert").cloned(),
        args.get_one::<String>("tls-key").cloned(),
    ) else {
        return Ok(builder);
    };
    let mut acceptor = TlsAcceptor::from_pem_files(&cert, &key).map_err(|e| e.to_string())?;
    if let Some(ca) = args.get_one::<String>("tls-client-ca") {
        acceptor = acceptor.with_client_ca(ca).map_err(|e| e.to_string())?;
    }
    let mut hangups = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])
        .map_err(|e| format!("cannot catch SIGHUP: {e}"))?;
    let reloading = acceptor.clone();
    std::thread::spawn(move || {
        for _ in hangups.forever() {
            match reloading.reload_from_pem_files(&cert, &key) {
                Ok(()) => println!("SIGHUP: reloaded {cert} and {key} for new connections"),
                Err(e) => eprintln!("SIGHUP: kept the old certificate: {e}"),
            }
        }
    });
    Ok(builder.tls(acceptor))
}

/// Without the `tls` feature the flags are refused with what to do.
#[cfg(not(feature = "tls"))]
pub fn apply(args: &ArgMatches, builder: ServerBuilder) -> Result<ServerBuilder, String> {
    match args.contains_id("tls-cert") {
        true => {
            Err("--tls-cert needs TLS: run with `cargo run --features tls --example ...`".into())
        }
        false => Ok(builder),
    }
}
