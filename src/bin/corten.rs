//! The `corten` command line: runc's commands and flags, so engines can call it unchanged.
//! The flags of `create` (and `run`), `exec` and `update` are declared beside their
//! commands (`CreateOpts`, `ExecOpts`, `update::Flags`), which take them as parsed; here
//! are the global flags, the small commands' arguments, and the dispatch.

#![deny(clippy::undocumented_unsafe_blocks)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

use corten::args;
use corten::log::{self, Format};
use corten::runtime::{self, create::CreateOpts, exec::ExecOpts};

#[derive(Parser)]
#[command(
    name = "corten",
    about = "An OCI container runtime, a drop-in replacement for runc"
)]
#[command(disable_version_flag = true)]
struct Cli {
    /// Directory for container state (tmpfs is best) [default: /run/corten, or
    /// $XDG_RUNTIME_DIR/corten when not run as root]
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    /// Write log lines (and the final error) to this file
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log debug lines
    #[arg(long, global = true)]
    debug: bool,
    /// Manage cgroups with systemd: cgroupsPath is "slice:prefix:name" (cgroup v2)
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Accepted for runc compatibility (true, false or auto)
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    #[arg(value_parser = ["true", "false", "auto"])]
    rootless: Option<String>,
    /// Print the version
    #[arg(short = 'v', long = "version")]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Create a container from a bundle; it waits for `start`
    Create(CreateOpts),
    /// Run the user process of a created container
    Start { id: String },
    /// Print a container's state as JSON
    State { id: String },
    /// Send a signal to a container's init (default SIGTERM)
    Kill {
        /// Signal every process in the container
        #[arg(short = 'a', long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container
    Delete {
        /// Kill the container first if it is running
        #[arg(short = 'f', long)]
        force: bool,
        id: String,
    },
    /// Create and start a container; wait for it unless detached
    Run {
        #[command(flatten)]
        create: CreateOpts,
        /// Do not wait for the container
        #[arg(short = 'd', long)]
        detach: bool,
        /// Keep the container's state after it exits
        #[arg(long)]
        keep: bool,
    },
    /// Run a new process in a created or running container
    Exec(ExecOpts),
    /// List containers
    List {
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: ListFormat,
        /// Print only ids
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Freeze every process of a container
    Pause { id: String },
    /// Thaw a paused container
    Resume { id: String },
    /// List a container's processes
    Ps {
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: ListFormat,
        id: String,
        /// Arguments for ps(1) (default -ef)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Change a running container's resource limits
    Update {
        #[command(flatten)]
        flags: runtime::update::Flags,
        id: String,
    },
    /// Print resource statistics and OOM events as JSON
    Events {
        /// Print the statistics once and exit
        #[arg(long)]
        stats: bool,
        /// Time between statistics (e.g. 5s, 500ms, 1m30s)
        #[arg(long, default_value = "5s", value_parser = args::duration)]
        interval: Duration,
        id: String,
    },
    /// Print what this runtime implements (runtime-spec features JSON)
    Features,
    /// Checkpoint a running container with CRIU
    Checkpoint(runtime::checkpoint::CheckpointOpts),
    /// Restore a container from a checkpoint with CRIU
    Restore(runtime::restore::RestoreOpts),
    /// Write a default config.json
    Spec {
        #[arg(short = 'b', long, default_value = ".")]
        bundle: PathBuf,
        /// Make a config for rootless containers
        #[arg(long)]
        rootless: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ListFormat {
    Table,
    Json,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse().or_else(|e| restore_no_subreaper().ok_or(e)) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let format = match cli.log_format {
        LogFormat::Text => Format::Text,
        LogFormat::Json => Format::Json,
    };
    if let Err(e) = log::init(cli.log.clone(), format, cli.debug) {
        log::fail(&format!("{e:#}"));
        return ExitCode::FAILURE;
    }
    if cli.version {
        corten::outln!("corten version {}", env!("CARGO_PKG_VERSION"));
        corten::outln!("commit: {}", env!("CORTEN_COMMIT"));
        corten::outln!("spec: {}", corten::spec_version::OCI_VERSION);
        return ExitCode::SUCCESS;
    }
    match dispatch(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            log::fail(&format!("{e:#}"));
            // runc's exec fails with 255, out of the range of its process's exit statuses
            // (which pass through); every other command with 1.
            if matches!(cli.command, Some(Command::Exec(_))) {
                ExitCode::from(255)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// `restore -no-subreaper`, with one dash: how containerd's runc shim (go-runc) spells it
/// (runc's flag parser takes either). Tried only when the arguments fail to parse as they
/// are, and kept only if they are a `restore`.
fn restore_no_subreaper() -> Option<Cli> {
    let args = std::env::args_os().map(|a| {
        if a == "-no-subreaper" {
            "--no-subreaper".into()
        } else {
            a
        }
    });
    Cli::try_parse_from(args)
        .ok()
        .filter(|cli| matches!(cli.command, Some(Command::Restore(_))))
}

/// clap's multi-line usage errors become one line; help goes to stdout with status 0.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind::*;
    if matches!(
        e.kind(),
        DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let text = e.render().to_string();
    let first: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let line = first.join(" ");
    log::fail(line.strip_prefix("error: ").unwrap_or(&line));
    ExitCode::from(2)
}

fn dispatch(cli: &Cli) -> Result<u8> {
    let Some(command) = &cli.command else {
        anyhow::bail!("no command given: see corten --help");
    };
    match command {
        Command::Spec { bundle, rootless } => runtime::spec::write(bundle, *rootless)?,
        Command::Features => corten::outln!(
            "{}",
            serde_json::to_string_pretty(&runtime::features::features())?
        ),
        // Only the commands that keep state need the state root.
        _ => {
            let root = match &cli.root {
                Some(r) => r.clone(),
                None => corten::container::default_root()?,
            };
            return with_state(command, &root);
        }
    }
    Ok(0)
}

/// The commands that keep state under `root`; returns the exit status.
fn with_state(command: &Command, root: &Path) -> Result<u8> {
    match command {
        Command::Create(opts) => {
            corten::selfprotect::ensure(root)?;
            runtime::create::create(root, opts)?;
        }
        Command::Start { id } => runtime::start::start(root, id)?,
        Command::Exec(opts) => {
            corten::selfprotect::ensure(root)?;
            return Ok(exit_status(runtime::exec::exec(root, opts)?));
        }
        Command::State { id } => {
            let state = runtime::state::state(root, id)?;
            corten::outln!("{}", serde_json::to_string_pretty(&state)?);
        }
        Command::Kill { all, id, signal } => runtime::kill::kill(root, id, signal, *all)?,
        Command::Delete { force, id } => runtime::delete::delete(root, id, *force)?,
        Command::Run {
            create,
            detach,
            keep,
        } => {
            corten::selfprotect::ensure(root)?;
            return Ok(exit_status(runtime::run::run(
                root, create, *detach, *keep,
            )?));
        }
        Command::List { format, quiet } => list(root, *format, *quiet)?,
        Command::Events {
            stats,
            interval,
            id,
        } => events(root, id, *stats, *interval)?,
        Command::Pause { id } => runtime::pause::pause(root, id)?,
        Command::Resume { id } => runtime::pause::resume(root, id)?,
        Command::Ps {
            format,
            id,
            ps_args,
        } => ps(root, id, *format, ps_args)?,
        Command::Update { flags, id } => runtime::update::update(root, id, flags)?,
        Command::Checkpoint(opts) => runtime::checkpoint::checkpoint(root, opts)?,
        Command::Restore(opts) => {
            return Ok(exit_status(runtime::restore::restore(root, opts)?));
        }
        Command::Spec { .. } | Command::Features => unreachable!("handled by dispatch"),
    }
    Ok(0)
}

/// A process's exit status as ours: 0 to 255 pass through, anything else is 255.
fn exit_status(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(255)
}

/// `list`: the containers as a table, JSON, or (`-q`) their ids.
fn list(root: &Path, format: ListFormat, quiet: bool) -> Result<()> {
    let states = runtime::list::states(root)?;
    if quiet {
        for s in &states {
            corten::outln!("{}", s["id"].as_str().unwrap_or_default());
        }
    } else if matches!(format, ListFormat::Json) {
        corten::outln!("{}", serde_json::to_string(&states)?);
    } else {
        corten::out!("{}", runtime::list::table(&states));
    }
    Ok(())
}

/// `events`: the statistics once (`--stats`), or a stream every `interval`.
fn events(root: &Path, id: &str, stats: bool, interval: Duration) -> Result<()> {
    if stats {
        corten::outln!("{}", runtime::events::stats(root, id)?);
        Ok(())
    } else {
        runtime::events::stream(root, id, interval)
    }
}

/// `ps`: the container's pids as JSON, or ps(1)'s table of them.
fn ps(root: &Path, id: &str, format: ListFormat, ps_args: &[String]) -> Result<()> {
    match format {
        ListFormat::Json => {
            corten::outln!("{}", serde_json::to_string(&runtime::ps::pids(root, id)?)?)
        }
        ListFormat::Table => corten::out!("{}", runtime::ps::table(root, id, ps_args)?),
    }
    Ok(())
}
