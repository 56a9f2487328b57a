//! /etc/passwd and /etc/group, parsed from their text. corten is linked statically, so
//! there is no NSS to ask: the owner `list` shows comes from the host's passwd, the HOME
//! of a container's process from the container's, and the user of an image's config from
//! the image's. The callers read the file (each from its own root); this module only
//! splits the lines, so all three agree on what an entry is.

/// One complete line of /etc/passwd: `name:password:uid:gid:gecos:home:shell`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct User<'a> {
    pub name: &'a str,
    /// None when the field is not a number.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub home: &'a str,
}

/// One line of /etc/group: `name:password:gid[:member,member…]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Group<'a> {
    pub name: &'a str,
    pub gid: Option<u32>,
    /// The comma-separated member list, if the line has the field.
    members: Option<&'a str>,
}

impl Group<'_> {
    /// Is `user` listed as a (supplementary) member?
    pub fn has_member(&self, user: &str) -> bool {
        self.members
            .is_some_and(|m| m.split(',').any(|m| m == user))
    }
}

/// The entries of a passwd file; lines without all seven fields are skipped.
pub fn users(passwd: &str) -> impl Iterator<Item = User<'_>> {
    passwd.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 7).then(|| User {
            name: f[0],
            uid: f[2].parse().ok(),
            gid: f[3].parse().ok(),
            home: f[5],
        })
    })
}

/// The entries of a group file; lines without name, password and gid are skipped.
pub fn groups(group: &str) -> impl Iterator<Item = Group<'_>> {
    group.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 3).then(|| Group {
            name: f[0],
            gid: f[2].parse().ok(),
            members: f.get(3).copied(),
        })
    })
}

/// The first user with `uid`.
pub fn by_uid(passwd: &str, uid: u32) -> Option<User<'_>> {
    users(passwd).find(|u| u.uid == Some(uid))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment is no entry
short:x:7:7
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
odd:x:abc:2::/home/odd:/bin/sh
dup:x:1:5::/elsewhere:/bin/sh
";

    const GROUP: &str = "\
root:x:0:
wheel:x:10:daemon,odd
nomembers:x:11
bad:x:zz:daemon
x:y
";

    #[test]
    fn users_need_all_seven_fields() {
        let names: Vec<&str> = users(PASSWD).map(|u| u.name).collect();
        assert_eq!(names, ["root", "daemon", "odd", "dup"]);
        let odd = users(PASSWD).find(|u| u.name == "odd").unwrap();
        assert_eq!((odd.uid, odd.gid, odd.home), (None, Some(2), "/home/odd"));
    }

    #[test]
    fn the_first_entry_with_a_uid_wins() {
        let d = by_uid(PASSWD, 1).unwrap();
        assert_eq!((d.name, d.gid, d.home), ("daemon", Some(1), "/usr/sbin"));
        assert!(
            by_uid(PASSWD, 7).is_none(),
            "an incomplete line is no entry"
        );
        assert!(by_uid(PASSWD, 99).is_none());
    }

    #[test]
    fn groups_and_their_members() {
        let g: Vec<(&str, Option<u32>)> = groups(GROUP).map(|g| (g.name, g.gid)).collect();
        assert_eq!(
            g,
            [
                ("root", Some(0)),
                ("wheel", Some(10)),
                ("nomembers", Some(11)),
                ("bad", None)
            ]
        );
        let wheel = groups(GROUP).nth(1).unwrap();
        assert!(wheel.has_member("daemon") && wheel.has_member("odd"));
        assert!(!wheel.has_member("root") && !wheel.has_member(""));
        let none = groups(GROUP).nth(2).unwrap();
        assert!(!none.has_member("daemon"));
    }
}
