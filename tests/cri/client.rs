//! A small CRI client for tests (scenario 68): does through the CRI API what a kubelet does
//! to run a pod, so that the agent's pod metadata is checked against a real runtime.
//! Debian has no crictl; this is the part of it the test needs.
//!
//!   cri-client SOCKET up POD NAMESPACE UID CONTAINER IMAGE [KEY=VALUE...]
//!       runs a pod sandbox (host network, cgroup parent /mg-kubepods) with the labels, and a
//!       container in it running `sleep 100000`; prints "SANDBOX_ID CONTAINER_ID".
//!   cri-client SOCKET exec CONTAINER_ID CMD...
//!       ExecSync; prints the output, exits with the command's status.
//!   cri-client SOCKET rm SANDBOX_ID
//!       stops and removes the sandbox and its containers (the pod deleted).

use std::collections::HashMap;
use std::process::ExitCode;

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ExecSyncRequest, ImageSpec,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, RemovePodSandboxRequest, RunPodSandboxRequest,
    StartContainerRequest, StopPodSandboxRequest,
};
use tonic::transport::{Channel, Endpoint, Uri};

type Client = RuntimeServiceClient<Channel>;
type Error = Box<dyn std::error::Error>;

async fn connect(socket: String) -> Result<Client, Error> {
    let channel = Endpoint::try_from("http://cri.invalid")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await?;
    Ok(RuntimeServiceClient::new(channel))
}

async fn up(c: &mut Client, args: &[String]) -> Result<(), Error> {
    let [pod, namespace, uid, container, image, labels @ ..] = args else {
        return Err("up POD NAMESPACE UID CONTAINER IMAGE [KEY=VALUE...]".into());
    };
    let labels: HashMap<String, String> = labels
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: pod.clone(),
            uid: uid.clone(),
            namespace: namespace.clone(),
            attempt: 0,
        }),
        // No hostname: with the host's network the pod has the host's UTS namespace too.
        labels,
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: "/mg-kubepods".into(),
            security_context: Some(LinuxSandboxSecurityContext {
                // Host networking: no CNI needed.
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let sandbox = c
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id;
    let created = c
        .create_container(CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: container.clone(),
                    attempt: 0,
                }),
                image: Some(ImageSpec {
                    image: image.clone(),
                    ..Default::default()
                }),
                command: vec!["/bin/sleep".into(), "100000".into()],
                ..Default::default()
            }),
            sandbox_config: Some(config),
        })
        .await?
        .into_inner()
        .container_id;
    c.start_container(StartContainerRequest {
        container_id: created.clone(),
    })
    .await?;
    println!("{sandbox} {created}");
    Ok(())
}

async fn run(args: Vec<String>) -> Result<u8, Error> {
    let [socket, verb, rest @ ..] = &args[..] else {
        return Err("usage: cri-client SOCKET up|exec|rm ...".into());
    };
    let mut c = connect(socket.clone()).await?;
    match (verb.as_str(), rest) {
        ("up", args) => up(&mut c, args).await.map(|()| 0),
        ("exec", [id, cmd @ ..]) if !cmd.is_empty() => {
            let r = c
                .exec_sync(ExecSyncRequest {
                    container_id: id.clone(),
                    cmd: cmd.to_vec(),
                    timeout: 30,
                })
                .await?
                .into_inner();
            print!("{}", String::from_utf8_lossy(&r.stdout));
            eprint!("{}", String::from_utf8_lossy(&r.stderr));
            Ok(u8::try_from(r.exit_code).unwrap_or(255))
        }
        ("rm", [sandbox]) => {
            let id = sandbox.clone();
            c.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await?;
            c.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
                .await?;
            Ok(0)
        }
        _ => Err(format!("unknown command {verb} {rest:?}").into()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::from)
        .and_then(|rt| rt.block_on(run(args)));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("cri-client: {e}");
            ExitCode::from(2)
        }
    }
}
