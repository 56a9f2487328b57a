//! `checkpoint` and `restore` on the host: the flags and the errors that need no CRIU.
//! CRIU itself runs only in the guest (guest/checkpoint.rs): it cannot initialise on this
//! host's kernel, and is not installed here, so every request that reaches it must fail
//! with one clear line and leave the container as it was.

use std::fs;

use crate::common::{Container, TempDir, assert_err, is_runc, skip, sleeper};

/// True when a `criu` binary is on PATH (then the "no criu" tests don't apply).
fn criu_on_path() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("criu").is_file()))
}

/// `restore -d --image-path IMAGES -b BUNDLE ID` of `c`.
fn restore(c: &Container, images: &std::path::Path) -> crate::common::Out {
    c.rt(&[
        "restore",
        "-d",
        "--image-path",
        images.to_str().unwrap(),
        "-b",
        &c.bundle_str(),
        &c.id,
    ])
}

#[test]
fn checkpoint_without_criu_is_one_line_and_leaves_it_running() {
    if criu_on_path() {
        skip!("criu is installed here: the guest suite tests checkpoint with it");
    }
    let c = sleeper("ckpt-nocriu");
    c.create_ok();
    c.start_ok();
    let images = TempDir::new("images");
    let img = images.join("img");
    let out = c.rt(&["checkpoint", "--image-path", img.to_str().unwrap(), &c.id]);
    assert_err(&out, &["criu"], &["criu"]);
    assert!(!img.exists(), "a failed checkpoint left {}", img.display());
    c.wait_status("running", std::time::Duration::from_secs(5));
}

#[test]
fn checkpoint_of_a_stopped_container_fails() {
    let mut c = Container::new("ckpt-stopped");
    c.args(&["true"]);
    c.create_ok();
    c.start_ok();
    c.wait_status("stopped", std::time::Duration::from_secs(10));
    let images = TempDir::new("images");
    let out = c.rt(&[
        "checkpoint",
        "--image-path",
        images.path().to_str().unwrap(),
        &c.id,
    ]);
    assert_err(&out, &["not running"], &["not running", "stopped", "criu"]);
    c.wait_status("stopped", std::time::Duration::from_secs(1));
}

#[test]
fn checkpoint_of_an_unknown_container_fails() {
    let c = Container::new("ckpt-unknown");
    let out = c.rt(&["checkpoint", &c.id]);
    assert_err(&out, &["does not exist"], &["does not exist", "not exist"]);
}

#[test]
fn checkpoint_flag_values_are_checked() {
    let c = Container::new("ckpt-flags");
    let out = c.rt(&["checkpoint", "--manage-cgroups-mode", "loose", &c.id]);
    out.fails();
    assert!(out.stderr.contains("loose"), "{out}");
    if !is_runc() {
        let out = c.rt(&["checkpoint", "--empty-ns", "pid", &c.id]);
        assert_err(&out, &["pid", "not supported"], &[]);
    }
}

#[test]
fn restore_from_a_missing_image_dir_leaves_nothing() {
    let c = Container::new("rst-missing");
    c.write_config();
    let images = TempDir::new("images");
    let img = images.join("absent");
    let out = restore(&c, &img);
    assert_err(
        &out,
        &["image", "no such file"],
        &["no such file", "not exist"],
    );
    c.assert_no_leftovers();
}

#[test]
fn restore_from_a_directory_without_a_checkpoint_fails() {
    let c = Container::new("rst-empty");
    c.write_config();
    let images = TempDir::new("images");
    let out = restore(&c, images.path());
    assert_err(
        &out,
        &["descriptors.json", "not a checkpoint"],
        &["descriptors.json", "no such file"],
    );
    c.assert_no_leftovers();
}

#[test]
fn restore_into_an_existing_id_fails_and_keeps_it() {
    let c = sleeper("rst-exists");
    c.create_ok();
    c.start_ok();
    let images = TempDir::new("images");
    fs::write(images.join("descriptors.json"), "[]").unwrap();
    let out = restore(&c, images.path());
    assert_err(&out, &["already exists"], &["exists"]);
    c.wait_status("running", std::time::Duration::from_secs(5));
}

#[test]
fn restore_without_criu_is_one_line_and_leaves_nothing() {
    if criu_on_path() {
        skip!("criu is installed here: the guest suite tests restore with it");
    }
    let c = Container::new("rst-nocriu");
    c.write_config();
    let images = TempDir::new("images");
    fs::write(images.join("descriptors.json"), "[]").unwrap();
    let out = restore(&c, images.path());
    assert_err(&out, &["criu"], &["criu"]);
    c.assert_no_leftovers();
}

/// containerd's runc shim (go-runc) passes `-no-subreaper` with one dash, which runc's
/// flag parser takes: the restore gets past its arguments (to the missing image here).
#[test]
fn restore_takes_go_runcs_single_dash_no_subreaper() {
    let c = Container::new("rst-1dash");
    c.write_config();
    let images = TempDir::new("images");
    let img = images.join("absent");
    let out = c.rt(&[
        "restore",
        "--detach",
        "-no-subreaper",
        "--image-path",
        img.to_str().unwrap(),
        "--bundle",
        &c.bundle_str(),
        &c.id,
    ]);
    assert_err(
        &out,
        &["image", "no such file"],
        &["no such file", "not exist"],
    );
    c.assert_no_leftovers();
}
