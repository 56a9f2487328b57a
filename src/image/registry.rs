//! The registry v2 client: scheme choice, anonymous and credentialed auth (basic and bearer
//! tokens from the WWW-Authenticate challenge), redirects, bounded retries, manifests and
//! resumable digest-verified blob downloads.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use serde_json::Value;

use super::reference::{DOCKER_HUB, Digest, Reference};
use super::store::Ingest;

/// Attempts per request (transport errors, 429 and 5xx).
const ATTEMPTS: u32 = 5;
const MAX_REDIRECTS: u32 = 5;
/// Largest manifest accepted.
const MANIFEST_LIMIT: u64 = 8 << 20;
/// Longest Retry-After honoured.
const MAX_RETRY_AFTER: u64 = 60;

pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.v1+prettyjws, \
    application/vnd.docker.distribution.manifest.v1+json";

/// `user:pass`.
#[derive(Clone)]
pub struct Creds {
    pub user: String,
    pub pass: String,
}

impl Creds {
    pub fn parse(s: &str) -> Result<Creds> {
        match s.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(Creds {
                user: u.into(),
                pass: p.into(),
            }),
            _ => bail!("--creds must be USER:PASSWORD"),
        }
    }

    fn basic(&self) -> String {
        let raw = format!("{}:{}", self.user, self.pass);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    /// The credentials ~/.docker/config.json (or $DOCKER_CONFIG/config.json) gives for
    /// `registry`: from the `docker-credential-<name>` helper its `credHelpers` (for this
    /// registry) or `credsStore` names, as docker asks it, else from `auths` (`auth`:
    /// base64 user:pass, or `username` + `password`). With them, why the helper gave none
    /// when it failed (for the "authentication required" line).
    pub fn from_docker_config(registry: &str) -> (Option<Creds>, Option<String>) {
        let Some(cfg) = docker_config() else {
            return (None, None);
        };
        let want = if registry == DOCKER_HUB {
            "index.docker.io"
        } else {
            registry
        };
        let helper = cfg["credHelpers"]
            .as_object()
            .and_then(|h| h.iter().find(|(k, _)| config_host(k) == want))
            .and_then(|(_, v)| v.as_str())
            .or_else(|| cfg["credsStore"].as_str())
            .filter(|h| !h.is_empty());
        let mut note = None;
        if let Some(h) = helper {
            // The server name docker stores Docker Hub's credentials under.
            let server = if want == "index.docker.io" {
                "https://index.docker.io/v1/"
            } else {
                want
            };
            match credential_helper(h, server) {
                Ok(Some(c)) => return (Some(c), None),
                Ok(None) => {}
                Err(e) => note = Some(e),
            }
        }
        (Creds::from_auths(&cfg, want), note)
    }

    fn from_auths(cfg: &Value, want: &str) -> Option<Creds> {
        let auths = cfg["auths"].as_object()?;
        let entry = auths
            .iter()
            .find_map(|(k, v)| (config_host(k) == want).then_some(v))?;
        if let Some(a) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(a.trim())
                .ok()?;
            return Creds::parse(&String::from_utf8(raw).ok()?).ok();
        }
        Some(Creds {
            user: entry["username"].as_str()?.into(),
            pass: entry["password"].as_str()?.into(),
        })
    }
}

/// ~/.docker/config.json (or $DOCKER_CONFIG/config.json), parsed.
fn docker_config() -> Option<Value> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".docker"))
        })?;
    serde_json::from_slice(&std::fs::read(dir.join("config.json")).ok()?).ok()
}

/// The registry a key of config.json's `auths` or `credHelpers` names (Docker Hub as
/// index.docker.io).
fn config_host(key: &str) -> &str {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    if host == DOCKER_HUB || host == "registry-1.docker.io" {
        "index.docker.io"
    } else {
        host
    }
}

/// `docker-credential-<name> get` for `server`, as docker runs it: the server on stdin,
/// `{"Username", "Secret"}` on stdout. Ok(None) when it has none for that server.
fn credential_helper(name: &str, server: &str) -> std::result::Result<Option<Creds>, String> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let prog = format!("docker-credential-{name}");
    let mut child = Command::new(&prog)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("credential helper {prog}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("credential helper {prog}: {e}"))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        let msg = msg.trim().replace('\n', " ");
        if msg.contains("credentials not found") {
            return Ok(None);
        }
        return Err(format!("credential helper {prog} failed: {msg}"));
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("credential helper {prog}: unreadable answer: {e}"))?;
    match (v["Username"].as_str(), v["Secret"].as_str()) {
        (Some("<token>"), _) => Err(format!(
            "credential helper {prog} holds an identity token, which corten-image can't use: give --creds"
        )),
        (Some(u), Some(p)) if !u.is_empty() => Ok(Some(Creds {
            user: u.into(),
            pass: p.into(),
        })),
        _ => Ok(None),
    }
}

