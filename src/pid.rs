//! A process named by its pid and its start time (field 22 of /proc/<pid>/stat): the
//! state records both, so a pid the kernel has reused for another process is never taken
//! for the container's init.

use anyhow::{Context, Result};

/// `pid` is alive (not a zombie) and is still the process that started at `start`.
pub fn process_alive(pid: i32, start: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    match procfs::process::Process::new(pid).and_then(|p| p.stat()) {
        Ok(stat) => stat.starttime == start && !matches!(stat.state, 'Z' | 'X' | 'x'),
        Err(_) => false,
    }
}

/// The start time of `pid` from /proc/<pid>/stat.
pub fn process_start_time(pid: i32) -> Result<u64> {
    let stat = procfs::process::Process::new(pid)
        .and_then(|p| p.stat())
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    Ok(stat.starttime)
}
