//! The `corten` command line: runc's commands and flags, so engines can call it unchanged.

#![deny(clippy::undocumented_unsafe_blocks)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

use corten::args;
use corten::log::{self, Format};
use corten::runtime::{self, create::CreateOpts};

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

#[derive(clap::Args)]
struct CreateArgs {
    /// Path to the bundle directory
    #[arg(short = 'b', long, default_value = ".")]
    bundle: PathBuf,
    /// Write the init's pid to this file
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Unix socket to send the pty master to (process.terminal)
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Use chroot (MS_MOVE) instead of pivot_root
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Do not create a new session keyring
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass N extra fds (3..3+N) to the process
    #[arg(long = "preserve-fds", default_value = "0", value_parser = args::preserve_fds)]
    preserve_fds: u32,
    /// Container id
    id: String,
}

#[derive(clap::Args)]
struct ExecArgs {
    /// Path to a process.json (a runtime-spec process); replaces the other process flags
    #[arg(short = 'p', long)]
    process: Option<PathBuf>,
    /// Working directory in the container
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Set an environment variable (KEY=VALUE; repeatable)
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// UID[:GID] to run as
    #[arg(short = 'u', long, value_parser = args::user)]
    user: Option<args::UserIds>,
    /// Additional gids (repeatable)
    #[arg(short = 'g', long = "additional-gids", value_parser = args::id_number)]
    additional_gids: Vec<u32>,
    /// Add a capability (repeatable)
    #[arg(short = 'c', long = "cap")]
    cap: Vec<String>,
    /// Set no_new_privs
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    /// AppArmor profile for the process
    #[arg(long)]
    apparmor: Option<String>,
    /// SELinux label for the process
    #[arg(long = "process-label")]
    process_label: Option<String>,
    /// Do not wait for the process
    #[arg(short = 'd', long)]
    detach: bool,
    /// Write the process's pid to this file
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Unix socket to send the pty master to
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Pass N extra fds (3..3+N) to the process
    #[arg(long = "preserve-fds", default_value = "0", value_parser = args::preserve_fds)]
    preserve_fds: u32,
    /// Existing sub-cgroup of the container's to run in: PATH, or CONTROLLER[,CONTROLLER]:PATH
    /// (cgroup v1; repeatable)
    #[arg(long, action = clap::ArgAction::Append)]
    cgroup: Vec<String>,
    /// Allow exec in a paused container
    #[arg(long = "ignore-paused")]
    ignore_paused: bool,
    /// Container id
    id: String,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Create a container from a bundle; it waits for `start`
    Create(CreateArgs),
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
        create: CreateArgs,
        /// Do not wait for the container
        #[arg(short = 'd', long)]
        detach: bool,
        /// Keep the container's state after it exits
        #[arg(long)]
        keep: bool,
    },
    /// Run a new process in a created or running container
    Exec(ExecArgs),
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
    Update(UpdateArgs),
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
    /// Write a default config.json
    Spec {
        #[arg(short = 'b', long, default_value = ".")]
        bundle: PathBuf,
        /// Make a config for rootless containers
        #[arg(long)]
        rootless: bool,
    },
}