#[derive(Clone, Debug)]
enum Challenge {
    None,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

struct Auth {
    challenge: Challenge,
    /// scope → (Authorization value, expiry)
    tokens: HashMap<String, (String, Instant)>,
}

/// One registry, shared by the download threads.
pub struct Registry {
    agent: ureq::Agent,
    /// As named in references (`docker.io`), for messages.
    name: String,
    host: String,
    plain_http: bool,
    /// localhost, 127.0.0.1 or ::1: plain HTTP is tried first.
    loopback: bool,
    creds: Option<Creds>,
    /// Why the docker config's credential helper gave no credentials, if it failed.
    creds_note: Option<String>,
    base: OnceLock<String>,
    auth: Mutex<Auth>,
}

/// Resolves `localhost` without NSS (the binary is static), everything else through the
/// system resolver.
fn resolve(netloc: &str) -> io::Result<Vec<SocketAddr>> {
    let (host, port) = netloc
        .rsplit_once(':')
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad port"))?;
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(vec![
            SocketAddr::from(([127, 0, 0, 1], port)),
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
        ]);
    }
    Ok(netloc.to_socket_addrs()?.collect())
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or_default()
}

fn bare_host(hostport: &str) -> &str {
    if let Some(v6) = hostport.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default();
    }
    hostport.rsplit_once(':').map_or(hostport, |(h, _)| h)
}

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Parses `Bearer realm="…",service="…",scope="…"` (or `Basic realm=…`).
fn parse_challenge(h: &str) -> Option<Challenge> {
    let (scheme, params) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    let mut map = HashMap::new();
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (k, r) = rest.split_once('=')?;
        let r = r.trim_start();
        let (v, r) = if let Some(q) = r.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            r.split_once(',').map_or((r, ""), |(v, r)| (v, r))
        };
        map.insert(k.trim().to_ascii_lowercase(), v.to_string());
        rest = r.trim_start_matches([',', ' ']);
    }
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Some(Challenge::Bearer {
            realm: map.remove("realm")?,
            service: map.remove("service"),
        }),
        "basic" => Some(Challenge::Basic),
        _ => None,
    }
}

fn retry_after(resp: &ureq::Response) -> Option<Duration> {
    let secs: u64 = resp.header("Retry-After")?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(MAX_RETRY_AFTER)))
}

/// Whether a transport error is a refused connection.
fn refused(t: &ureq::Transport) -> bool {
    let mut e: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(t);
    while let Some(c) = e {
        if c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        e = c.source();
    }
    false
}

/// The line a retry prints on stderr: what failed, and when the next attempt comes.
fn retrying(url: &str, why: &str, wait: Duration, next: u32, attempts: u32) {
    eprintln!(
        "corten-image: {} {why}: retrying in {:.1} s (attempt {next} of {attempts})",
        host_of(url),
        wait.as_secs_f64()
    );
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200u64 << attempt.min(6))
}

/// A registry's error body (`{"errors":[{"code","message"}]}`) as one line. Read here, not
/// with oci-spec's `distribution::ErrorResponse`, which refuses codes outside the spec's
/// list (registries add their own) and so would lose the registry's message.
fn error_text(resp: ureq::Response) -> String {
    let status = resp.status();
    let body = resp.into_string().unwrap_or_default();
    let msg = serde_json::from_str::<Value>(&body).ok().and_then(|v| {
        let e = &v["errors"][0];
        Some(format!(
            "{}: {}",
            e["code"].as_str()?,
            e["message"].as_str().unwrap_or_default()
        ))
    });
    msg.unwrap_or_else(|| format!("HTTP {status}"))
}

