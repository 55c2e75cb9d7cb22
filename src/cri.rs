//! Pod metadata for container events, from the node's container runtime over its CRI socket
//! (containerd's, CRI-O's): the pod's name, namespace, UID and labels, the container's name
//! and its image, by container ID (the ID the kernel read from the cgroup).
//!
//! Never on the enforcement path: the kernel has already decided when an event is read. The
//! event loop asks `Cri::lookup`, which answers from a cache at once, or waits at most `WAIT`
//! for the runtime and then gives up (the event goes out with null pod fields and a miss is
//! counted). The gRPC client runs on a small tokio runtime on a thread of its own.
//!
//! Learned early, so that a container that has exited (or whose pod was deleted) by the time
//! its event is read is still named: the cache is filled with ListPodSandbox + ListContainers
//! at start, and each new container is learned as it appears, from inotify on the runtime's
//! task directory (containerd creates `<state>/io.containerd.runtime.v2.task/k8s.io/<id>` for
//! each sandbox and container it starts). No timer: an idle node wakes nothing here.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerFilter, ContainerStatusRequest, ListContainersRequest, ListPodSandboxRequest,
    PodSandboxStatusRequest,
};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tonic::transport::{Channel, Endpoint, Uri};
use tracing::{debug, info, warn};

/// The runtimes' default sockets, tried in this order when `--cri-socket` is not given.
pub const DEFAULT_SOCKETS: [&str; 3] = [
    "/run/containerd/containerd.sock",
    "/var/run/crio/crio.sock",
    "/run/crio/crio.sock",
];

/// How long an event whose container is not cached waits for the runtime: the event loop
/// reads events one after another, so this bounds how late an event can be for it.
pub const WAIT: Duration = Duration::from_millis(150);

/// How long one call to the runtime may take on the CRI thread.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// After a failed call (runtime down, socket gone), how long lookups do not wait for it: a
/// runtime that is down must not cost every event `WAIT`. The lookup still asks, so the
/// first answer after the runtime is back clears this.
const DOWN_FOR: Duration = Duration::from_secs(10);

/// How long "the runtime does not know this ID" is remembered (a docker container on a
/// Kubernetes node, a host cgroup named like an ID): a loop of execs there then costs
/// nothing, and an ID the runtime learns later is asked again.
const UNKNOWN_FOR: Duration = Duration::from_secs(60);

/// Entries each cache holds at most: a node runs at most a few hundred pods; beyond this an
/// arbitrary entry makes room (memory stays bounded whatever the runtime reports).
const MAX_ENTRIES: usize = 8192;

/// Requests queued for the CRI thread at most; beyond this a lookup does not wait.
const QUEUE: usize = 256;

/// A pod, as its sandbox's status says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pod {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
}

/// A container's image: repository and tag from the tag it runs under, digest from its
/// repo digest (`repo@sha256:...`); each `None` where the runtime does not know it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Image {
    pub repository: Option<String>,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// What an event about a container is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    pub container_name: String,
    pub image: Image,
    /// `None`: the sandbox was not found (deleted before it was learned).
    pub pod: Option<Arc<Pod>>,
}

/// Splits an image reference as the runtime reports it: `image` is what the container runs
/// (a tag, `docker.io/library/busybox:1.36`, or an image ID, `sha256:...`), `image_ref` its
/// digest reference (`docker.io/library/busybox@sha256:...`) or image ID.
pub fn parse_image(image: &str, image_ref: &str) -> Image {
    let (mut repository, mut tag) = (None, None);
    let name = image.split('@').next().unwrap_or("");
    if !name.is_empty() && !name.starts_with("sha256:") {
        // The tag follows the last ':' after the last '/' (a registry's port is before it).
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        match name[last_slash..].rfind(':') {
            Some(colon) => {
                let at = last_slash + colon;
                repository = Some(name[..at].to_string());
                tag = Some(name[at + 1..].to_string());
            }
            None => repository = Some(name.to_string()),
        }
    }
    let digest = [image_ref, image]
        .iter()
        .find_map(|r| r.split_once('@').map(|(_, d)| d.to_string()));
    if repository.is_none() {
        // Only an image ID to go on: the repository is the digest reference's, if any.
        repository = image_ref
            .split_once('@')
            .map(|(repo, _)| repo.to_string())
            .filter(|r| !r.is_empty());
    }
    Image {
        repository,
        tag,
        digest,
    }
}