#[derive(clap::Args)]
struct UpdateArgs {
    /// linux.resources JSON from a file, or - for stdin
    #[arg(short = 'r', long)]
    resources: Option<String>,
    /// Memory limit (e.g. 512m, 1g, -1)
    #[arg(short = 'm', long, allow_hyphen_values = true, value_parser = args::bytes)]
    memory: Option<i64>,
    #[arg(long = "memory-reservation", allow_hyphen_values = true, value_parser = args::bytes)]
    memory_reservation: Option<i64>,
    /// Memory plus swap limit
    #[arg(long = "memory-swap", allow_hyphen_values = true, value_parser = args::bytes)]
    memory_swap: Option<i64>,
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    cpu_quota: Option<i64>,
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    #[arg(long = "cpu-share")]
    cpu_share: Option<u64>,
    /// CPU realtime period (microseconds)
    #[arg(long = "cpu-rt-period")]
    cpu_rt_period: Option<u64>,
    /// CPU realtime runtime (microseconds)
    #[arg(long = "cpu-rt-runtime", allow_hyphen_values = true)]
    cpu_rt_runtime: Option<i64>,
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
    id: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum ListFormat {
    Table,
    Json,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
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
    if let Command::Spec { bundle, rootless } = command {
        runtime::spec::write(bundle, *rootless)?;
        return Ok(0);
    }
    if let Command::Features = command {
        corten::outln!(
            "{}",
            serde_json::to_string_pretty(&runtime::features::features())?
        );
        return Ok(0);
    }
    // Only the commands that keep state need the state root.
    let root_dir = match &cli.root {
        Some(r) => r.clone(),
        None => corten::container::default_root()?,
    };
    let root = root_dir.as_path();
    match command {
        Command::Create(args) => {
            corten::selfprotect::ensure(root)?;
            runtime::create::create(&create_opts(cli, root, args))?;
        }
        Command::Start { id } => runtime::start::start(root, id)?,
        Command::Exec(a) => {
            corten::selfprotect::ensure(root)?;
            let code = runtime::exec::exec(&runtime::exec::ExecOpts {
                root,
                id: &a.id,
                process_file: a.process.as_deref(),
                args: &a.command,
                cwd: a.cwd.as_deref(),
                env: &a.env,
                tty: a.tty,
                user: a.user,
                additional_gids: &a.additional_gids,
                caps: &a.cap,
                no_new_privs: a.no_new_privs,
                apparmor: a.apparmor.as_deref(),
                process_label: a.process_label.as_deref(),
                detach: a.detach,
                pid_file: a.pid_file.as_deref(),
                console_socket: a.console_socket.as_deref(),
                preserve_fds: a.preserve_fds,
                cgroup: &a.cgroup,
                ignore_paused: a.ignore_paused,
            })?;
            return Ok(u8::try_from(code).unwrap_or(255));
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
            let code = runtime::run::run(&create_opts(cli, root, create), *detach, *keep)?;
            return Ok(u8::try_from(code).unwrap_or(255));
        }
        Command::List { format, quiet } => {
            let states = runtime::list::states(root)?;
            if *quiet {
                for s in &states {
                    corten::outln!("{}", s["id"].as_str().unwrap_or_default());
                }
            } else if matches!(format, ListFormat::Json) {
                corten::outln!("{}", serde_json::to_string(&states)?);
            } else {
                corten::out!("{}", runtime::list::table(&states));
            }
        }
        Command::Events {
            stats,
            interval,
            id,
        } => {
            if *stats {
                corten::outln!("{}", runtime::events::stats(root, id)?);
            } else {
                runtime::events::stream(root, id, *interval)?;
            }
        }
        Command::Spec { .. } | Command::Features => unreachable!("handled above"),
        Command::Pause { id } => runtime::pause::pause(root, id)?,
        Command::Resume { id } => runtime::pause::resume(root, id)?,
        Command::Ps {
            format,
            id,
            ps_args,
        } => match format {
            ListFormat::Json => {
                corten::outln!("{}", serde_json::to_string(&runtime::ps::pids(root, id)?)?)
            }
            ListFormat::Table => corten::out!("{}", runtime::ps::table(root, id, ps_args)?),
        },
        Command::Update(u) => {
            let flags = runtime::update::Flags {
                resources: u.resources.clone(),
                memory: u.memory,
                memory_reservation: u.memory_reservation,
                memory_swap: u.memory_swap,
                cpu_quota: u.cpu_quota,
                cpu_period: u.cpu_period,
                cpu_share: u.cpu_share,
                cpu_rt_period: u.cpu_rt_period,
                cpu_rt_runtime: u.cpu_rt_runtime,
                cpuset_cpus: u.cpuset_cpus.clone(),
                cpuset_mems: u.cpuset_mems.clone(),
                pids_limit: u.pids_limit,
                blkio_weight: u.blkio_weight,
            };
            runtime::update::update(root, &u.id, &flags)?;
        }
    }
    Ok(0)
}

fn create_opts<'a>(cli: &'a Cli, root: &'a Path, a: &'a CreateArgs) -> CreateOpts<'a> {
    CreateOpts {
        root,
        systemd_cgroup: cli.systemd_cgroup,
        id: &a.id,
        bundle: &a.bundle,
        pid_file: a.pid_file.as_deref(),
        console_socket: a.console_socket.as_deref(),
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
    }
}