impl Registry {
    pub fn new(r: &Reference, creds: Option<Creds>, insecure: &[String]) -> Registry {
        let host = r.api_host().to_string();
        let bare = bare_host(&host);
        let loopback = matches!(bare, "localhost" | "127.0.0.1" | "::1");
        let plain_http = loopback
            || insecure
                .iter()
                .any(|i| i == &r.registry || i == &host || i == bare);
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout_connect(Duration::from_secs(15))
            .timeout_read(Duration::from_secs(60))
            .user_agent(concat!("corten-image/", env!("CARGO_PKG_VERSION")))
            .resolver(resolve)
            .tls_connector(Arc::new(super::tls::Lazy))
            .build();
        let (creds, creds_note) = match creds {
            Some(c) => (Some(c), None),
            None => Creds::from_docker_config(&r.registry),
        };
        Registry {
            agent,
            name: r.registry.clone(),
            creds,
            creds_note,
            host,
            plain_http,
            loopback,
            base: OnceLock::new(),
            auth: Mutex::new(Auth {
                challenge: Challenge::None,
                tokens: HashMap::new(),
            }),
        }
    }

    /// What to do without credentials, and why the credential helper gave none.
    fn login_hint(&self) -> String {
        match &self.creds_note {
            Some(n) => format!("{n}; give --creds or docker login"),
            None => "give --creds or docker login".into(),
        }
    }