#[derive(Default)]
struct Cache {
    containers: HashMap<String, Arc<Meta>>,
    pods: HashMap<String, Arc<Pod>>,
    /// IDs the runtime said it does not know, and since when.
    unknown: HashMap<String, Instant>,
    /// Until when lookups do not wait (the last call failed).
    down_until: Option<Instant>,
}

/// Inserts, making room first if the map is full.
fn bounded_insert<V>(map: &mut HashMap<String, V>, key: String, value: V) {
    if map.len() >= MAX_ENTRIES && !map.contains_key(&key) {
        if let Some(victim) = map.keys().next().cloned() {
            map.remove(&victim);
        }
    }
    map.insert(key, value);
}

struct Shared {
    cache: Mutex<Cache>,
    misses: AtomicU64,
}

impl Shared {
    fn cache(&self) -> MutexGuard<'_, Cache> {
        // Poisoned only if a thread panicked mid-insert: the maps are still usable.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A container ID to resolve, and where to say it is done.
struct Ask {
    id: String,
    done: Option<mpsc::SyncSender<()>>,
}

/// The agent's handle on the runtime: cheap to clone, safe to call from the event loop.
#[derive(Clone)]
pub struct Cri {
    shared: Arc<Shared>,
    asks: tokio::sync::mpsc::Sender<Ask>,
}

/// Where the runtime is: the socket given, else the first default that exists when a call
/// connects (the agent starts before the runtime: at boot the socket is not there yet).
#[derive(Clone, Debug)]
pub struct Socket(pub Option<PathBuf>);

impl Socket {
    fn now(&self) -> Option<PathBuf> {
        match &self.0 {
            Some(given) => Some(given.clone()),
            None => DEFAULT_SOCKETS
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists()),
        }
    }

    /// The runtime's state directory, where containerd makes its task directories: the given
    /// socket's directory, else containerd's default.
    fn state_dir(&self) -> PathBuf {
        match &self.0 {
            Some(given) => given.parent().unwrap_or(Path::new("/")).to_path_buf(),
            None => PathBuf::from("/run/containerd"),
        }
    }
}

impl std::fmt::Display for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(given) => write!(f, "{}", given.display()),
            None => write!(f, "the first of {} that exists", DEFAULT_SOCKETS.join(", ")),
        }
    }
}

impl Cri {
    /// Starts the CRI thread on `socket`. The runtime need not be up: calls are retried as
    /// events need them, and nothing here fails because of the runtime.
    pub fn start(socket: Socket) -> Result<Cri> {
        let shared = Arc::new(Shared {
            cache: Mutex::new(Cache::default()),
            misses: AtomicU64::new(0),
        });
        let (asks, rx) = tokio::sync::mpsc::channel(QUEUE);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .context("starting the CRI client's runtime")?;
        let (thread_shared, thread_socket) = (Arc::clone(&shared), socket.clone());
        std::thread::Builder::new()
            .name("cri".into())
            .spawn(move || runtime.block_on(serve(thread_socket, thread_shared, rx)))
            .context("starting the CRI thread")?;
        {
            let (asks, state) = (asks.clone(), socket.state_dir());
            std::thread::Builder::new()
                .name("cri-watch".into())
                .spawn(move || {
                    if let Err(e) = watch_tasks(&state, &asks) {
                        warn!(
                            error = format!("{e:#}"),
                            "pod metadata: not learning new containers as they start (one that \
                             exits before its event is read may go unnamed)"
                        );
                    }
                })
                .context("starting the CRI watch thread")?;
        }
        Ok(Cri { shared, asks })
    }

    /// Events whose container could not be named (runtime down, slow, or not knowing it).
    pub fn misses(&self) -> u64 {
        self.shared.misses.load(Ordering::Relaxed)
    }

    /// The container `id`'s metadata: from the cache, or from the runtime within `WAIT`;
    /// `None` (and a miss counted) when it cannot be had in that time.
    pub fn lookup(&self, id: &str) -> Option<Arc<Meta>> {
        let wait = {
            let mut cache = self.shared.cache();
            if let Some(meta) = cache.containers.get(id) {
                return Some(Arc::clone(meta));
            }
            let now = Instant::now();
            match cache.unknown.get(id) {
                Some(since) if now.duration_since(*since) < UNKNOWN_FOR => {
                    drop(cache);
                    return self.miss();
                }
                Some(_) => {
                    cache.unknown.remove(id);
                }
                None => {}
            }
            cache.down_until.is_none_or(|until| now >= until)
        };
        let (done, answered) = mpsc::sync_channel(1);
        let ask = Ask {
            id: id.to_string(),
            done: wait.then_some(done),
        };
        if self.asks.try_send(ask).is_ok() && wait {
            let _ = answered.recv_timeout(WAIT);
        }
        match self.shared.cache().containers.get(id) {
            Some(meta) => Some(Arc::clone(meta)),
            None => self.miss(),
        }
    }

