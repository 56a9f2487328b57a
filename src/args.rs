//! Command-line values checked at the edge: the parsers the CLI gives clap for durations,
//! fd counts, `UID[:GID]`, uid/gid numbers and sizes. Each refuses what is out of range
//! with a short reason (clap names the flag and the value), so the commands get typed
//! values that cannot wrap around or panic later.

use std::num::IntErrorKind;
use std::time::Duration;

use nix::sys::resource::{Resource, getrlimit};

/// `--interval`: Go's duration syntax as runc takes it (`5s`, `500ms`, `1m30s`, `1h`; units
/// ns, us, ms, s, m, h; decimal fractions), or plain seconds. More than zero, at most
/// 2^64 ns (584 years).
pub fn duration(s: &str) -> Result<Duration, String> {
    let bad = || "expected a duration such as 5s, 500ms or 1m30s".to_string();
    let plain;
    let mut rest = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        plain = format!("{s}s");
        plain.as_str()
    } else {
        s
    };
    if rest.is_empty() {
        return Err(bad());
    }
    let mut nanos: u128 = 0;
    let too_large = || "too large: at most 584 years".to_string();
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_end);
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        let n = scaled(num, scale).map_err(|e| match e {
            NumError::Malformed => bad(),
            NumError::TooLarge => too_large(),
        })?;
        nanos = nanos.checked_add(n).ok_or_else(too_large)?;
        rest = next;
    }
    if nanos == 0 {
        return Err("must be more than 0".to_string());
    }
    let nanos = u64::try_from(nanos).map_err(|_| too_large())?;
    Ok(Duration::from_nanos(nanos))
}

/// The most extra fds (3 to 3+N-1) a process can be passed: each must be below the fd
/// limit (RLIMIT_NOFILE's hard limit, which the kernel caps well below i32::MAX).
pub fn max_preserve_fds() -> u32 {
    let hard = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(_, hard)| hard);
    u32::try_from(hard.min(i32::MAX as u64))
        .unwrap_or(0)
        .saturating_sub(3)
}

/// `--preserve-fds N`: at most [`max_preserve_fds`].
pub fn preserve_fds(s: &str) -> Result<u32, String> {
    match s.parse::<u64>() {
        Ok(n) => check_preserve_fds(n),
        Err(e) if *e.kind() == IntErrorKind::PosOverflow => check_preserve_fds(u64::MAX),
        Err(_) => Err(format!(
            "expected a number of fds, 0 to {}",
            max_preserve_fds()
        )),
    }
}

/// `n` extra fds, if they fit below the fd limit.
pub fn check_preserve_fds(n: u64) -> Result<u32, String> {
    let max = max_preserve_fds();
    if n > u64::from(max) {
        return Err(format!(
            "too many fds: fds 3 and up must be below RLIMIT_NOFILE ({}), so at most {max}",
            u64::from(max) + 3
        ));
    }
    Ok(n as u32)
}

/// A uid or gid as the kernel takes it: 4294967295 is (uid_t)-1, which set*id(2) read as
/// "leave unchanged", so it is refused.
pub fn id_number(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if n != u32::MAX => Ok(n),
        _ => Err(format!("expected a number from 0 to {}", u32::MAX - 1)),
    }
}

/// `exec -u UID[:GID]` (numbers, as runc's; the gid defaults to 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserIds {
    pub uid: u32,
    pub gid: u32,
}

pub fn user(s: &str) -> Result<UserIds, String> {
    let num = |v: &str| {
        id_number(v).map_err(|_| format!("expected UID[:GID], numbers from 0 to {}", u32::MAX - 1))
    };
    match s.split_once(':') {
        Some((u, g)) => Ok(UserIds {
            uid: num(u)?,
            gid: num(g)?,
        }),
        None => Ok(UserIds {
            uid: num(s)?,
            gid: 0,
        }),
    }
}

