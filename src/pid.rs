//! A process named by its pid and its start time (field 22 of /proc/<pid>/stat): the
//! state records both, so a pid the kernel has reused for another process is never taken
//! for the container's init.

use std::io::Read;

use anyhow::{Context, Result, bail};

/// `pid` is alive (not a zombie) and is still the process that started at `start`.
pub fn process_alive(pid: i32, start: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    match read_stat(pid) {
        Ok(stat) => stat.start == start && !matches!(stat.state, 'Z' | 'X' | 'x'),
        Err(_) => false,
    }
}

/// The start time of `pid` from /proc/<pid>/stat.
pub fn process_start_time(pid: i32) -> Result<u64> {
    let stat = read_stat(pid).with_context(|| format!("read /proc/{pid}/stat"))?;
    Ok(stat.start)
}

/// The two fields of /proc/<pid>/stat we use.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    /// Field 3: R, S, D, Z...
    state: char,
    /// Field 22: the start time, in clock ticks since boot.
    start: u64,
}

/// Reads /proc/<pid>/stat directly (`list` checks every container's init: one open and
/// one read each, no allocation for the usual line).
fn read_stat(pid: i32) -> Result<Stat> {
    let mut f = std::fs::File::open(format!("/proc/{pid}/stat"))?;
    let mut buf = [0u8; 1024];
    let mut len = 0;
    // A line longer than the buffer (a very long comm cannot make one: it is 16 bytes at
    // most) would be cut; read until EOF anyway so the parse sees the whole line.
    loop {
        let n = f.read(&mut buf[len..])?;
        if n == 0 {
            break;
        }
        len += n;
        if len == buf.len() {
            let mut rest = buf.to_vec();
            f.read_to_end(&mut rest)?;
            return parse_stat(&rest);
        }
    }
    parse_stat(&buf[..len])
}

/// Field 3 and field 22 of a /proc/<pid>/stat line. The comm (field 2, in parentheses)
/// may hold spaces and parentheses itself: the fields after it start after the last `)`.
fn parse_stat(line: &[u8]) -> Result<Stat> {
    let Some(close) = line.iter().rposition(|&b| b == b')') else {
        bail!("no ')' after the command name");
    };
    let rest = std::str::from_utf8(&line[close + 1..]).context("not UTF-8")?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields
        .next()
        .and_then(|s| s.chars().next())
        .context("no state field")?;
    // Fields 4 to 21 come between the state and the start time.
    let start = fields
        .nth(18)
        .context("no start time field")?
        .parse()
        .context("start time is not a number")?;
    Ok(Stat { state, start })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_parsed() {
        let line = b"1234 (a) b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10 18446744073709551615\n";
        assert_eq!(
            parse_stat(line).unwrap(),
            Stat {
                state: 'S',
                start: 98765
            }
        );
        assert!(parse_stat(b"1234 (x) S 1 2").is_err());
        assert!(parse_stat(b"garbage").is_err());
    }

    #[test]
    fn this_process_matches_procfs() {
        let me = std::process::id() as i32;
        let ours = read_stat(me).unwrap();
        let theirs = procfs::process::Process::new(me).unwrap().stat().unwrap();
        assert_eq!(ours.start, theirs.starttime);
        assert!(process_alive(me, ours.start));
        assert!(!process_alive(me, ours.start + 1));
    }
}