    fn miss(&self) -> Option<Arc<Meta>> {
        self.shared.misses.fetch_add(1, Ordering::Relaxed);
        None
    }
}

type Client = RuntimeServiceClient<Channel>;

/// A channel to the unix socket, connected (and reconnected) as calls need it.
fn client(socket: &Socket) -> Result<Client> {
    let socket = socket.clone();
    // The URI is not used: the connector always dials the socket.
    let channel = Endpoint::try_from("http://cri.invalid")
        .context("the CRI endpoint")?
        .connect_timeout(CALL_TIMEOUT)
        .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let path = socket.now();
            async move {
                let path = path.ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no CRI socket exists")
                })?;
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }));
    Ok(RuntimeServiceClient::new(channel))
}

/// The CRI thread: fills the cache, learns new containers, answers lookups.
async fn serve(socket: Socket, shared: Arc<Shared>, mut asks: tokio::sync::mpsc::Receiver<Ask>) {
    let client = match client(&socket) {
        Ok(c) => c,
        Err(e) => {
            warn!(error = format!("{e:#}"), socket = %socket, "no pod metadata: cannot set up the CRI client");
            return;
        }
    };
    // No socket given and none of the defaults there: a node without a runtime (yet), not
    // an operator's mistake.
    let expected = socket.0.is_some() || socket.now().is_some();
    tokio::spawn(fill_and_log(client.clone(), Arc::clone(&shared), expected));
    while let Some(ask) = asks.recv().await {
        let (client, shared) = (client.clone(), Arc::clone(&shared));
        tokio::spawn(async move {
            learn(&client, &shared, &ask.id).await;
            if let Some(done) = ask.done {
                let _ = done.try_send(());
            }
        });
    }
}

/// Fills the cache; at start, and again whenever the runtime answers after it did not (it
/// started after the agent, or was restarted: its containers are all there to learn).
/// `expected`: a runtime should answer (a failure is a warning, else news).
async fn fill_and_log(client: Client, shared: Arc<Shared>, expected: bool) {
    match fill(&client, &shared).await {
        Ok(n) => info!(
            containers = n,
            "pod metadata: containers known from the runtime"
        ),
        Err(e) => {
            note_down(&shared);
            let error = format!("{e:#}");
            let message = "pod metadata: the container runtime does not answer (yet): events \
                           are named once it does";
            if expected {
                warn!(error, "{message}");
            } else {
                info!(error, "{message}");
            }
        }
    }
}

fn note_down(shared: &Shared) {
    shared.cache().down_until = Some(Instant::now() + DOWN_FOR);
}

/// Whether the runtime was down until this answer.
fn note_up(shared: &Shared) -> bool {
    shared.cache().down_until.take().is_some()
}

fn pod_of(
    status_metadata: Option<k8s_cri::v1::PodSandboxMetadata>,
    labels: HashMap<String, String>,
) -> Pod {
    let m = status_metadata.unwrap_or_default();
    Pod {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        labels: labels.into_iter().collect(),
    }
}

async fn call<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(anyhow::Error::new(status).context(what.to_string())),
        Err(_) => bail!("{what}: no answer in {CALL_TIMEOUT:?}"),
    }
}

/// Everything the runtime runs now. Returns how many containers are known.
async fn fill(client: &Client, shared: &Shared) -> Result<usize> {
    let mut c = client.clone();
    let sandboxes = call(
        "ListPodSandbox",
        c.list_pod_sandbox(ListPodSandboxRequest { filter: None }),
    )
    .await?;
    {
        let mut cache = shared.cache();
        for s in sandboxes.items {
            let pod = pod_of(s.metadata, s.labels);
            bounded_insert(&mut cache.pods, s.id, Arc::new(pod));
        }
    }
    let containers = call(
        "ListContainers",
        c.list_containers(ListContainersRequest { filter: None }),
    )
    .await?;
    let n = containers.containers.len();
    for container in containers.containers {
        let id = container.id.clone();
        if let Err(e) = learn_container(client, shared, container).await {
            debug!(
                id,
                error = format!("{e:#}"),
                "pod metadata: container not learned"
            );
        }
    }
    note_up(shared);
    Ok(n)
}