/// A size in bytes as docker and runc write it: `512m`, `1G`, `1.5g`, `100`, `64KiB`
/// (powers of 1024; units k m g t p, an optional `i` and `b`), or `-1` for unlimited.
pub fn bytes(s: &str) -> Result<i64, String> {
    let bad = || "expected a size such as 512m, 1g or -1 (unlimited)".to_string();
    let too_large = || format!("too large: at most {} bytes", i64::MAX);
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.strip_suffix('b').unwrap_or(&t);
    let t = t.strip_suffix('i').unwrap_or(t);
    let (num, shift) = match t.as_bytes().last() {
        Some(b'k') => (&t[..t.len() - 1], 10),
        Some(b'm') => (&t[..t.len() - 1], 20),
        Some(b'g') => (&t[..t.len() - 1], 30),
        Some(b't') => (&t[..t.len() - 1], 40),
        Some(b'p') => (&t[..t.len() - 1], 50),
        _ => (t, 0),
    };
    match scaled(num, 1 << shift) {
        Ok(n) => i64::try_from(n).map_err(|_| too_large()),
        Err(NumError::Malformed) => Err(bad()),
        Err(NumError::TooLarge) => Err(too_large()),
    }
}

enum NumError {
    Malformed,
    TooLarge,
}

/// A decimal number (`12`, `1.5`, `.5`) times `scale`, rounded down.
fn scaled(num: &str, scale: u128) -> Result<u128, NumError> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits = |v: &str| v.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return Err(NumError::Malformed);
    }
    let whole: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| NumError::TooLarge)?
    };
    // 18 digits of a fraction are finer than any unit's smallest step.
    let frac = &frac[..frac.len().min(18)];
    let part = if frac.is_empty() {
        0
    } else {
        frac.parse::<u128>().map_err(|_| NumError::Malformed)? * scale
            / 10u128.pow(frac.len() as u32)
    };
    whole
        .checked_mul(scale)
        .and_then(|n| n.checked_add(part))
        .ok_or(NumError::TooLarge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = |s: &str| duration(s).unwrap();
        assert_eq!(ok("5s"), Duration::from_secs(5));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("2"), Duration::from_secs(2));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("0.5"), Duration::from_millis(500));
        assert_eq!(ok("250us"), Duration::from_micros(250));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        for bad in [
            "",
            "0",
            "0s",
            "0.0s",
            "-1s",
            "s",
            "5x",
            "1.2.3s",
            ".s",
            "NaN",
            "inf",
            "1e3s",
            "100000000000000000000s",
            "99999999999999999999999999999999999999999h",
        ] {
            assert!(duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn fd_counts() {
        let max = max_preserve_fds();
        assert!(max > 0);
        assert_eq!(preserve_fds("0"), Ok(0));
        assert_eq!(preserve_fds(&max.to_string()), Ok(max));
        for bad in [
            (u64::from(max) + 1).to_string(),
            "4294967295".into(),
            "2147483647".into(),
            "99999999999999999999999".into(),
            "-1".into(),
            "".into(),
            "x".into(),
        ] {
            assert!(preserve_fds(&bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn users() {
        assert_eq!(user("1000"), Ok(UserIds { uid: 1000, gid: 0 }));
        assert_eq!(
            user("1000:100"),
            Ok(UserIds {
                uid: 1000,
                gid: 100
            })
        );
        for bad in [
            "bob",
            "1:x",
            "",
            ":",
            "1:",
            "-1",
            "4294967295",
            "0:4294967295",
            "1:2:3",
        ] {
            assert!(user(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(bytes("512m"), Ok(512 << 20));
        assert_eq!(bytes("1G"), Ok(1 << 30));
        assert_eq!(bytes("1gb"), Ok(1 << 30));
        assert_eq!(bytes("64KiB"), Ok(64 << 10));
        assert_eq!(bytes("1.5k"), Ok(1536));
        assert_eq!(bytes("100"), Ok(100));
        assert_eq!(bytes("-1"), Ok(-1));
        assert_eq!(bytes("8191p"), Ok(8191 << 50));
        for bad in [
            "x",
            "",
            "-2",
            "-1k",
            "8192p",
            "99999999999999999999999",
            "1..5m",
            ".m",
            "1x",
            "m",
            "1 m",
        ] {
            assert!(bytes(bad).is_err(), "{bad:?} accepted");
        }
    }
}
