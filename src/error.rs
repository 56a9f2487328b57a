//! The errors a caller tells apart by kind: a container that does not exist, an id in
//! use or not valid, a container not in the status a command needs. Commands return them
//! wrapped in anyhow like any other error; whoever must tell one apart (`delete --force`
//! takes a missing container as done) downcasts to [`Error`] instead of reading the text.
//!
//! Each prints exactly the message corten has always printed: engines and tests match it.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// No container has this id.
    NoSuchContainer { id: String },
    /// `create` with an id already in use.
    AlreadyExists { id: String },
    /// An id outside runc's rule (letters, digits and `_ + - .`, not `.` or `..`).
    InvalidId { id: String },
    /// The container's init is not running. `id` and `status` are named where the
    /// command's message always named them (`kill` and `exec` say neither).
    NotRunning {
        id: Option<String>,
        status: Option<&'static str>,
    },
    /// `delete` without --force of a container that has not stopped (`status`).
    NotStopped { id: String, status: &'static str },
}

impl Error {
    /// "container not running", as `kill` and `exec` say it.
    pub const NOT_RUNNING: Error = Error::NotRunning {
        id: None,
        status: None,
    };

    /// The [`Error`] `e` is, or that it wraps with context.
    pub fn of(e: &anyhow::Error) -> Option<&Error> {
        e.downcast_ref::<Error>()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoSuchContainer { id } => write!(f, "container {id:?} does not exist"),
            Error::AlreadyExists { id } => write!(f, "container {id:?} already exists"),
            Error::InvalidId { id } => {
                // A long id is cut at 64 characters.
                let shown: String = id.chars().take(64).collect();
                let more = if shown.len() < id.len() { "..." } else { "" };
                write!(
                    f,
                    "invalid container ID format: {shown:?}{more} (use letters, digits and _ + - . only)"
                )
            }
            Error::NotRunning { id: None, .. } => f.write_str("container not running"),
            Error::NotRunning {
                id: Some(id),
                status: None,
            } => write!(f, "container {id} is not running"),
            Error::NotRunning {
                id: Some(id),
                status: Some(status),
            } => write!(f, "container {id} is not running: {status}"),
            Error::NotStopped { id, status } => {
                write!(
                    f,
                    "cannot delete container {id} that is not stopped: {status}"
                )
            }
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_the_ones_engines_match() {
        let id = || "c1".to_string();
        let cases = [
            (
                Error::NoSuchContainer { id: id() },
                "container \"c1\" does not exist",
            ),
            (
                Error::AlreadyExists { id: id() },
                "container \"c1\" already exists",
            ),
            (
                Error::InvalidId { id: "a/b".into() },
                "invalid container ID format: \"a/b\" (use letters, digits and _ + - . only)",
            ),
            (
                Error::NotRunning {
                    id: None,
                    status: None,
                },
                "container not running",
            ),
            (
                Error::NotRunning {
                    id: Some(id()),
                    status: None,
                },
                "container c1 is not running",
            ),
            (
                Error::NotRunning {
                    id: Some(id()),
                    status: Some("created"),
                },
                "container c1 is not running: created",
            ),
            (
                Error::NotStopped {
                    id: id(),
                    status: "running",
                },
                "cannot delete container c1 that is not stopped: running",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want);
        }
        let long = Error::InvalidId { id: "/".repeat(70) };
        assert!(
            long.to_string()
                .contains(&format!("{:?}...", "/".repeat(64)))
        );
    }

    #[test]
    fn found_through_context() {
        use anyhow::Context;
        let e = Err::<(), _>(Error::NoSuchContainer { id: "x".into() })
            .context("open")
            .unwrap_err();
        assert_eq!(
            Error::of(&e),
            Some(&Error::NoSuchContainer { id: "x".into() })
        );
        assert_eq!(Error::of(&anyhow::anyhow!("container not running")), None);
    }
}
