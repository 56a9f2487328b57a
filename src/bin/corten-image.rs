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
