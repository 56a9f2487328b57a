//! Support for the corten-image tests: a real registry (Debian's docker-registry, the
//! CNCF distribution server) on a free loopback port, a token server issuing RS256 JWTs,
//! images built by hand as OCI layouts from busybox-static, and pushes with skopeo.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::common::{Out, TempDir, rt, unique_id};

pub fn image_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_corten-image"))
}

/// Runs corten-image with `args` (and extra environment), capturing its output.
pub fn image_cmd(args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut c = Command::new(image_bin());
    c.args(args).stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run corten-image");
    Out {
        cmd: format!("corten-image {}", args.join(" ")),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A clean failure: non-zero exit, one `corten-image: ` line containing every `want`.
pub fn assert_image_err(out: &Out, want: &[&str]) {
    out.fails();
    let err = out.stderr.trim();
    assert_eq!(err.lines().count(), 1, "one error line expected:\n{out}");
    assert!(err.starts_with("corten-image: "), "{out}");
    for w in want {
        assert!(err.contains(w), "stderr should contain {w:?}:\n{out}");
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------
// The registry
// ---------------------------------------------------------------------------

pub struct Registry {
    child: Child,
    pub port: u16,
    pub dir: TempDir,
    /// The token server, when the registry uses token auth.
    pub tokens: Option<TokenServer>,
}

impl Registry {
    /// An open registry (no auth).
    pub fn start() -> Registry {
        Registry::start_with(None)
    }

    /// A registry with `auth: token`, backed by a token server on loopback.
    pub fn start_token_auth() -> Registry {
        Registry::start_with(Some(TokenServer::start()))
    }

    fn start_with(tokens: Option<TokenServer>) -> Registry {
        let dir = TempDir::new("registry");
        let port = free_port();
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: corten-test\n",
            dir.join("data").display()
        );
        if let Some(t) = &tokens {
            cfg.push_str(&format!(
                "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: corten-test\n    issuer: corten-test-issuer\n    rootcertbundle: {}\n",
                t.port,
                t.cert.display()
            ));
        }
        std::fs::write(dir.join("config.yml"), cfg).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
            .spawn()
            .expect("these tests need docker-registry (hack/install-deps.sh)");
        let reg = Registry {
            child,
            port,
            dir,
            tokens,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
                let mut line = String::new();
                if BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("HTTP/") {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "registry did not start: {}",
                std::fs::read_to_string(reg.dir.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `skopeo copy [--all] oci:LAYOUT:TAG docker://HOST/REPO:TAG`.
    pub fn push(&self, layout: &Path, tag: &str, repo: &str, all: bool, creds: Option<&str>) {
        let src = format!("oci:{}:{tag}", layout.display());
        let dst = format!("docker://{}/{repo}:{tag}", self.host());
        let mut c = Command::new("skopeo");
        c.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if all {
            c.arg("--all");
        }
        if let Some(cr) = creds {
            c.args(["--dest-creds", cr]);
        }
        let out = c
            .args([&src, &dst])
            .output()
            .expect("these tests need skopeo");
        assert!(
            out.status.success(),
            "skopeo copy {src} {dst}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Uploads a blob through the registry API (open registries only).
    pub fn put_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = format!("sha256:{}", sha256_hex(data));
        let agent = ureq::agent();
        let resp = agent
            .post(&format!("http://{}/v2/{repo}/blobs/uploads/", self.host()))
            .call()
            .unwrap();
        let loc = resp.header("Location").unwrap().to_string();
        let url = if loc.starts_with("http") {
            loc
        } else {
            format!("http://{}{loc}", self.host())
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        agent
            .put(&format!("{url}{sep}digest={d}"))
            .set("Content-Type", "application/octet-stream")
            .send_bytes(data)
            .unwrap();
        d
    }

    pub fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) {
        ureq::put(&format!(
            "http://{}/v2/{repo}/manifests/{reference}",
            self.host()
        ))
        .set("Content-Type", media_type)
        .send_bytes(body)
        .unwrap_or_else(|e| panic!("put manifest {repo}:{reference}: {e}"));
    }

    /// The path of a blob's data in the registry's filesystem store.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir.join(format!(
            "data/docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// The token server
// ---------------------------------------------------------------------------

/// Users: admin:secret may push and pull anything, alice:wonderland may pull anything,
/// anonymous clients may pull repositories under `public/`.
pub struct TokenServer {
    pub port: u16,
    pub cert: PathBuf,
    /// Requests served, and the scopes asked for.
    pub requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    dir: TempDir,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn openssl(args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let mut c = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("these tests need openssl");
    c.stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or_default())
        .unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// libtrust's key id: base32 of the first 30 bytes of SHA-256(SPKI DER), in groups of 4.
fn libtrust_kid(spki_der: &[u8]) -> String {
    const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let h = Sha256::digest(spki_der);
    let bytes = &h[..30];
    let mut bits = String::new();
    for b in bytes {
        bits.push_str(&format!("{b:08b}"));
    }
    let b32: String = bits
        .as_bytes()
        .chunks(5)
        .map(|c| ALPHA[usize::from_str_radix(std::str::from_utf8(c).unwrap(), 2).unwrap()] as char)
        .collect();
    b32.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":")
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

impl TokenServer {
    pub fn start() -> TokenServer {
        let dir = TempDir::new("tokens");
        let key = dir.join("key.pem");
        let cert = dir.join("cert.pem");
        let k = key.to_str().unwrap();
        openssl(&["genrsa", "-out", k, "2048"], None);
        openssl(
            &[
                "req",
                "-new",
                "-x509",
                "-key",
                k,
                "-out",
                cert.to_str().unwrap(),
                "-days",
                "2",
                "-subj",
                "/CN=corten-test-token",
            ],
            None,
        );
        let kid = libtrust_kid(&openssl(
            &["pkey", "-in", k, "-pubout", "-outform", "DER"],
            None,
        ));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (stop2, req2, key2) = (stop.clone(), requests.clone(), key.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(s) = conn {
                    let _ = serve_token(s, &key2, &kid, &req2);
                }
            }
        });
        TokenServer {
            port,
            cert,
            requests,
            stop,
            dir,
            thread: Some(thread),
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn unpct(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve_token(
    s: TcpStream,
    key: &Path,
    kid: &str,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let target = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let mut auth = None;
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("authorization")
        {
            auth = Some(v.trim().to_string());
        }
    }
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let mut scopes = Vec::new();
    for kv in query.split('&') {
        if let Some(("scope", v)) = kv.split_once('=') {
            scopes.push(unpct(v));
        }
    }
    let user = match auth.as_deref().and_then(|a| a.strip_prefix("Basic ")) {
        Some(b) => {
            let raw = String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .unwrap_or_default(),
            )
            .unwrap_or_default();
            match raw.as_str() {
                "admin:secret" => Some("admin"),
                "alice:wonderland" => Some("alice"),
                _ => {
                    log.lock().unwrap().push(format!("refused {raw}"));
                    let mut w = s;
                    return w.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                }
            }
        }
        None => None,
    };
    log.lock().unwrap().push(format!(
        "{} {}",
        user.unwrap_or("anonymous"),
        scopes.join(" ")
    ));
    let mut access = Vec::new();
    for sc in &scopes {
        let (Some((typ, rest)), true) = (sc.split_once(':'), true) else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        let wanted: Vec<&str> = actions.split(',').collect();
        let granted: Vec<&str> = wanted
            .into_iter()
            .filter(|a| match user {
                Some("admin") => true,
                Some(_) => *a == "pull",
                None => *a == "pull" && name.starts_with("public/"),
            })
            .collect();
        access.push(json!({"type": typ, "name": name, "actions": granted}));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    static JTI: AtomicUsize = AtomicUsize::new(0);
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": kid});
    let claims = json!({"iss": "corten-test-issuer", "sub": user.unwrap_or(""), "aud": "corten-test",
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{}", JTI.fetch_add(1, Ordering::SeqCst)),
        "access": access});
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = openssl(
        &["dgst", "-sha256", "-sign", key.to_str().unwrap()],
        Some(signing_input.as_bytes()),
    );
    let jwt = format!("{signing_input}.{}", b64url(&sig));
    let body = json!({"token": jwt, "access_token": jwt, "expires_in": 300}).to_string();
    let mut w = s;
    write!(
        w,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

// ---------------------------------------------------------------------------
// Images built by hand
// ---------------------------------------------------------------------------

#[derive(Clone)]
pub enum E {
    Dir(&'static str, u32),
    File(&'static str, &'static str, u32),
    /// path, content, mode, uid, gid, xattrs
    FileX(
        &'static str,
        &'static str,
        u32,
        u64,
        u64,
        Vec<(&'static str, &'static str)>,
    ),
    Busybox(&'static str),
    Symlink(&'static str, &'static str),
    Hardlink(&'static str, &'static str),
    Fifo(&'static str),
    /// A raw path (for hostile layers), as a regular file.
    Raw(&'static str, &'static str),
}

#[derive(Clone, Copy, PartialEq)]
pub enum Comp {
    Plain,
    Gzip,
    Zstd,
}

pub struct Blob {
    pub media_type: String,
    pub data: Vec<u8>,
    pub digest: String,
}

impl Blob {
    pub fn new(media_type: &str, data: Vec<u8>) -> Blob {
        let digest = format!("sha256:{}", sha256_hex(&data));
        Blob {
            media_type: media_type.into(),
            data,
            digest,
        }
    }

    pub fn desc(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.data.len()})
    }
}

/// A layer tar of `entries`.
pub fn layer_tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            E::Dir(p, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::File(p, c, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(c.len() as u64);
                b.append_data(&mut h, p, c.as_bytes()).unwrap();
            }
            E::FileX(p, c, mode, uid, gid, xattrs) => {
                if !xattrs.is_empty() {
                    let ext: Vec<(String, &[u8])> = xattrs
                        .iter()
                        .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_bytes()))
                        .collect();
                    b.append_pax_extensions(ext.iter().map(|(k, v)| (k.as_str(), *v)))
                        .unwrap();
                }
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_uid(*uid);
                h.set_gid(*gid);
                h.set_size(c.len() as u64);
                b.append_data(&mut h, p, c.as_bytes()).unwrap();
            }
            E::Busybox(p) => {
                let data = std::fs::read("/bin/busybox").expect("these tests need /bin/busybox");
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o755);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, &data[..]).unwrap();
            }
            E::Symlink(p, t) | E::Hardlink(p, t) => {
                h.set_entry_type(if matches!(e, E::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, t).unwrap();
            }
            E::Fifo(p) => {
                h.set_entry_type(tar::EntryType::Fifo);
                h.set_mode(0o600);
                h.set_size(0);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::Raw(p, c) => {
                // Write the name bytes directly: the tar crate refuses `..` and absolute paths.
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(c.len() as u64);
                let name = &mut h.as_old_mut().name;
                name[..p.len()].copy_from_slice(p.as_bytes());
                h.set_cksum();
                b.append(&h, c.as_bytes()).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// A layer blob (OCI media types) and its diff_id.
pub fn layer(entries: &[E], comp: Comp) -> (Blob, String) {
    let tar = layer_tar(entries);
    let diff_id = format!("sha256:{}", sha256_hex(&tar));
    let (mt, data) = match comp {
        Comp::Plain => ("application/vnd.oci.image.layer.v1.tar", tar),
        Comp::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&tar).unwrap();
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                e.finish().unwrap(),
            )
        }
        Comp::Zstd => (
            "application/vnd.oci.image.layer.v1.tar+zstd",
            zstd::encode_all(&tar[..], 1).unwrap(),
        ),
    };
    (Blob::new(mt, data), diff_id)
}

/// An image: its config, layers and manifest (OCI media types).
pub struct Image {
    pub config: Blob,
    pub layers: Vec<Blob>,
    pub manifest: Blob,
    pub arch: String,
    pub variant: Option<String>,
}

pub fn image(
    layers: Vec<(Vec<E>, Comp)>,
    config: Value,
    arch: &str,
    variant: Option<&str>,
) -> Image {
    let mut blobs = Vec::new();
    let mut diff_ids = Vec::new();
    for (entries, comp) in layers {
        let (b, d) = layer(&entries, comp);
        blobs.push(b);
        diff_ids.push(d);
    }
    let mut cfg = json!({"architecture": arch, "os": "linux", "config": config,
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": []});
    if let Some(v) = variant {
        cfg["variant"] = json!(v);
    }
    let config = Blob::new(
        "application/vnd.oci.image.config.v1+json",
        serde_json::to_vec(&cfg).unwrap(),
    );
    let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config.desc(), "layers": blobs.iter().map(Blob::desc).collect::<Vec<_>>()});
    let manifest = Blob::new(
        "application/vnd.oci.image.manifest.v1+json",
        serde_json::to_vec(&manifest).unwrap(),
    );
    Image {
        config,
        layers: blobs,
        manifest,
        arch: arch.into(),
        variant: variant.map(String::from),
    }
}

impl Image {
    pub fn platform(&self) -> Value {
        let mut p = json!({"os": "linux", "architecture": self.arch});
        if let Some(v) = &self.variant {
            p["variant"] = json!(v);
        }
        p
    }

    fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config)
            .chain(&self.layers)
            .chain(std::iter::once(&self.manifest))
    }
}

/// An OCI layout under `dir` holding each (tag → top blob) and all blobs.
pub fn write_layout(dir: &Path, blobs: &[&Blob], tags: &[(&str, &Blob)]) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    for b in blobs {
        std::fs::write(
            dir.join("blobs/sha256")
                .join(b.digest.trim_start_matches("sha256:")),
            &b.data,
        )
        .unwrap();
    }
    let manifests: Vec<Value> = tags
        .iter()
        .map(|(t, b)| {
            let mut d = b.desc();
            d["annotations"] = json!({"org.opencontainers.image.ref.name": t});
            d
        })
        .collect();
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": manifests})).unwrap(),
    )
    .unwrap();
}

/// An OCI layout holding one image under `tag`.
pub fn layout_of(dir: &Path, img: &Image, tag: &str) {
    let blobs: Vec<&Blob> = img.blobs().collect();
    write_layout(dir, &blobs, &[(tag, &img.manifest)]);
}

/// An index (OCI or docker list, by media type) over `images`, plus an attestation
/// manifest (unknown/unknown) when `attestation`.
pub fn index_of(images: &[&Image], media_type: &str, attestation: Option<&Blob>) -> Blob {
    let mut ms: Vec<Value> = images
        .iter()
        .map(|i| {
            let mut d = i.manifest.desc();
            d["platform"] = i.platform();
            d
        })
        .collect();
    if let Some(a) = attestation {
        let mut d = a.desc();
        d["platform"] = json!({"os": "unknown", "architecture": "unknown"});
        d["annotations"] = json!({"vnd.docker.reference.type": "attestation-manifest",
                                  "vnd.docker.reference.digest": images[0].manifest.digest});
        ms.push(d);
    }
    Blob::new(
        media_type,
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": media_type, "manifests": ms}))
            .unwrap(),
    )
}

/// The busybox base every runnable test image starts from.
pub fn base_entries() -> Vec<E> {
    let mut v = vec![
        E::Dir("bin/", 0o755),
        E::Busybox("bin/busybox"),
        E::Dir("etc/", 0o755),
        E::File(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
            0o644,
        ),
        E::File(
            "etc/group",
            "root:x:0:\napp:x:1000:\nextra:x:2000:app\n",
            0o644,
        ),
        E::Dir("tmp/", 0o1777),
        E::Dir("proc/", 0o755),
        E::Dir("sys/", 0o755),
        E::Dir("dev/", 0o755),
        E::Dir("home/", 0o755),
        E::Dir("home/app/", 0o755),
    ];
    for a in [
        "sh", "cat", "ls", "id", "pwd", "env", "echo", "test", "readlink", "stat",
    ] {
        let p: &'static str = Box::leak(format!("bin/{a}").into_boxed_str());
        v.push(E::Symlink(p, "busybox"));
    }
    v
}

pub fn contents(map: &HashMap<&str, &str>) -> String {
    let mut keys: Vec<_> = map.keys().collect();
    keys.sort();
    keys.iter()
        .map(|k| format!("{k}={}", map[*k]))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| format!("<{e}>"))
}

pub fn drain(mut r: impl Read) -> Vec<u8> {
    let mut v = Vec::new();
    r.read_to_end(&mut v).unwrap();
    v
}

/// Runs the bundle under corten; returns its stdout.
pub fn run_bundle(bundle: &Path) -> String {
    let root = TempDir::new("imgroot");
    let id = unique_id("image");
    let out = rt(&[
        "--root",
        root.path().to_str().unwrap(),
        "run",
        "--bundle",
        bundle.to_str().unwrap(),
        &id,
    ]);
    let _ = rt(&["--root", root.path().to_str().unwrap(), "delete", "-f", &id]);
    out.ok();
    out.stdout
}