/// Asks the runtime about `id` (a container or a sandbox) and caches the answer.
async fn learn(client: &Client, shared: &Arc<Shared>, id: &str) {
    if shared.cache().containers.contains_key(id) {
        return;
    }
    let mut c = client.clone();
    let listed = call(
        "ListContainers",
        c.list_containers(ListContainersRequest {
            filter: Some(ContainerFilter {
                id: id.to_string(),
                ..Default::default()
            }),
        }),
    )
    .await;
    let result = match listed {
        Ok(listed) => match listed.containers.into_iter().find(|c| c.id == id) {
            Some(container) => learn_container(client, shared, container).await,
            None => learn_sandbox(client, shared, id).await,
        },
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {
            if note_up(shared) {
                tokio::spawn(fill_and_log(client.clone(), Arc::clone(shared), true));
            }
        }
        Err(e) => {
            note_down(shared);
            debug!(
                id,
                error = format!("{e:#}"),
                "pod metadata: the runtime did not answer"
            );
        }
    }
}

/// `id` is not a container: a sandbox (cached, so that its containers are named even once
/// it is deleted), or unknown to the runtime.
async fn learn_sandbox(client: &Client, shared: &Shared, id: &str) -> Result<()> {
    let mut c = client.clone();
    let status = c
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose: false,
        })
        .await;
    match status {
        Ok(status) => {
            if let Some(s) = status.into_inner().status {
                let pod = pod_of(s.metadata, s.labels);
                bounded_insert(&mut shared.cache().pods, id.to_string(), Arc::new(pod));
            }
            Ok(())
        }
        Err(status) if status.code() == tonic::Code::NotFound => {
            bounded_insert(&mut shared.cache().unknown, id.to_string(), Instant::now());
            Ok(())
        }
        Err(status) => Err(anyhow::Error::new(status).context("PodSandboxStatus")),
    }
}

/// Caches a listed container, with its image (ContainerStatus: the tag, the repo digest)
/// and its pod (from the cache, else PodSandboxStatus).
async fn learn_container(
    client: &Client,
    shared: &Shared,
    container: k8s_cri::v1::Container,
) -> Result<()> {
    let mut c = client.clone();
    let status = call(
        "ContainerStatus",
        c.container_status(ContainerStatusRequest {
            container_id: container.id.clone(),
            verbose: false,
        }),
    )
    .await
    .ok()
    .and_then(|s| s.status);
    let (image, image_ref) = match &status {
        Some(s) => (
            s.image
                .as_ref()
                .map(|i| i.image.clone())
                .unwrap_or_default(),
            s.image_ref.clone(),
        ),
        None => (
            container
                .image
                .as_ref()
                .map(|i| i.image.clone())
                .unwrap_or_default(),
            container.image_ref.clone(),
        ),
    };
    let sandbox = container.pod_sandbox_id;
    let mut pod = shared.cache().pods.get(&sandbox).cloned();
    if pod.is_none() {
        learn_sandbox(client, shared, &sandbox).await?;
        pod = shared.cache().pods.get(&sandbox).cloned();
    }
    let meta = Meta {
        container_name: container.metadata.map(|m| m.name).unwrap_or_default(),
        image: parse_image(&image, &image_ref),
        pod,
    };
    debug!("pod metadata: learned container {}", container.id);
    let mut cache = shared.cache();
    cache.unknown.remove(&container.id);
    bounded_insert(&mut cache.containers, container.id, Arc::new(meta));
    Ok(())
}

/// containerd's task directories under its state directory (the socket's): one entry per
/// sandbox and container of the CRI's namespace, made when its task is created.
const TASK_PATH: [&str; 2] = ["io.containerd.runtime.v2.task", "k8s.io"];

fn is_id(name: &OsStr) -> Option<&str> {
    let name = name.to_str()?;
    (name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())).then_some(name)
}

/// Asks the CRI thread to learn `id`; false once that thread is gone.
fn ask_learn(asks: &tokio::sync::mpsc::Sender<Ask>, id: &str) -> bool {
    asks.blocking_send(Ask {
        id: id.to_string(),
        done: None,
    })
    .is_ok()
}

