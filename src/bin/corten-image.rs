//! corten-image: pull images from a registry (Docker Hub by default), an OCI layout or a
//! `docker save` tarball into an OCI bundle that `corten run` runs. A thin front end over
//! `corten::image`.

#![deny(clippy::undocumented_unsafe_blocks)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use corten::image::{self, Global, PullOptions, registry::Creds};

#[derive(Parser)]
#[command(
    name = "corten-image",
    version,
    about = "Pull container images into OCI bundles"
)]
struct Cli {
    /// The image store (default /var/lib/corten/images as root, else $XDG_DATA_HOME/corten/images).
    #[arg(long, global = true, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Credentials for the registry (basic auth and token realms); default: ~/.docker/config.json.
    #[arg(long, global = true, value_name = "USER:PASS")]
    creds: Option<String>,
    /// A registry reached over plain HTTP if HTTPS fails (localhost always is).
    #[arg(long = "insecure-registry", global = true, value_name = "HOST")]
    insecure: Vec<String>,
    /// Pull REGISTRY's images from MIRROR first (a registry host; docker.io for Docker Hub),
    /// REGISTRY itself if the mirror fails. Repeatable, tried in order, before the mirrors
    /// of /etc/containers/registries.conf ($CONTAINERS_REGISTRIES_CONF).
    #[arg(long, global = true, value_name = "REGISTRY=MIRROR")]
    mirror: Vec<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Pull REF and unpack it into BUNDLE (BUNDLE/rootfs + BUNDLE/config.json).
    Pull {
        /// OS/ARCH[/VARIANT]; default: this host's.
        #[arg(long)]
        platform: Option<String>,
        /// Give the container a terminal (process.terminal).
        #[arg(long)]
        tty: bool,
        /// No progress output.
        #[arg(short, long)]
        quiet: bool,
        /// Print one JSON summary instead of progress.
        #[arg(long, conflicts_with = "quiet")]
        json: bool,
        /// Replace the rootfs and config.json of a non-empty BUNDLE.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        net: NetFlags,
        #[command(flatten)]
        run: RunFlags,
        /// Make BUNDLE/rootfs a plain directory with the layers applied, not an overlay
        /// over the store's layers (the default as root).
        #[arg(long)]
        copy: bool,
        /// NAME[:TAG|@DIGEST], oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE.
        reference: String,
        bundle: PathBuf,
        /// Replaces the image's Cmd.
        #[arg(last = true)]
        cmd: Vec<String>,
    },
    /// List the images in the store.
    Images {
        #[arg(long)]
        json: bool,
    },
    /// Remove an image from the store (and the blobs only it used).
    Rm { reference: String },
    /// Remove the blobs no image uses.
    Prune,
    /// The bundle's network hook (`--net bridge`), run by the runtime with the container's
    /// state on stdin: ACTION is add (createRuntime) or del (poststop).
    #[command(hide = true)]
    NetHook { action: String, dir: PathBuf },
    /// Mount an overlay BUNDLE's rootfs again (e.g. after a reboot).
    Mount { bundle: PathBuf },
    /// Unmount an overlay BUNDLE's rootfs.
    Umount { bundle: PathBuf },
    /// Unmount and remove BUNDLE, and drop the store's reference to it.
    RmBundle { bundle: PathBuf },
    /// Print an image's manifest and config as JSON.
    Inspect {
        #[arg(long)]
        platform: Option<String>,
        reference: String,
    },
}

/// The container's network, written into the bundle (see `corten::image::net`).
#[derive(clap::Args)]
struct NetFlags {
    /// none (its own network namespace, only loopback), host (the host's), or bridge (an
    /// address on a CNI bridge, default `corten0` 10.90.0.0/16, set up by the bundle's hooks).
    #[arg(long, default_value = "none", value_name = "MODE")]
    net: String,
    /// Publish a container port on the host: [IP:]HOSTPORT:CONTAINERPORT[/tcp|udp] (--net bridge).
    #[arg(short = 'p', long = "publish", value_name = "PORTS")]
    publish: Vec<String>,
    /// The container's hostname.
    #[arg(long)]
    hostname: Option<String>,
    /// A nameserver for the container's /etc/resolv.conf (replaces the host's).
    #[arg(long, value_name = "IP")]
    dns: Vec<std::net::IpAddr>,
    /// The CNI network configuration to use (its first *.conflist); default: corten-image's own.
    #[arg(long, value_name = "DIR")]
    cni_conf_dir: Option<PathBuf>,
    /// Where the CNI plugins are (default /usr/lib/cni).
    #[arg(long, value_name = "DIR")]
    cni_bin_dir: Option<PathBuf>,
}

impl NetFlags {
    /// The options, checked (each error one line, as corten-image's others).
    fn options(self) -> Result<image::net::NetOptions> {
        Ok(image::net::NetOptions {
            mode: self.net.parse()?,
            ports: self
                .publish
                .iter()
                .map(|p| p.parse())
                .collect::<Result<_>>()?,
            hostname: self.hostname,
            dns: self.dns,
            conf_dir: self.cni_conf_dir,
            bin_dir: self.cni_bin_dir,
        })
    }
}

