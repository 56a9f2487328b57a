//! corten-image against a misbehaving registry: a small fault-injecting HTTP/1.1 proxy in
//! front of the real local registry answers 429 with Retry-After, cuts a blob body short,
//! and redirects blobs to another host:port; plus the progress output on a terminal, and
//! the requests a warm pull makes (the proxy's log).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{Out, TempDir};
use crate::image_support::*;

/// One request the proxy received, and what it did with it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    range: Option<String>,
    auth: bool,
    at: Instant,
    act: Act,
}

impl Seen {
    fn is_blob(&self) -> bool {
        self.path.contains("/blobs/sha256:")
    }
}

/// What the proxy does with a request.
#[derive(Clone, Debug, PartialEq)]
enum Act {
    Forward,
    /// `429 Too Many Requests` with `Retry-After: 1`.
    TooMany,
    /// Forward, but close the connection after half the response body.
    Cut,
    /// Forward, pausing 3.5 s after half the response body.
    Slow,
    /// `307` to the same path on 127.0.0.1:port.
    Redirect(u16),
    /// `200` with this file's bytes.
    Serve(PathBuf),
}

type Rule = Box<dyn FnMut(&Seen) -> Act + Send>;

/// A listener on 127.0.0.1:0, a thread per connection, one request per connection
/// (`Connection: close` both ways). Stops (and joins its threads) when dropped.
struct Proxy {
    port: u16,
    log: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Forwards to the registry on `upstream`, except where `rule` says otherwise.
    fn start(upstream: u16, rule: impl FnMut(&Seen) -> Act + Send + 'static) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let rule: Arc<Mutex<Rule>> = Arc::new(Mutex::new(Box::new(rule)));
        let (log2, stop2) = (log.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut conns = Vec::new();
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(s) = conn {
                    let (log, rule) = (log2.clone(), rule.clone());
                    conns.push(std::thread::spawn(move || {
                        let _ = handle(s, upstream, &log, &rule);
                    }));
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        Proxy {
            port,
            log,
            stop,
            thread: Some(thread),
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads an HTTP head (start line and headers, up to the blank line).
fn read_head(r: &mut impl BufRead) -> std::io::Result<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = l.trim_end().to_string();
        if l.is_empty() {
            return Ok(lines);
        }
        lines.push(l);
    }
}

fn header<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter().skip(1).find_map(|h| {
        let (k, v) = h.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn handle(
    client: TcpStream,
    upstream: u16,
    log: &Mutex<Vec<Seen>>,
    rule: &Mutex<Rule>,
) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut r = BufReader::new(client.try_clone()?);
    // The HTTPS probe (a TLS ClientHello): close, so the client falls back to plain HTTP.
    if !r.fill_buf()?.first().is_some_and(u8::is_ascii_uppercase) {
        return Ok(());
    }
    let head = read_head(&mut r)?;
    let mut seen = Seen {
        method: head[0].split_whitespace().next().unwrap_or_default().into(),
        path: head[0].split_whitespace().nth(1).unwrap_or_default().into(),
        range: header(&head, "Range").map(String::from),
        auth: header(&head, "Authorization").is_some(),
        at: Instant::now(),
        act: Act::Forward,
    };
    seen.act = (rule.lock().unwrap())(&seen);
    log.lock().unwrap().push(seen.clone());
    let mut w = client;
    let empty = |status: &str, extra: &str| {
        format!("HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n")
    };
    match seen.act {
        Act::TooMany => {
            w.write_all(empty("429 Too Many Requests", "Retry-After: 1\r\n").as_bytes())
        }
        Act::Redirect(port) => w.write_all(
            empty(
                "307 Temporary Redirect",
                &format!("Location: http://127.0.0.1:{port}{}\r\n", seen.path),
            )
            .as_bytes(),
        ),
        Act::Serve(file) => {
            let data = std::fs::read(file)?;
            write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                data.len()
            )?;
            w.write_all(&data)
        }
        Act::Forward | Act::Cut | Act::Slow => {
            let up = TcpStream::connect(("127.0.0.1", upstream))?;
            up.set_read_timeout(Some(Duration::from_secs(30)))?;
            let mut req = String::new();
            for h in &head {
                if !h.to_ascii_lowercase().starts_with("connection:") {
                    req.push_str(&format!("{h}\r\n"));
                }
            }
            req.push_str("Connection: close\r\n\r\n");
            (&up).write_all(req.as_bytes())?;
            let mut ur = BufReader::new(up);
            let resp = read_head(&mut ur)?;
            w.write_all(format!("{}\r\n\r\n", resp.join("\r\n")).as_bytes())?;
            if seen.act != Act::Forward {
                let len: u64 = header(&resp, "Content-Length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                std::io::copy(&mut (&mut ur).take(len / 2), &mut w)?;
                if seen.act == Act::Cut {
                    return w.shutdown(std::net::Shutdown::Both);
                }
                w.flush()?;
                std::thread::sleep(Duration::from_millis(3500));
            }
            std::io::copy(&mut ur, &mut w).map(|_| ())
        }
    }
}

/// A one-layer busybox image pushed to `reg` as `repo:v1`.
fn pushed(reg: &Registry, tmp: &TempDir, repo: &str, creds: Option<&str>) -> Image {
    let mut l = base_entries();
    l.push(E::File("hello.txt", "resilient", 0o644));
    let arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        "x86_64" => "amd64",
        a => a,
    };
    let img = image(
        vec![(l, Comp::Gzip)],
        json!({"Cmd": ["cat", "/hello.txt"]}),
        arch,
        None,
    );
    layout_of(&tmp.join("layout"), &img, "v1");
    reg.push(&tmp.join("layout"), "v1", repo, false, creds);
    img
}

/// `corten-image pull [extra] --store TMP/store REF TMP/name`, asserting success and the
/// unpacked file.
fn pull_via(host: &str, repo: &str, tmp: &TempDir, name: &str, extra: &[&str]) -> Out {
    let store = tmp.join("store");
    let bundle = tmp.join(name);
    let r = format!("{host}/{repo}:v1");
    let mut args = vec!["pull"];
    args.extend_from_slice(extra);
    args.extend([
        "--store",
        store.to_str().unwrap(),
        &r,
        bundle.to_str().unwrap(),
    ]);
    let out = image_cmd(&args, &[]);
    out.ok();
    assert_eq!(read(&bundle.join("rootfs/hello.txt")), "resilient", "{out}");
    out
}

fn layer_path(img: &Image, repo: &str) -> String {
    format!("/v2/{repo}/blobs/{}", img.layers[0].digest)
}

#[test]
fn pull_retries_429_with_retry_after() {
    let reg = Registry::start();
    let tmp = TempDir::new("img-429");
    pushed(&reg, &tmp, "app", None);
    let mut faults = 0;
    let proxy = Proxy::start(reg.port, move |s| {
        if s.is_blob() && faults < 2 {
            faults += 1;
            Act::TooMany
        } else {
            Act::Forward
        }
    });
    let out = pull_via(&proxy.host(), "app", &tmp, "bundle", &[]);
    let seen = proxy.seen();
    let refused: Vec<&Seen> = seen.iter().filter(|s| s.act == Act::TooMany).collect();
    assert_eq!(refused.len(), 2, "{seen:#?}\n{out}");
    for f in refused {
        let retry = seen
            .iter()
            .find(|s| s.path == f.path && s.at > f.at)
            .unwrap_or_else(|| panic!("no retry of {}: {seen:#?}", f.path));
        let gap = retry.at - f.at;
        assert!(
            gap >= Duration::from_millis(900),
            "Retry-After: 1 not honoured for {}: retried after {gap:?}",
            f.path
        );
    }
    // Each retry says so on the terminal.
    assert_eq!(
        out.stderr.matches("HTTP 429: retrying in 1.0 s").count(),
        2,
        "{out}"
    );
}

/// A registry that refuses connections fails the pull at once, with one line and no
/// bundle: retries are for rate limits, server errors and resets.
#[test]
fn refused_connection_fails_fast() {
    let tmp = TempDir::new("img-refused");
    let port = free_port();
    let (bundle, store) = (tmp.join("bundle"), tmp.join("store"));
    let r = format!("127.0.0.1:{port}/app:v1");
    let args = [
        "pull",
        "--store",
        store.to_str().unwrap(),
        &r,
        bundle.to_str().unwrap(),
    ];
    let t0 = Instant::now();
    let out = image_cmd(&args, &[]);
    let took = t0.elapsed();
    assert_image_err(&out, &["cannot reach registry", "Connection refused"]);
    assert!(!out.stderr.contains("retrying"), "{out}");
    assert!(took < Duration::from_secs(2), "took {took:?}: {out}");
    assert!(!bundle.exists());
}

/// `--mirror REGISTRY=MIRROR` or registries.conf: the mirror serves the registry's images
/// (here the registry itself is down); a mirror that fails leaves the registry to serve
/// them.
#[test]
fn mirrors_first_then_the_registry() {
    let reg = Registry::start();
    let tmp = TempDir::new("img-mirror");
    pushed(&reg, &tmp, "app", None);
    let mirror = Proxy::start(reg.port, |_| Act::Forward);
    let down = format!("127.0.0.1:{}", free_port());
    let flag = format!("{down}={}", mirror.host());
    pull_via(&down, "app", &tmp, "b1", &["--mirror", &flag]);
    assert!(
        mirror.seen().iter().any(Seen::is_blob),
        "the mirror served the layers"
    );
    let flag = format!("{}={down}", reg.host());
    pull_via(&reg.host(), "app", &tmp, "b2", &["--mirror", &flag]);
    // The same mirror from a registries.conf.
    let conf = tmp.join("registries.conf");
    let text = format!(
        "[[registry]]\nprefix = \"{down}\"\n[[registry.mirror]]\nlocation = \"{}\"\n",
        mirror.host()
    );
    std::fs::write(&conf, text).unwrap();
    let (store, b3, r) = (tmp.join("store"), tmp.join("b3"), format!("{down}/app:v1"));
    let args = [
        "pull",
        "--store",
        store.to_str().unwrap(),
        &r,
        b3.to_str().unwrap(),
    ];
    image_cmd(
        &args,
        &[("CONTAINERS_REGISTRIES_CONF", conf.to_str().unwrap())],
    )
    .ok();
    assert_eq!(read(&b3.join("rootfs/hello.txt")), "resilient");
    assert_image_err(
        &image_cmd(&["--mirror", "nonsense", "images"], &[]),
        &["--mirror must be REGISTRY=MIRROR"],
    );
}

/// A warm pull of a tag asks the registry one thing, the tag's digest (one HEAD, no
/// `/v2/` ping, no manifest download), and takes the manifest from the store; a tag moved
/// in the registry is seen by the next pull all the same; a pull by a digest the store
/// holds makes no request at all.
#[test]
fn warm_pull_asks_only_for_the_tag_digest() {
    let reg = Registry::start();
    let tmp = TempDir::new("img-warm");
    let first = pushed(&reg, &tmp, "app", None);
    let proxy = Proxy::start(reg.port, |_| Act::Forward);
    pull_via(&proxy.host(), "app", &tmp, "cold", &[]);
    let cold = proxy.seen().len();

    pull_via(&proxy.host(), "app", &tmp, "warm", &[]);
    let seen: Vec<(String, String)> = proxy.seen()[cold..]
        .iter()
        .map(|s| (s.method.clone(), s.path.clone()))
        .collect();
    assert_eq!(
        seen,
        [("HEAD".to_string(), "/v2/app/manifests/v1".to_string())],
        "a warm pull's requests"
    );

    // The tag moves to another image: the next pull gets it.
    let mut l = base_entries();
    l.push(E::File("hello.txt", "moved", 0o644));
    let moved = image(
        vec![(l, Comp::Gzip)],
        json!({"Cmd": ["cat", "/hello.txt"]}),
        &first.arch,
        None,
    );
    layout_of(&tmp.join("layout2"), &moved, "v1");
    reg.push(&tmp.join("layout2"), "v1", "app", false, None);
    let store = tmp.join("store");
    let pull = |r: &str, name: &str| {
        let b = tmp.join(name);
        let args = ["pull", "--json", "--store", store.to_str().unwrap(), r];
        let out = image_cmd(&[&args[..], &[b.to_str().unwrap()]].concat(), &[]);
        out.ok();
        let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
        (
            v["digest"].as_str().unwrap().to_string(),
            read(&b.join("rootfs/hello.txt")),
        )
    };
    let tag = format!("{}/app:v1", proxy.host());
    assert_eq!(
        pull(&tag, "moved"),
        (moved.manifest.digest.clone(), "moved".into())
    );

    // The first image by digest: from the store alone.
    let before = proxy.seen().len();
    let pinned = format!("{}/app@{}", proxy.host(), first.manifest.digest);
    assert_eq!(
        pull(&pinned, "pinned"),
        (first.manifest.digest.clone(), "resilient".into())
    );
    assert_eq!(
        proxy.seen()[before..].len(),
        0,
        "{:#?}",
        &proxy.seen()[before..]
    );
}

/// Without a terminal, a long download prints its byte count every few seconds.
#[test]
fn plain_progress_counts_bytes_of_long_downloads() {
    let reg = Registry::start();
    let tmp = TempDir::new("img-slow");
    let img = pushed(&reg, &tmp, "app", None);
    let layer = layer_path(&img, "app");
    let proxy = Proxy::start(reg.port, move |s| {
        if s.path == layer {
            Act::Slow
        } else {
            Act::Forward
        }
    });
    let out = pull_via(&proxy.host(), "app", &tmp, "bundle", &[]);
    let short = &img.layers[0].digest[7..19];
    let counts: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with(&format!("{short} downloading ")))
        .collect();
    assert!(!counts.is_empty(), "{out}");
    assert!(counts[0].contains(" of "), "{out}");
}

#[test]
fn interrupted_blob_resumes_with_range() {
    let reg = Registry::start();
    let tmp = TempDir::new("img-range");
    let img = pushed(&reg, &tmp, "app", None);
    let layer = layer_path(&img, "app");
    let mut cut = false;
    let target = layer.clone();
    let proxy = Proxy::start(reg.port, move |s| {
        if s.path == target && !cut {
            cut = true;
            Act::Cut
        } else {
            Act::Forward
        }
    });
    let out = pull_via(&proxy.host(), "app", &tmp, "bundle", &[]);
    let seen = proxy.seen();
    let first = seen
        .iter()
        .position(|s| s.act == Act::Cut)
        .unwrap_or_else(|| panic!("the layer was never fetched: {seen:#?}"));
    assert_eq!(seen[first].range, None);
    let size = img.layers[0].data.len() as u64;
    let resumed = seen[first + 1..]
        .iter()
        .filter(|s| s.path == layer)
        .find_map(|s| {
            let n = s
                .range
                .as_deref()?
                .strip_prefix("bytes=")?
                .strip_suffix('-')?;
            n.parse::<u64>().ok()
        });
    match resumed {
        Some(n) => assert!(n > 0 && n < size, "Range start {n} of {size}"),
        None => panic!("no `Range: bytes=N-` request after the cut: {seen:#?}\n{out}"),
    }
}

#[test]
fn redirect_to_other_host_drops_authorization() {
    let reg = Registry::start_token_auth();
    let tmp = TempDir::new("img-redirect");
    pushed(&reg, &tmp, "private/app", Some("admin:secret"));
    // The other host serves the blobs straight from the registry's storage (it cannot
    // forward: the registry would want a token it must not get).
    let data = reg.dir.join("data");
    let other = Proxy::start(0, move |s| {
        let digest = s.path.rsplit('/').next().unwrap_or_default();
        let hex = digest.trim_start_matches("sha256:");
        Act::Serve(data.join(format!(
            "docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2.min(hex.len())]
        )))
    });
    let (other_port, mut redirects) = (other.port, 0);
    let proxy = Proxy::start(reg.port, move |s| {
        if s.is_blob() && redirects < 8 {
            redirects += 1;
            Act::Redirect(other_port)
        } else {
            Act::Forward
        }
    });
    let out = pull_via(
        &proxy.host(),
        "private/app",
        &tmp,
        "bundle",
        &["--creds", "alice:wonderland"],
    );
    let first: Vec<Seen> = proxy.seen().into_iter().filter(Seen::is_blob).collect();
    assert!(
        !first.is_empty() && first.iter().all(|s| s.auth),
        "the first hop should carry Authorization: {first:#?}\n{out}"
    );
    let second = other.seen();
    assert!(!second.is_empty(), "nothing reached the other host\n{out}");
    assert!(
        second.iter().all(|s| !s.auth),
        "Authorization leaked to the other host: {second:#?}"
    );
}

#[test]
fn progress_bars_on_a_terminal() {
    let reg = Registry::start();
    let tmp = TempDir::new("img-progress");
    pushed(&reg, &tmp, "app", None);
    let bundle = tmp.join("tty");
    let cmd = format!(
        "'{}' pull --store '{}' '{}/app:v1' '{}'",
        image_bin().display(),
        tmp.join("store-tty").display(),
        reg.host(),
        bundle.display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .expect("this test needs util-linux script");
    let tty = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{cmd}:\n{tty}");
    assert_eq!(read(&bundle.join("rootfs/hello.txt")), "resilient");
    assert!(
        tty.contains("eta ") && tty.contains("[===") && tty.contains("MiB/"),
        "no progress bar on a terminal:\n{tty:?}"
    );
    let wrote = format!("wrote {}", bundle.display());
    assert!(
        tty.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(str::trim)
            == Some(wrote.as_str()),
        "the last line should be {wrote:?}:\n{tty:?}"
    );

    // Without a terminal: plain lines, one per step, no carriage returns.
    let plain = pull_via(&reg.host(), "app", &tmp, "plain", &[]);
    assert!(!plain.stdout.contains('\r'), "{plain}");
    assert!(
        plain.stdout.lines().any(|l| l.ends_with(" unpacked")),
        "{plain}"
    );
    assert_eq!(
        plain.stdout.lines().last(),
        Some(format!("wrote {}", tmp.join("plain").display()).as_str()),
        "{plain}"
    );
}

/// `prune` during a pull waits for it: it must not delete the manifest, config and layers
/// a pull has stored but not yet recorded under a ref.
#[test]
fn prune_waits_for_a_pull_in_progress() {
    let reg = Registry::start();
    let tmp = TempDir::new("img-prune");
    let img = pushed(&reg, &tmp, "app", None);
    let layer = layer_path(&img, "app");
    let mut held = false;
    // The layer's first request gets 429 + Retry-After: 1, so the pull sits for a second
    // with its manifest and config in the store and no ref recorded.
    let proxy = Proxy::start(reg.port, move |s| {
        if s.path == layer && !held {
            held = true;
            Act::TooMany
        } else {
            Act::Forward
        }
    });
    let host = proxy.host();
    let pull = {
        let tmp_path = tmp.path().to_path_buf();
        std::thread::spawn(move || {
            let store = tmp_path.join("store");
            let bundle = tmp_path.join("bundle");

            image_cmd(
                &[
                    "pull",
                    "--store",
                    store.to_str().unwrap(),
                    &format!("{host}/app:v1"),
                    bundle.to_str().unwrap(),
                ],
                &[],
            )
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !proxy.seen().iter().any(|s| s.act == Act::TooMany) {
        assert!(
            Instant::now() < deadline,
            "the pull never asked for its layer"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let store = tmp.join("store");
    let out = image_cmd(&["prune", "--store", store.to_str().unwrap()], &[]);
    out.ok();
    let pulled = pull.join().unwrap();
    pulled.ok();
    // Had prune not waited, it would have deleted the manifest and config the pull had
    // stored but not yet recorded: `images` could not read them and they would be gone.
    assert_eq!(read(&tmp.join("bundle/rootfs/hello.txt")), "resilient");
    for d in [&img.config.digest, &img.layers[0].digest] {
        assert!(
            store.join("blobs/sha256").join(&d[7..]).is_file(),
            "{d} kept in the store"
        );
    }
    let out = image_cmd(&["images", "--store", store.to_str().unwrap()], &[]);
    out.ok();
    assert!(out.stdout.contains("/app:v1"), "{out}");
}