    /// Sends `method` `path` (below /v2/) with full retries once the scheme is known, and
    /// picks it on the first request (there is no separate `GET /v2/` ping: a pull by tag
    /// is one round trip). HTTPS; plain HTTP only for insecure registries after HTTPS
    /// fails. A loopback registry is asked over plain HTTP first (no TLS set-up for the
    /// usual local registry; nothing on the path to read it), and that answer counts
    /// unless it is the 400 a TLS server gives a plain HTTP request: HTTPS follows then. A
    /// scheme tried before another gets one connection attempt.
    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        auth: Option<String>,
    ) -> Result<ureq::Response> {
        if let Some(base) = self.base.get() {
            return self.exchange(method, &format!("{base}/v2/{path}"), headers, auth, false);
        }
        let schemes: &[&str] = match (self.loopback, self.plain_http) {
            (true, _) => &["http", "https"],
            (false, true) => &["https", "http"],
            (false, false) => &["https"],
        };
        let mut last = None;
        for (i, scheme) in schemes.iter().enumerate() {
            let base = format!("{scheme}://{}", self.host);
            let url = format!("{base}/v2/{path}");
            let probe = i + 1 < schemes.len();
            match self.exchange(method, &url, headers, auth.clone(), probe) {
                Ok(resp) if self.loopback && *scheme == "http" && resp.status() == 400 => {
                    last = Some(anyhow!("{url}: HTTP 400 is not a registry's answer"));
                }
                Ok(resp) => {
                    let _ = self.base.set(base);
                    return Ok(resp);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap())
    }

    /// One request with bounded retries (transport errors, 429, 5xx; Retry-After honoured)
    /// and redirects (Authorization dropped when the host changes). Returns any other
    /// response, whatever its status. A `probe` (a scheme another one follows) fails at
    /// the first transport error.
    fn exchange(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        auth: Option<String>,
        probe: bool,
    ) -> Result<ureq::Response> {
        let mut url = url.to_string();
        let mut auth = auth;
        let (mut attempt, mut redirects) = (0, 0);
        loop {
            let mut req = self.agent.request(method, &url);
            for (k, v) in headers {
                req = req.set(k, v);
            }
            if let Some(a) = &auth {
                req = req.set("Authorization", a);
            }
            let resp = match req.call() {
                Ok(r) | Err(ureq::Error::Status(_, r)) => r,
                Err(ureq::Error::Transport(t)) => {
                    attempt += 1;
                    // Nothing listens there (refused), or the name or URL is wrong: trying
                    // again won't help. Resets and timeouts may pass.
                    let retry = !matches!(
                        t.kind(),
                        ureq::ErrorKind::Dns
                            | ureq::ErrorKind::InvalidUrl
                            | ureq::ErrorKind::UnknownScheme
                    ) && !refused(&t);
                    if !retry || probe || attempt >= ATTEMPTS {
                        bail!(
                            "cannot reach registry {} ({}): {t}",
                            self.name,
                            host_of(&url)
                        );
                    }
                    let wait = backoff(attempt);
                    retrying(&url, &t.to_string(), wait, attempt, ATTEMPTS);
                    std::thread::sleep(wait);
                    continue;
                }
            };
            match resp.status() {
                301 | 302 | 303 | 307 | 308 => {
                    redirects += 1;
                    let loc = resp
                        .header("Location")
                        .ok_or_else(|| anyhow!("redirect without Location from {url}"))?;
                    if redirects > MAX_REDIRECTS {
                        bail!("too many redirects from {url}");
                    }
                    let next = if loc.contains("://") {
                        loc.to_string()
                    } else {
                        let (scheme, _) = url.split_once("://").unwrap();
                        format!(
                            "{scheme}://{}/{}",
                            host_of(&url),
                            loc.trim_start_matches('/')
                        )
                    };
                    if host_of(&next) != host_of(&url) {
                        auth = None;
                    }
                    url = next;
                }
                429 | 500 | 502 | 503 | 504 if attempt + 1 < ATTEMPTS => {
                    attempt += 1;
                    let wait = retry_after(&resp).unwrap_or_else(|| backoff(attempt));
                    let why = format!("HTTP {}", resp.status());
                    retrying(&url, &why, wait, attempt + 1, ATTEMPTS);
                    std::thread::sleep(wait);
                }
                _ => return Ok(resp),
            }
        }
    }

    /// The Authorization value for `scope` (fetching a token if needed).
    fn authorization(&self, scope: &str) -> Result<Option<String>> {
        let challenge = {
            let auth = self.auth.lock().unwrap();
            if let Some((v, exp)) = auth.tokens.get(scope)
                && Instant::now() < *exp
            {
                return Ok(Some(v.clone()));
            }
            auth.challenge.clone()
        };
        match challenge {
            Challenge::None => Ok(None),
            Challenge::Basic => Ok(self.creds.as_ref().map(Creds::basic)),
            Challenge::Bearer { realm, service } => {
                let (token, ttl) = self.fetch_token(&realm, service.as_deref(), scope)?;
                let v = format!("Bearer {token}");
                let exp = Instant::now()
                    + ttl
                        .saturating_sub(Duration::from_secs(10))
                        .max(Duration::from_secs(5));
                self.auth
                    .lock()
                    .unwrap()
                    .tokens
                    .insert(scope.into(), (v.clone(), exp));
                Ok(Some(v))
            }
        }
    }

    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<(String, Duration)> {
        let mut url = format!(
            "{realm}{}scope={}",
            if realm.contains('?') { '&' } else { '?' },
            pct(scope)
        );
        if let Some(s) = service {
            url.push_str(&format!("&service={}", pct(s)));
        }
        let basic = self.creds.as_ref().map(Creds::basic);
        let resp = self.exchange("GET", &url, &[], basic, false)?;
        match resp.status() {
            200 => {}
            401 | 403 => {
                if self.creds.is_some() {
                    bail!(
                        "authentication refused by {} for {scope}: wrong credentials",
                        host_of(realm)
                    );
                }
                bail!(
                    "authentication required by {} for {scope}: {}",
                    host_of(realm),
                    self.login_hint()
                );
            }
            s => bail!(
                "token server {} answered HTTP {s}: {}",
                host_of(realm),
                error_text(resp)
            ),
        }
        let v: Value = serde_json::from_reader(resp.into_reader().take(1 << 20))
            .context("parse the token server's answer")?;
        let token = v["token"]
            .as_str()
            .or_else(|| v["access_token"].as_str())
            .ok_or_else(|| anyhow!("token server {} sent no token", host_of(realm)))?;
        let ttl = v["expires_in"].as_u64().unwrap_or(60);
        Ok((token.to_string(), Duration::from_secs(ttl)))
    }

    /// An authorized `method` request to `path` (below /v2/) for `repo`. The first 401
    /// to a request sent without credentials tells the challenge (the registry's auth);
    /// any other 401 refreshes the challenge and token once, and a second one is "access
    /// denied".
    fn request(
        &self,
        method: &str,
        repo: &str,
        path: &str,
        headers: &[(&str, String)],
        what: &str,
    ) -> Result<ureq::Response> {
        let scope = format!("repository:{repo}:pull");
        let (mut learned, mut refreshed) = (false, false);
        loop {
            let auth = self.authorization(&scope)?;
            let learning = auth.is_none() && !learned;
            let resp = self.send(method, path, headers, auth)?;
            if resp.status() != 401 {
                return Ok(resp);
            }
            if learning {
                learned = true;
            } else if refreshed {
                let why = if self.creds.is_some() {
                    "the credentials were refused".to_string()
                } else {
                    format!("authentication required ({})", self.login_hint())
                };
                bail!("access to {what} denied: {why}; {}", error_text(resp));
            } else {
                refreshed = true;
            }
            let mut a = self.auth.lock().unwrap();
            a.tokens.remove(&scope);
            if let Some(c) = resp.header("WWW-Authenticate").and_then(parse_challenge) {
                a.challenge = c;
            }
        }
    }

    /// `method` of manifest `reference`, accepting every manifest type.
    fn manifest_request(
        &self,
        method: &str,
        repo: &str,
        reference: &str,
        what: &str,
    ) -> Result<ureq::Response> {
        let path = format!("{repo}/manifests/{reference}");
        let accept = [("Accept", ACCEPT_MANIFESTS.into())];
        self.request(method, repo, &path, &accept, what)
    }

    /// The digest and media type of manifest `reference` (a HEAD request: light, and not
    /// counted as a pull by Docker Hub's rate limits); Ok(None) when the registry does
    /// not say it (no sha256 `Docker-Content-Digest`) or has no such manifest: a GET
    /// then tells.
    pub fn manifest_digest(
        &self,
        repo: &str,
        reference: &str,
        what: &str,
    ) -> Result<Option<(Digest, String)>> {
        let resp = self.manifest_request("HEAD", repo, reference, what)?;
        if resp.status() != 200 {
            return Ok(None);
        }
        let ct = resp.header("Content-Type").unwrap_or_default().to_string();
        let d = resp
            .header("Docker-Content-Digest")
            .and_then(|h| Digest::parse(h.trim()).ok());
        Ok(d.map(|d| (d, ct)))
    }

    /// Fetches a manifest: Ok(None) when the registry says it does not exist.
    pub fn manifest(
        &self,
        repo: &str,
        reference: &str,
        what: &str,
    ) -> Result<Option<(Vec<u8>, String)>> {
        let resp = self.manifest_request("GET", repo, reference, what)?;
        match resp.status() {
            200 => {}
            404 => return Ok(None),
            s => bail!(
                "registry {} answered HTTP {s} for {what}: {}",
                self.name,
                error_text(resp)
            ),
        }
        let ct = resp.header("Content-Type").unwrap_or_default().to_string();
        let mut body = Vec::new();
        resp.into_reader()
            .take(MANIFEST_LIMIT + 1)
            .read_to_end(&mut body)
            .with_context(|| format!("read the manifest of {what}"))?;
        if body.len() as u64 > MANIFEST_LIMIT {
            bail!("the manifest of {what} is larger than {MANIFEST_LIMIT} bytes");
        }
        Ok(Some((body, ct)))
    }

    /// Streams blob `digest` into `ingest`, resuming with a Range request after an
    /// interrupted transfer; `progress` gets each chunk's size.
    pub fn blob(
        &self,
        repo: &str,
        digest: &Digest,
        ingest: &mut Ingest,
        progress: &dyn Fn(u64),
    ) -> Result<()> {
        let mut attempt = 0;
        loop {
            let mut headers = Vec::new();
            let offset = ingest.offset();
            if offset > 0 {
                headers.push(("Range", format!("bytes={offset}-")));
            }
            let resp = self.request(
                "GET",
                repo,
                &format!("{repo}/blobs/{digest}"),
                &headers,
                &format!("blob {digest}"),
            )?;
            match resp.status() {
                206 if offset > 0 => {}
                200 => {
                    if offset > 0 {
                        ingest.reset()?;
                    }
                }
                416 => {
                    ingest.reset()?;
                    continue;
                }
                404 => bail!("blob {digest} not found in {}/{repo}", self.name),
                s => bail!(
                    "registry {} answered HTTP {s} for blob {digest}: {}",
                    self.name,
                    error_text(resp)
                ),
            }
            let mut reader = resp.into_reader();
            let mut buf = vec![0u8; 256 << 10];
            let failed = loop {
                match reader.read(&mut buf) {
                    Ok(0) => break None,
                    Ok(n) => {
                        ingest
                            .write_all(&buf[..n])
                            .with_context(|| format!("write blob {digest}"))?;
                        progress(n as u64);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Some(e),
                }
            };
            match failed {
                None => return Ok(()),
                Some(e) => {
                    attempt += 1;
                    if attempt >= ATTEMPTS {
                        bail!("download of blob {digest} failed: {e}");
                    }
                    std::thread::sleep(backoff(attempt));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        match c {
            Some(Challenge::Bearer { realm, service }) => {
                assert_eq!(realm, "https://auth.docker.io/token");
                assert_eq!(service.as_deref(), Some("registry.docker.io"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_challenge(r#"Basic realm="x""#),
            Some(Challenge::Basic)
        ));
    }

    #[test]
    fn hosts() {
        assert_eq!(host_of("https://a.b:5000/v2/x"), "a.b:5000");
        assert_eq!(bare_host("127.0.0.1:5000"), "127.0.0.1");
        assert_eq!(bare_host("[::1]:5000"), "::1");
        assert_eq!(pct("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
    }
}
