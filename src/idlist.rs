//! The kernel's list format for CPUs and NUMA nodes ("0-3,7"), as used by cpusets,
//! `execCPUAffinity` and `memoryPolicy.nodes`.

use anyhow::{Result, bail};

/// Parses a comma-separated list of numbers and inclusive ranges into a bit mask of
/// `max` bits (one u64 per 64 ids). Every id must be below `max`; empty items, reversed
/// ranges and anything but digits are errors.
pub fn parse(list: &str, max: usize) -> Result<Vec<u64>> {
    let mut mask = vec![0u64; max.div_ceil(64)];
    if list.trim().is_empty() {
        bail!("empty list");
    }
    for item in list.split(',') {
        let (lo, hi) = match item.split_once('-') {
            Some((a, b)) => (number(a, list)?, number(b, list)?),
            None => {
                let n = number(item, list)?;
                (n, n)
            }
        };
        if lo > hi {
            bail!("{list:?}: range {item:?} is reversed");
        }
        if hi >= max {
            bail!("{list:?}: {hi} is above the maximum {}", max - 1);
        }
        for id in lo..=hi {
            mask[id / 64] |= 1 << (id % 64);
        }
    }
    Ok(mask)
}

fn number(s: &str, list: &str) -> Result<usize> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        bail!("{list:?} is not a list like \"0-3,7\"");
    }
    s.parse()
        .map_err(|_| anyhow::anyhow!("{list:?}: {s} is too large"))
}

/// The ids set in `mask`, in order.
pub fn ids(mask: &[u64]) -> impl Iterator<Item = usize> + '_ {
    (0..mask.len() * 64).filter(|i| mask[i / 64] & (1 << (i % 64)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> Vec<usize> {
        ids(&parse(s, 128).unwrap()).collect()
    }

    #[test]
    fn numbers_and_ranges() {
        assert_eq!(list("0"), vec![0]);
        assert_eq!(list("0-3,7"), vec![0, 1, 2, 3, 7]);
        assert_eq!(list("7,0-1,1"), vec![0, 1, 7]);
        assert_eq!(list("64-65,127"), vec![64, 65, 127]);
    }

    #[test]
    fn bad_lists_are_errors() {
        for bad in [
            "",
            " ",
            "a",
            "1,",
            ",1",
            "1,,2",
            "3-1",
            "1-",
            "-1",
            "1-2-3",
            "0x1",
            "128",
            "1 ",
            "99999999999999999999999",
        ] {
            assert!(parse(bad, 128).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn errors_say_why() {
        let e = parse("0-200", 128).unwrap_err().to_string();
        assert!(e.contains("maximum 127"), "{e}");
        let e = parse("2-1", 128).unwrap_err().to_string();
        assert!(e.contains("reversed"), "{e}");
    }
}
