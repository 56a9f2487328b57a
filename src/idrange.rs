//! User-namespace id maps as the kernel writes them in /proc/<pid>/uid_map and gid_map:
//! lines of `inside outside size`.

/// One line of an id map: `size` ids from `inside` map to `outside` in the parent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub size: u32,
}

/// Parses /proc/<pid>/uid_map or gid_map.
pub fn parse_id_map(text: &str) -> Vec<IdRange> {
    text.lines()
        .filter_map(|l| {
            let v: Vec<u32> = l
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            match v[..] {
                [inside, outside, size] => Some(IdRange {
                    inside,
                    outside,
                    size,
                }),
                _ => None,
            }
        })
        .collect()
}