/// docker run's flags, written into the bundle's config.json.
#[derive(clap::Args)]
struct RunFlags {
    /// The user: name, uid, name:group or uid:gid, resolved in the image (replaces its User).
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// An environment variable KEY=VALUE (after the image's).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// The working directory (replaces the image's).
    #[arg(short = 'w', long, value_name = "DIR")]
    workdir: Option<String>,
    /// Mount the rootfs read-only.
    #[arg(long)]
    read_only: bool,
    /// A memory limit: bytes, or a size like 512m, 1g.
    #[arg(short = 'm', long, value_name = "SIZE")]
    memory: Option<String>,
    /// A CPU quota in CPUs, like 1.5.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    cpus: Option<String>,
    /// At most this many processes (-1: no limit).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pids_limit: Option<i64>,
}

impl RunFlags {
    fn options(self) -> Result<image::bundle::RunOptions> {
        Ok(image::bundle::RunOptions {
            user: self.user,
            env: self.env,
            workdir: self.workdir,
            read_only: self.read_only,
            memory: self
                .memory
                .as_deref()
                .map(image::bundle::RunOptions::parse_memory)
                .transpose()?,
            cpus: self
                .cpus
                .as_deref()
                .map(image::bundle::RunOptions::parse_cpus)
                .transpose()?,
            pids_limit: self.pids_limit,
        })
    }
}

fn human(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

fn run(cli: Cli) -> Result<()> {
    let g = Global {
        store: cli.store,
        creds: cli.creds.as_deref().map(Creds::parse).transpose()?,
        insecure: cli.insecure,
        mirrors: cli
            .mirror
            .iter()
            .map(|m| match m.split_once('=') {
                Some((r, m)) if !r.is_empty() && !m.is_empty() => Ok((r.into(), m.into())),
                _ => Err(anyhow::anyhow!(
                    "--mirror must be REGISTRY=MIRROR, not {m:?}"
                )),
            })
            .chain(image::mirrors::from_registries_conf().into_iter().map(Ok))
            .collect::<Result<_>>()?,
    };
    match cli.cmd {
        Cmd::Pull {
            platform,
            tty,
            quiet,
            json,
            force,
            net,
            run,
            copy,
            reference,
            bundle,
            cmd,
        } => {
            let o = PullOptions {
                source: reference,
                bundle,
                platform,
                tty,
                quiet: quiet || json,
                force,
                copy,
                cmd,
                net: net.options()?,
                run: run.options()?,
            };
            let summary = image::pull(&g, &o)?;
            if json {
                corten::outln!("{summary}");
            }
        }
        Cmd::Images { json } => {
            let rows = image::images(&g)?;
            if json {
                corten::outln!("{}", serde_json::Value::from(rows));
            } else {
                corten::outln!(
                    "{:<50} {:<16} {:<71} {:<10} UNPACKED",
                    "REF",
                    "PLATFORM",
                    "DIGEST",
                    "SIZE"
                );
                for r in rows {
                    corten::outln!(
                        "{:<50} {:<16} {:<71} {:<10} {}",
                        r["ref"].as_str().unwrap_or_default(),
                        r["platform"].as_str().unwrap_or_default(),
                        r["digest"].as_str().unwrap_or_default(),
                        human(r["size"].as_u64().unwrap_or(0)),
                        r["unpacked"].as_u64().map_or("-".into(), human)
                    );
                }
            }
        }
        Cmd::Rm { reference } => {
            let (n, bytes) = image::rm(&g, &reference)?;
            corten::outln!("removed {reference} ({n} blobs, {})", human(bytes));
        }
        Cmd::Prune => {
            let (n, bytes) = image::prune(&g)?;
            corten::outln!("removed {n} blobs ({})", human(bytes));
        }
        Cmd::NetHook { action, dir } => image::net::hook(&action, &dir)?,
        Cmd::Mount { bundle } => {
            if !image::mount(&bundle)? {
                corten::outln!("{}: already mounted", bundle.display());
            }
        }
        Cmd::Umount { bundle } => {
            if !image::umount(&bundle)? {
                corten::outln!("{}: not mounted", bundle.display());
            }
        }
        Cmd::RmBundle { bundle } => image::rm_bundle(&bundle)?,
        Cmd::Inspect {
            platform,
            reference,
        } => {
            let v = image::inspect(&g, &reference, platform.as_deref())?;
            corten::outln!("{}", serde_json::to_string_pretty(&v)?);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // With --json, an error is a JSON object on stdout too, where the output would be.
    let json = matches!(
        cli.cmd,
        Cmd::Pull { json: true, .. } | Cmd::Images { json: true }
    );
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if json => {
            corten::outln!("{}", serde_json::json!({"error": image::error_line(&e)}));
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("corten-image: {}", image::error_line(&e));
            ExitCode::FAILURE
        }
    }
}