/// On a thread of its own, blocked in read() while nothing happens: learns each sandbox and
/// container as containerd creates its task directory. Watches the deepest level of the path
/// that exists, and the next as it appears.
fn watch_tasks(state: &Path, asks: &tokio::sync::mpsc::Sender<Ask>) -> Result<()> {
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC).context("inotify_init")?;
    // Every directory from the root down to the task directory: the deepest that exists is
    // watched, and each next one as it appears (containerd may start after the agent).
    let full = TASK_PATH.iter().fold(state.to_path_buf(), |p, c| p.join(c));
    let mut levels: Vec<PathBuf> = full.ancestors().map(Path::to_path_buf).collect();
    levels.reverse();
    let names: Vec<std::ffi::OsString> = levels
        .iter()
        .skip(1)
        .map(|l| l.file_name().unwrap_or_default().to_os_string())
        .collect();
    let mask = AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_ONLYDIR;
    let Some(deepest) = (0..levels.len()).rev().find(|&i| levels[i].is_dir()) else {
        bail!("{} has no directory that exists", full.display());
    };
    let mut watched: Vec<(WatchDescriptor, usize)> = Vec::new();
    let wd = inotify
        .add_watch(&levels[deepest], mask)
        .with_context(|| format!("watching {}", levels[deepest].display()))?;
    watched.push((wd, deepest));
    debug!(dir = %levels[deepest].display(), "pod metadata: watching for new containers");
    loop {
        let events = match inotify.read_events() {
            Ok(events) => events,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("reading inotify events"),
        };
        for event in events {
            let Some(&(_, level)) = watched.iter().find(|(wd, _)| *wd == event.wd) else {
                continue;
            };
            let Some(name) = event.name.as_deref() else {
                continue;
            };
            if level + 1 < levels.len() {
                // The next level of the path appeared: watch it (and what it already holds).
                if name != names[level] {
                    continue;
                }
                let next = &levels[level + 1];
                let wd = inotify
                    .add_watch(next, mask)
                    .with_context(|| format!("watching {}", next.display()))?;
                watched.push((wd, level + 1));
                if level + 2 == levels.len() {
                    for entry in std::fs::read_dir(next).into_iter().flatten().flatten() {
                        if let Some(id) = is_id(&entry.file_name()) {
                            if !ask_learn(asks, id) {
                                return Ok(());
                            }
                        }
                    }
                }
            } else if let Some(id) = is_id(name) {
                if !ask_learn(asks, id) {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_split_into_repository_tag_and_digest() {
        let d = "sha256:4b7ce07a1f4d3e9c0a0e1e8b2d6f0f7c1b5f3c6e2a9d8b7c6e5f4a3b2c1d0e9f";
        let cases = [
            (
                (
                    "docker.io/library/busybox:1.36",
                    &*format!("docker.io/library/busybox@{d}"),
                ),
                (Some("docker.io/library/busybox"), Some("1.36"), Some(d)),
            ),
            // A registry with a port: its ':' is not the tag's.
            (
                ("registry.local:5000/team/miner", ""),
                (Some("registry.local:5000/team/miner"), None, None),
            ),
            (
                ("registry.local:5000/team/miner:v2", d),
                (Some("registry.local:5000/team/miner"), Some("v2"), None),
            ),
            // Only an image ID: no tag, the repository from the digest reference.
            (
                (d, &*format!("quay.io/x/y@{d}")),
                (Some("quay.io/x/y"), None, Some(d)),
            ),
            ((d, d), (None, None, None)),
            (("", ""), (None, None, None)),
        ];
        for ((image, image_ref), (repository, tag, digest)) in cases {
            let got = parse_image(image, image_ref);
            assert_eq!(
                (
                    got.repository.as_deref(),
                    got.tag.as_deref(),
                    got.digest.as_deref()
                ),
                (repository, tag, digest),
                "{image} {image_ref}"
            );
        }
    }

    #[test]
    fn a_runtime_that_is_not_there_names_nothing_and_counts_misses() {
        let dir = tempfile::tempdir().unwrap();
        let cri = Cri::start(Socket(Some(dir.path().join("absent.sock")))).unwrap();
        let id = "3f1c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a";
        assert!(cri.lookup(id).is_none());
        assert!(cri.lookup(id).is_none());
        assert_eq!(cri.misses(), 2);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let mut map = HashMap::new();
        for i in 0..MAX_ENTRIES + 10 {
            bounded_insert(&mut map, i.to_string(), i);
        }
        assert_eq!(map.len(), MAX_ENTRIES);
    }
}
